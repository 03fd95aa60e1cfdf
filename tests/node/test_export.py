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
from core.types import Address, Amount, Hash32, PublicKeyBytes
from core.validators import ValidatorEntry
from node.blobstore import FileBlobStore
from node.cli import cli
from node.export import SINGLETONS, TABLES, ExportError, export_state, state_pairs, state_root_of
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import upload_txs
from tests.vm.test_vm_evidence import double_vote
from tests.vm.test_vm_models import digits_meta
from tools.genesis import TOKEN, make_genesis
from vm.gov.types import SubmitProposal, TextProposal, Vote, VoteOption
from vm.txs import Delegate, Redelegate, Stake, Transfer, Unstake

pytestmark = pytest.mark.node


def busy_chain(tmp_path: Path) -> Devnet:
    """A chain whose state holds a record of every table: accounts, validators (a new one, one slashed),
    unbonding, an open upload with its chunk and expiry, a registered model and its name, evidence."""
    overrides = {"staking": {"unbonding_blocks": 20}, "slashing": {"max_evidence_age": 5},
                 "vm": {"upload_expiry_blocks": 50}, "gov": {"voting_blocks": 4}}
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
    # Delegation (pools, delegations, the delegator index, a maturing redelegation) and governance (two
    # proposals, their deposits, votes and queues; the first closes, leaving its events).
    view = net.apps[0].view()
    validators = [a for a in (Address(ValidatorEntry(v.public_key, 1).address) for v in net.genesis.validators)
                  if not view.validator(a).tombstoned][:2]  # type: ignore[union-attr]
    deposit = Amount(net.genesis.params.gov.min_deposit)
    for payload, sender in ((Delegate(validators[0], Amount(5 * TOKEN)), 7),
                            (Redelegate(validators[0], validators[1], Amount(TOKEN)), 7),
                            (SubmitProposal("export test", "", TextProposal(), deposit), 6),
                            (Vote(1, VoteOption.YES), 7), (None, 0),
                            (SubmitProposal("still voting", "", TextProposal(), deposit), 6),
                            (Vote(2, VoteOption.NO), 0)):
        block = net.step([] if payload is None else [net.tx(net.account(sender), payload, gas_limit=100_000)])
        assert all(r.status == 0 for r in block.results), [r.log for r in block.results]
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
        # The busy chain exercises every table but the two a software upgrade writes (tests/e2e/
        # test_governance.py runs one on real processes) and those of resident models and their retirement
        # (tests/vm/test_vm_retire.py exports a state holding each).
        assert set(latest["state"]) == known - {"upgrade_plan", "applied_upgrades", "deferred_models",
                                                 "activations", "deferred_tail", "resident_set", "model_deposits",
                                                 "retired_models", "retired_kept_records", "retired_purges"}
        assert latest["chain_id"] == doc["chain_id"] and latest["token"] == doc["token"]
        with pytest.raises(ExportError, match="no state at height"):
            export_state(app.store, doc, net.height + 1)
        blobs = {bytes(d): app.blobs.get_blob(d) or b"" for d in app.blobs.digests()}
    finally:
        net.close()

    # The CLI on a stopped node's home: the same file.
    home = tmp_path / "home"
    home.mkdir()
    (home / "genesis.json").write_text(json.dumps(doc))
    (home / "data").symlink_to(tmp_path / "chain" / "node0")
    FileBlobStore(home / "blobs").put_blobs(blobs)  # the node's model bytes, as a node home keeps them
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
    update = state_map.compute_update(None, 0, {**pairs, b"Wnew-kind-of-record": b"\x01"})
    with store.write_batch() as batch:
        state_map.stage(batch, update)
    with pytest.raises(ExportError, match="unknown state key prefix 57"):
        export_state(store, make_genesis(4), 0)


def test_a_fork_of_the_export_runs_with_its_own_validators_and_keeps_the_state(tmp_path: Path) -> None:
    """`devnet up --from-genesis`'s genesis: the exported state under a new chain id with 2 validators in
    place of the exported 5; balances, models and pending unbonding carry over, the supply still adds up."""
    from tools.genesis import make_genesis as fresh
    from vm.genesis import parse_genesis
    from vm.gov.store import ESCROW, get_proposal
    from vm.gov.types import ProposalStatus
    from vm.state import RedelegationQueue, UnbondingQueue, redelegation_key, unbonding_key

    net = busy_chain(tmp_path / "chain")
    try:
        assert supply_gap(net) == 0
        exported = export_state(net.apps[0].store, make_genesis(4), blobs=net.apps[0].blobs)
        at = net.height
        old_view = net.apps[0].view()
        rich = net.account(7).address
        balance = old_view.account(rich).balance
        model_ids = [bytes.fromhex(k)[1:] for k, _ in exported["state"]["models"]]
        pending = [int.from_bytes(bytes.fromhex(k)[1:], "big") for k, _ in exported["state"]["unbonding"]]
        maturing = [int.from_bytes(bytes.fromhex(k)[1:], "big") for k, _ in exported["state"]["redelegations"]]
        open_proposal = get_proposal(old_view, 2)
    finally:
        net.close()
    assert pending and all(h > at for h in pending)
    doc = {**exported, "chain_id": "inferchain-fork-1", "validators": fresh(2)["validators"]}
    genesis = parse_genesis(json.loads(json.dumps(doc)))
    (tmp_path / "fork").mkdir()
    fork = Devnet.start(tmp_path / "fork", genesis, nodes=1)
    try:
        view = fork.apps[0].view()
        assert view.account(rich).balance == balance
        assert all(view.model(Hash32(m)) is not None for m in model_ids)
        assert [e.address for e in fork.apps[0].validator_set(1).entries] == sorted(
            e.address for e in genesis.validator_set().entries)
        assert view.get(unbonding_key(pending[0] - at), UnbondingQueue) is not None  # due as many blocks on
        assert maturing and view.get(redelegation_key(maturing[0] - at), RedelegationQueue) is not None
        assert open_proposal is not None and open_proposal.status is ProposalStatus.VOTING_PERIOD
        forked = get_proposal(view, 2)
        assert forked is not None and forked.voting_end == open_proposal.voting_end - at  # blocks left kept
        fork.step([fork.tx(fork.account(7), Transfer(fork.account(6).address, Amount(5)), gas_limit=10_000)])
        for _ in range(4):
            fork.step()
        assert len(fork.apps[0].validator_set(fork.height).entries) == 2
        assert fork.apps[0].view().account(rich).balance < balance  # it paid, on the fork's chain id
        assert supply_gap(fork) == 0
        closed = get_proposal(fork.apps[0].view(), 2)  # its voting end came on the fork's own heights
        assert closed is not None and closed.status not in (ProposalStatus.DEPOSIT_PERIOD,
                                                            ProposalStatus.VOTING_PERIOD)
        assert fork.apps[0].view().account(ESCROW).balance == 0
    finally:
        fork.close()


def supply_gap(net: Devnet) -> int:
    """genesis + issued - burned minus every balance, stake, unbonding entry and delegators' reward pool in
    the whole state (the harness's own check only sums the accounts it knows of)."""
    from vm.state import Account, UnbondingQueue, ValidatorPool, ValidatorRecord

    app = net.apps[0]
    supply = app.view().supply()
    held = 0
    for key, value in app.state_map.items(net.height):
        if key[:1] == b"A" and len(key) == 21:
            held += Account.decode(value).balance
        elif key[:1] == b"V" and len(key) == 21:
            held += ValidatorRecord.decode(value).stake
        elif key[:1] == b"Q" and len(key) == 9:
            held += sum(e.amount for e in UnbondingQueue.decode(value).entries)
        elif key[:1] == b"P" and len(key) == 21:
            held += ValidatorPool.decode(value).reward_pool
    return supply.genesis + supply.issued - supply.burned - held
