"""Node home and config: init layout and permissions, config round trip, clear errors for bad input."""

from __future__ import annotations

import json
import os
import stat

import pytest

from core.errors import ConfigError, KeyFileError
from core.keys import PrivateKey
from node.config import NodeConfig, P2PSection, config_from_dict, load_config
from node.home import NodeHome, init_home
from p2p.identity import peer_id_of

pytestmark = pytest.mark.node

GENESIS = {"chain_id": "home-test", "genesis_time": 0}


def test_init_creates_the_layout_with_private_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = PrivateKey.derive("home tests", "validator", 0)
    home = init_home(tmp_path / "n0", GENESIS, validator_key=key, node_key_seed=b"n0")
    assert home.config_path.name == "config.toml" and home.data_dir.is_dir() and home.wal_dir.is_dir()
    assert json.loads(home.genesis_path.read_text())["chain_id"] == "home-test"
    for path in (home.node_key_path, home.validator_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert home.load_validator_key() is not None
    assert home.load_validator_key().public_key == key.public_key  # type: ignore[union-attr]
    node_key = home.load_node_key()
    again = init_home(tmp_path / "n1", GENESIS, node_key_seed=b"n0")
    assert peer_id_of(again.load_node_key()) == peer_id_of(node_key)  # deterministic from the seed
    assert home.load_config() == NodeConfig()
    with pytest.raises(ConfigError, match="already initialised"):
        init_home(tmp_path / "n0", GENESIS)
    # Rewriting config and genesis keeps the keys.
    init_home(tmp_path / "n0", GENESIS, overwrite=True, validator_key=PrivateKey.derive("x", "y", 1))
    assert home.load_validator_key().public_key == key.public_key  # type: ignore[union-attr]


def test_a_full_node_home_has_no_validator_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = init_home(tmp_path / "full", GENESIS, generate_validator_key=False)
    assert home.load_validator_key() is None
    home.check()


def test_keys_readable_by_others_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = init_home(tmp_path / "n", GENESIS)
    os.chmod(home.node_key_path, 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        home.load_node_key()
    home.node_key_path.write_text("{}")
    os.chmod(home.node_key_path, 0o600)
    with pytest.raises(KeyFileError, match="not an Inferchain node key"):
        home.load_node_key()


def test_config_round_trips_through_toml_and_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = NodeConfig(moniker="m", p2p=P2PSection(listen_addrs=("/ip4/127.0.0.1/tcp/0",),
                                                 bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWabc",)))
    cfg = cfg.replace(consensus=cfg.consensus.__class__(timeout_commit_ms=100))
    home = init_home(tmp_path / "t", GENESIS, config=cfg)
    assert home.load_config() == cfg
    from node.config import write_config

    write_config(tmp_path / "c.json", cfg)
    assert load_config(tmp_path / "c.json") == cfg


@pytest.mark.parametrize(("doc", "message"), [
    ({"p2p": {"listen_adrs": []}}, "unknown key p2p.'listen_adrs'"),
    ({"rpc": {"address": "localhost"}}, "rpc.address: expected host:port"),
    ({"mempool": {"max_txs": "many"}}, "mempool.max_txs: expected an integer"),
    ({"p2p": {"bootstrap": ["/ip4/1.2.3.4/tcp/1"]}}, "must end in /p2p/<peer id>"),
    ({"consensus": {"timeout_commit_ms": -1}}, "consensus.timeout_commit_ms"),
    ({"validator": "yes"}, "validator: expected true or false"),
    ({"p2p": 3}, r"\[p2p\] must be a table"),
    ({"p2p": {"inbound_bulk_workers": -1}}, "p2p.inbound_bulk_workers: must be between 0 and 1024"),
])
def test_bad_config_names_the_key(doc, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        config_from_dict(doc)


def test_missing_or_broken_files_are_one_line_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[p2p\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        NodeHome.at(tmp_path / "nowhere").check()
    with pytest.raises(ConfigError, match="chain_id"):
        init_home(tmp_path / "g", {"no": "chain"})


def test_the_home_is_self_contained_model_files_are_copied_next_to_genesis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tools.genesis import make_genesis
    from vm.genesis import load_genesis

    doc = make_genesis(1)
    home = init_home(tmp_path / "h", doc)
    for entry in doc["models"]:
        assert (home.root / entry["file"]).is_file() and (home.root / entry["golden"]).is_file()
    genesis = load_genesis(home.genesis_path)
    assert [m.name for m in genesis.models] == [m["name"] for m in doc["models"]]
