# Inferchain developer entry points. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# Parallel workers for the CPU-bound suites (core, vm, consensus).
WORKERS ?= 2

.PHONY: install browser test test-parallel test-serial lint typecheck bench devnet clean models vectors

install: $(STAMP)

# Quiet on success: pip's and setuptools' output goes to $(INSTALL_LOG), shown in full only if a step fails.
INSTALL_LOG := $(VENV)/install.log
QUIET = >>$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); echo "make install failed (log: $(INSTALL_LOG))"; exit 1; }

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(INSTALL_LOG))"; : > $(INSTALL_LOG)
	@$(BIN)/python -m pip install --quiet --upgrade pip $(QUIET)
	@$(BIN)/python -m pip install --quiet -e '.[dev,models]' $(QUIET)
	@$(BIN)/python -c "$$DROP_STALE_STUBS" $(QUIET)
	@touch $(STAMP)

# trio ships its own type hints (py.typed). trio-typing, which libp2p and multiaddr require at run time (for
# the module trio_typing), also installs the stub-only packages trio-stubs and outcome-stubs; PEP 561 ranks
# those above a package's own hints, and they predate trio 0.22 (no trio.TaskStatus, for one). mypy has no
# setting to skip one stub package, so the install deletes those two directories; trio_typing stays.
define DROP_STALE_STUBS
import pathlib, shutil, sysconfig
for name in ("trio-stubs", "outcome-stubs"):
    shutil.rmtree(pathlib.Path(sysconfig.get_paths()["purelib"], name), ignore_errors=True)
endef
export DROP_STALE_STUBS

# The explorer's browser tests (tests/e2e/test_explorer_browser.py) drive Debian's Chromium through Playwright
# (no browser download): installed here when run as root, else one line says what to install.
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the explorer's browser tests need Chromium: sudo apt-get install -y chromium" >&2; fi; }

# CPU-bound suites run on pytest-xdist workers. Suites with real processes, sockets or real-time timeouts
# mostly wait on real time, so they run as SERIAL_WORKERS groups side by side, each whole module on one
# worker in file order (--dist loadfile: module-scoped networks and ordered tests stay intact); every test
# there takes its ports from the OS and its files from tmp_path. Modules go out in collection order, e2e's
# few long devnet modules first (xdist's default sends modules with many tests first, which left the long
# ones to the end on one worker). SERIAL_WORKERS=1 runs them one at a time.
# Every run prints its 40 slowest test phases (setup, call, teardown), so a CI log shows where the time
# went (docs/testing.md, "CI time").
SERIAL_WORKERS ?= 2
DURATIONS ?= --durations=40
test: install browser
	$(MAKE) --no-print-directory test-parallel test-serial

test-parallel: install
	$(BIN)/python -m pytest -m "core or vm or consensus" -n $(WORKERS) $(DURATIONS)

test-serial: install browser
	$(BIN)/python -m pytest -m "p2p or node or e2e" $(if $(filter-out 1,$(SERIAL_WORKERS)),-n $(SERIAL_WORKERS) --dist loadfile --no-loadscope-reorder) $(DURATIONS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy core vm consensus node p2p tools

# Each bench prints its figures and ratios against a raw baseline measured in the same run.
BENCHES := codec_crypto state blobs vm_sandbox vm vm_transfers gas_calibration worst_block consensus p2p node junk_txs gossip_rx mempool rpc delegation delegation_gas explorer startup devnet idle model_gas check_memo gc vm_infer spin_census gc_commit corpus_handoff

bench: install
	@for b in $(BENCHES); do \
	  if [ -f bench/$$b.py ]; then echo "== bench/$$b.py"; $(BIN)/python -m bench.$$b || exit 1; echo; fi; \
	done

devnet: install
	@$(BIN)/inferchain devnet up

# Regenerate the committed demo models (deterministic: same bytes as in the repository).
models: install
	$(BIN)/python -m tools.models

# Regenerate the spec vectors in tests/vectors (tests/vm/test_vectors.py checks them byte for byte).
vectors: install
	$(BIN)/python -m tools.vectors

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info .devnet
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
