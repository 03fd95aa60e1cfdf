"""`inferchain export`: the state at a height, every table of it, in a file whose recomputed root is the
node's state root at that height; a key of a table the exporter does not know stops the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.keys import PrivateKey
from core.state import AuthenticatedMap
from core.store import MemoryStore
from core.types import Amount, PublicKeyBytes
from node.cli import cli
from node.export import SINGLETONS, TABLES, ExportError, export_state, state_pairs, state_root_of
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import upload_txs
from tests.vm.test_vm_evidence import double_vote
from tests.vm.test_vm_models import digits_meta
from tools.genesis import make_genesis
from vm.txs import Stake, Transfer, Unstake

pytestmark = pytest.mark.node


def busy_chain(tmp_path: Path) -> Devnet:
    """A chain whose state holds a record of every table: accounts, validators (a new one, one slashed),
    unbonding, an open upload with its chunk and expiry, a registered model and its name, evidence."""
    overrides = {"staking": {"unbonding_blocks": 5}, "slashing": {"max_evidence_age": 5},
                 "vm": {"upload_expiry_blocks": 50}}
    tmp_path.mkdir(exist_ok=True)
    net = Devnet.start(tmp_path, devnet_genesis(4, **overrides), nodes=1)
    net.step()
    new_key = PrivateKey.derive("export test", "validator", 0)
    params = net.genesis.params
    net.keys[new_key.address] = new_key  # it joins the set and signs from then on
    net.step([net.tx(net.account(5), Transfer(net.account(7).address, Amount(12345)), gas_limit=10_000),
              net.tx(net.account(6), Stake(PublicKeyBytes(new_key.public_key), params.staking.min_validator_stake),
                     gas_limit=10_000),
              net.tx(net.account(0), Unstake(net.genesis.validators[0].public_key, Amount(7)), gas_limit=10_000)])
    model_bytes, meta = digits_meta(fee=3)
    net.step(upload_txs(net.account(4), model_bytes, meta, params=params, chain_id=net.genesis.chain_id,
                        first_nonce=0, chunk_bytes=4096))
    _, open_meta = digits_meta(fee=4)
    open_meta = open_meta.replace(name="still-uploading")
    net.step(upload_txs(net.account(5), model_bytes, open_meta, params=params, chain_id=net.genesis.chain_id,
                        first_nonce=1, chunk_bytes=4096)[:1])
    net.step(evidence=[double_vote(net, 1, 2)])
    net.step()
    return net


def test_the_exported_state_has_the_nodes_root_at_every_height(tmp_path: Path) -> None:
    net = busy_chain(tmp_path / "chain")
    app = net.apps[0]
    doc = make_genesis(4)
    try:
        for height in range(net.height + 1):
            exported = export_state(app.store, doc, height)
            assert exported["exported"]["height"] == height
            root = app.state_map.root(height)
            assert exported["exported"]["state_root"] == root.hex()
            assert state_root_of(state_pairs(exported)) == root
        latest = export_state(app.store, doc)
        known = {t.name for t in SINGLETONS.values()} | {t.name for t in TABLES.values()}
        assert set(latest["state"]) == known  # the busy chain exercises every table
        assert latest["chain_id"] == doc["chain_id"] and latest["token"] == doc["token"]
        with pytest.raises(ExportError, match="no state at height"):
            export_state(app.store, doc, net.height + 1)
    finally:
        net.close()

    # The CLI on a stopped node's home: the same file.
    home = tmp_path / "home"
    home.mkdir()
    (home / "genesis.json").write_text(json.dumps(doc))
    (home / "data").symlink_to(tmp_path / "chain" / "node0")
    out = tmp_path / "export.json"
    result = CliRunner().invoke(cli, ["export", "--home", str(home), "--height", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tables"]["accounts"] >= 8
    written = json.loads(out.read_text())
    assert state_root_of(state_pairs(written)).hex() == written["exported"]["state_root"]


def test_a_key_of_an_unknown_table_stops_the_export(tmp_path: Path) -> None:
    """Other kinds of records get added to the state over time; one the exporter cannot place must fail the
    export loudly, never be dropped from it."""
    net = busy_chain(tmp_path)
    try:
        pairs = dict(net.apps[0].state_map.items(net.height))
    finally:
        net.close()
    store = MemoryStore()
    state_map = AuthenticatedMap(store)
    update = state_map.compute_update(None, 0, {**pairs, b"Znew-kind-of-record": b"\x01"})
    with store.write_batch() as batch:
        state_map.stage(batch, update)
    with pytest.raises(ExportError, match="unknown state key prefix 5a"):
        export_state(store, make_genesis(4), 0)
