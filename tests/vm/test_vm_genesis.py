"""genesis.json: the committed devnet file, the deterministic tool, one-line errors, the initial state."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.errors import ConfigError
from core.keys import PrivateKey
from node.leveldb import LevelDBStore
from tools.genesis import main, make_genesis
from vm.app import VMApplication
from vm.genesis import REPO_ROOT, load_genesis, parse_genesis
from vm.params import MAX_RELAY_BLOCK_BYTES
from vm.sandbox.executor import LocalExecutor

pytestmark = pytest.mark.vm


def test_repository_genesis_is_the_tool_output_and_loads() -> None:
    committed = (REPO_ROOT / "genesis.json").read_text()
    assert committed == json.dumps(make_genesis(4), indent=2) + "\n"
    genesis = load_genesis(REPO_ROOT / "genesis.json")
    assert genesis.chain_id == "inferchain-devnet-1"
    assert len(genesis.validators) == 4
    assert genesis.params.consensus.max_block_bytes <= MAX_RELAY_BLOCK_BYTES
    assert "PUBLICLY KNOWN KEYS" in json.loads(committed)["note"]
    assert len(genesis.params.poi_models) == 1


def test_tool_is_deterministic_and_keys_derive_from_the_seed(tmp_path: Path) -> None:
    runner = CliRunner()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (a, b):
        result = runner.invoke(main, ["--validators", "7", "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    seed = doc["keys"]["seed_phrase"]
    assert [v["public_key"] for v in doc["validators"]] == [
        PrivateKey.derive(seed, "validator", i).public_key.hex() for i in range(7)]


def test_tool_applies_overrides_and_refuses_bad_ones_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "g.json"
    result = runner.invoke(main, ["-n", "2", "--accounts", "3", "--out", str(out),
                                  "--overrides", '{"slashing": {"jail_blocks": 5}}'])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["slashing"]["jail_blocks"] == 5 and len(doc["accounts"]) == 3
    assert parse_genesis(doc).params.slashing.jail_blocks == 5
    for overrides, message in (('{"slashing": {"max_misses": 99}}', "max_misses"),
                               ('{"nope": {}}', "unknown sections"),
                               ("[1]", "expected an object"),
                               ("{", "not JSON")):
        result = runner.invoke(main, ["--out", str(tmp_path / "bad.json"), "--overrides", overrides])
        assert result.exit_code != 0 and message in result.output, (overrides, result.output)
        assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("chain_id"), "chain_id is missing"),
    (lambda d: d["accounts"][0].update(address="ic1notanaddress"), "accounts[0].address"),
    (lambda d: d["consensus"].update(max_block_bytes=5_000_000), "max_block_bytes"),
    (lambda d: d["consensus"].update(max_block_bytes=MAX_RELAY_BLOCK_BYTES + 1), "MAX_RELAY_BLOCK_BYTES"),
    (lambda d: d["vm"].update(max_infer_input_bytes=2 << 20), "max_infer_input_bytes must be at most 1048576"),
    # One byte over the tensor cap; the cap itself (1 MiB) is the default and gossips alone (vm.params asserts it).
    (lambda d: d["vm"].update(max_infer_input_bytes=(1 << 20) + 1), "max_infer_input_bytes must be at most 1048576"),
    (lambda d: (d["consensus"].update(max_block_bytes=900_000), d["vm"].update(max_infer_input_bytes=898_000)),
     "for the transaction's framing"),
    (lambda d: d["models"][0].update(id="00" * 32), "models[0].id"),
    (lambda d: d["validators"][0].update(stake=1), "below staking.min_validator_stake"),
    (lambda d: d["vm"].update(unknown_knob=1), "unknown field 'unknown_knob'"),
    (lambda d: d["slashing"].update(max_misses=99), "max_misses"),
    (lambda d: d["vm"].update(max_block_models=0), "max_block_models must be at least 1"),
    (lambda d: d["vm"].pop("max_block_models"), "vm.max_block_models is missing"),
    (lambda d: d["vm"]["gas_schedule"].update(load_per_node=-1), "load_per_node must be >= 0"),
    (lambda d: d.update(genesis_time="yesterday"), "genesis_time"),
])
def test_bad_genesis_is_a_one_line_config_error(edit: Any, message: str) -> None:
    doc = copy.deepcopy(make_genesis(2))
    edit(doc)
    with pytest.raises(ConfigError) as err:
        parse_genesis(doc)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_initial_state(tmp_path: Path) -> None:
    genesis = parse_genesis(make_genesis(4))
    app = VMApplication(LevelDBStore(tmp_path / "db"), genesis, executor=LocalExecutor())
    info = app.info()
    assert info.last_height == 0 and info.chain_id == genesis.chain_id
    assert app.validator_set(1) == app.validator_set(2) == genesis.validator_set()
    view = app.view()
    assert view.supply().genesis == genesis.supply
    for model in genesis.models:
        record = view.model(model.model_id)
        assert record is not None and record.gas_per_call > 0
        assert view.model_bytes(record) == model.model_bytes
    root = info.state_root
    app.close()
    app.store.close()
    # Reopening finds the same state and does not re-initialise it.
    again = VMApplication(LevelDBStore(tmp_path / "db"), genesis, executor=LocalExecutor())
    assert again.info().state_root == root
    for model in genesis.models:  # a fresh (in-memory) blob store gets the genesis models back from genesis
        record = again.view().model(model.model_id)
        assert record is not None and again.view().model_bytes(record) == model.model_bytes
    again.close()
    again.store.close()
