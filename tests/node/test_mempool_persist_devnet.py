"""A real 3-validator devnet (real processes, real LevelDB): transactions a client was told "accepted" survive
kill -9 of every validator before any block took them (node/mempool_store.py). Validator 2 is killed first, so
nothing can commit (a quorum needs all three); node 0 takes the transfers, node 1 gets them by gossip; both are
killed. Node 1 alone comes back with them pending (its own store: what it was gossiped); node 0, which finds a
record of its store cut short, comes back with them pending, the one replaced before the crash still reading
"replaced", the cut record skipped with a logged StorageError, and gossips them again after its wait for peers (an
observer peer that was never sent them before the crash receives them from node 0); once validator 2 is back they
commit."""

from __future__ import annotations

import urllib.request
from typing import Any

import plyvel
import pytest

from core.tx import Transaction
from core.types import Amount
from node.mempool import RemovalReason
from p2p.topics import TopicKind
from tests.adversary import AdversaryPeer
from tests.realnet import RealNet
from tests.realnet.fixture import realnet_fixture
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.node

net = realnet_fixture(validators=3, block_time_ms=200, accounts=6, ready_height=2)


def _stored(net: RealNet, index: int) -> dict[str, float]:
    with urllib.request.urlopen(f"{net.spec(index).rpc_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {name: float(value) for name, value in
            (line.split(" ", 1) for line in text.splitlines() if line.startswith("inferchain_mempool_stored_"))}


def _starts(net: RealNet, index: int) -> int:
    """How many times the node's log says it started (past its wait for peers and its re-gossip)."""
    return net.log_tail(index, 1_000_000).count(" running at height ")


def _statuses(net: RealNet, index: int, txs: list[Transaction]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = net.client(index).call("tx_status", {"hashes": [t.hash.hex() for t in txs]})
    return got


def test_accepted_transactions_survive_kill_9_of_every_validator_and_commit_when_quorum_returns(
        net: RealNet) -> None:
    sender, other, to = net.account_key(3), net.account_key(4), net.account_key(5)
    c0 = net.client(0)
    nonce, other_nonce = c0.account(sender.address).nonce, c0.account(other.address).nonce

    def transfer(key: Any, n: int, fee: int = 10_000) -> Transaction:
        return build_tx(key, Transfer(to.address, Amount(1)), chain_id=net.chain_id, nonce=n, gas_limit=10_000,
                        fee=fee)

    replaced, replacement = transfer(other, other_nonce), transfer(other, other_nonce, fee=20_000)
    txs = [transfer(sender, nonce + i) for i in range(5)] + [replacement]
    net.kill(2)  # below quorum from here: nothing commits
    assert c0.broadcast_tx(replaced).accepted
    answers = c0.broadcast_txs(txs)
    assert all(a.accepted for a in answers), answers
    assert [s["status"] for s in _statuses(net, 0, txs)] == ["pending"] * len(txs)
    net.wait_until("node 0's store to hold the transfers and the replacement's outcome",
                   lambda: _stored(net, 0) == {"inferchain_mempool_stored_txs": len(txs),
                                               "inferchain_mempool_stored_outcomes": 1}, 30)
    net.wait_until("node 1's store to hold what it was gossiped",
                   lambda: _stored(net, 1)["inferchain_mempool_stored_txs"] == len(txs), 30)
    height = net.height(0)
    net.kill(0)
    net.kill(1)

    # A record cut short on disk (a disk fault): skipped with a logged StorageError, not a crash.
    db = plyvel.DB(str(net.spec(0).home / "mempool"))
    try:
        value = db.get(b"p" + bytes(txs[0].hash))
        assert value is not None
        db.put(b"p" + b"\x01" * 32, value[:30])
    finally:
        db.close()

    # An observer that redials node 0 until it is back: it met none of the transfers before the crash, so any it
    # receives published by node 0 (the gossip's origin) are node 0's re-gossip of what it took back.
    observer = AdversaryPeer(net.chain_id, "regossip-observer", bootstrap=[net.spec(0).p2p_addr],
                             record=[TopicKind.TXS])
    with observer:
        started_before = _starts(net, 1)
        net.restart(1)  # alone: what it holds comes from its own store
        assert [s["status"] for s in _statuses(net, 1, txs)] == ["pending"] * len(txs)
        # Node 1 gossips what it took back too, once its own wait for peers ends. Had node 0 come up within that
        # wait, node 1's batch (the same transactions in the same order: the same bytes, so the same message id)
        # would reach node 0 first and node 0's own publish of it would be a copy, dropped (CI failed on it once);
        # so node 0 restarts only once node 1 has started, its batch gone to no peer.
        net.wait_until("node 1 to finish starting", lambda: _starts(net, 1) > started_before, 60)
        net.restart(0)

        def regossiped() -> bool:
            node0 = net.spec(0).peer_id
            seen = {bytes(tx.hash) for m in list(observer.messages[TopicKind.TXS]) if str(m.origin) == node0
                    for tx in m.value.txs}
            return {bytes(tx.hash) for tx in txs} <= seen

        net.wait_until("node 0 to gossip again the transfers it took back", regossiped, 30)
    statuses = _statuses(net, 0, [*txs, replaced])
    assert [s["status"] for s in statuses[:-1]] == ["pending"] * len(txs)
    assert statuses[-1]["status"] == "rejected"
    assert statuses[-1]["reason"] == RemovalReason.REPLACED.value
    assert c0.status().height == height  # nothing committed meanwhile
    log = net.log_tail(0, 400)
    assert "StorageError: mempool store: pending record" in log and "skipped" in log
    assert "6 transactions pending before the restart taken back" in log

    net.restart(2)
    net.wait_until("the transfers to commit once quorum is back",
                   lambda: all(s["status"] == "committed" for s in _statuses(net, 0, txs)), 120)
    assert net.client(2).account(sender.address).nonce == nonce + 5
    for index in (0, 1):
        net.wait_until(f"node {index}'s store to forget what committed",
                       lambda i=index: _stored(net, i)["inferchain_mempool_stored_txs"] == 0, 30)
