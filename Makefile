# Inferchain developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# Parallel workers for the CPU-bound suites (core, vm, consensus).
WORKERS ?= 2

.PHONY: install test test-parallel test-serial lint typecheck bench devnet clean models

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,models]'
	@touch $(STAMP)

# CPU-bound suites run on pytest-xdist workers; suites with real processes,
# sockets or real-time timeouts run serially so they do not flake.
test: install
	$(MAKE) --no-print-directory test-parallel test-serial

test-parallel: install
	$(BIN)/python -m pytest -m "core or vm or consensus" -n $(WORKERS)

test-serial: install
	$(BIN)/python -m pytest -m "p2p or node or e2e"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy core vm consensus

# Each bench prints its figures and ratios against a raw baseline measured in the same run.
BENCHES := codec_crypto state vm_sandbox vm gas_calibration worst_block consensus p2p node

bench: install
	@for b in $(BENCHES); do \
	  if [ -f bench/$$b.py ]; then echo "== bench/$$b.py"; $(BIN)/python -m bench.$$b || exit 1; echo; fi; \
	done

devnet: install
	$(BIN)/inferchain devnet up

# Regenerate the committed demo models (deterministic: same bytes as in the repository).
models: install
	$(BIN)/python -m vm.models.generate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info .devnet
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
