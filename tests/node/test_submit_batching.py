"""A client's batch reaches the gossip batcher as one lot (`TxBatcher.add_many`, `Node.submit_txs`): numbered
in order, published in order, waiting for room when the queue is full, and the node's record of its own
clients' transactions (node.proposal_hold) matches the batcher's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from core.tx import Transaction
from node.config import ConsensusSection, NodeConfig, P2PSection, RPCSection
from node.home import init_home
from node.proposal_hold import OwnTxHold
from node.service import Node
from p2p.batcher import TxBatcher
from p2p.messages import TxBatch
from p2p.testing.chain import make_tx
from tools.genesis import DEFAULT_SEED_PHRASE, account_key, make_genesis, validator_key
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.node

CHAIN = "submit"


@pytest.mark.trio
async def test_add_many_numbers_and_publishes_a_lot_in_order(mock_clock: trio.testing.MockClock) -> None:
    published: list[bytes] = []
    outs: list[int] = []

    async def publish(data: bytes) -> None:
        published.append(data)
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, max_delay_s=0.5, on_published=outs.append)
    txs = [make_tx(CHAIN, i) for i in range(10)]
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        assert await batcher.add(txs[0]) == 0
        assert await batcher.add_many(txs[1:7]) == 1
        assert await batcher.add_many([]) == 7  # nothing queued, nothing numbered
        assert await batcher.add_many(txs[7:]) == 7
        assert batcher.added == 10
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.6)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [tx for b in published for tx in TxBatch.decode(b).txs] == txs
    assert outs[-1] == 10


@pytest.mark.trio
async def test_add_many_waits_for_room_instead_of_dropping(mock_clock: trio.testing.MockClock) -> None:
    """A lot larger than the queue's capacity is queued in full, in order, as the batcher takes items out."""
    published: list[bytes] = []

    async def publish(data: bytes) -> None:
        published.append(data)
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, target_bytes=4000, max_delay_s=0.5, capacity=3)
    txs = [make_tx(CHAIN, i, payload_bytes=700) for i in range(12)]  # ~870 B each: 4 per batch
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        with trio.fail_after(5):
            assert await batcher.add_many(txs) == 0  # blocks on the full queue until the batcher drains it
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.6)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [tx for b in published for tx in TxBatch.decode(b).txs] == txs


SENDERS = 8


class RecordingHold(OwnTxHold):
    """The node's hold, noting every (number, hash) it is told was queued (its own queue forgets them once
    their batch is out)."""

    def __init__(self) -> None:
        super().__init__()
        self.noted: list[tuple[int, bytes]] = []

    def queued(self, tx_hash: bytes, seq: int) -> None:
        self.noted.append((seq, bytes(tx_hash)))
        super().queued(tx_hash, seq)


def _transfers(chain_id: str) -> list[Transaction]:
    keys = [account_key(DEFAULT_SEED_PHRASE, i) for i in range(1, SENDERS + 1)]
    sink = account_key(DEFAULT_SEED_PHRASE, 0).address
    return [build_tx(keys[i % SENDERS], Transfer(sink, 1), chain_id=chain_id, nonce=i // SENDERS, gas_limit=1000,
                     fee=1000) for i in range(40)]


@pytest.mark.trio
async def test_a_client_batch_is_queued_for_gossip_in_order_and_its_refusals_are_not(tmp_path: Path) -> None:
    """On a real node (LevelDB, libp2p host on 127.0.0.1): the accepted transactions of a `submit_txs` call
    are the batcher's next items in the call's order, and the proposal hold records each under its number;
    a refused one (a nonce already used) takes no number."""
    doc = make_genesis(1, accounts=SENDERS + 1)
    txs = _transfers(parse_genesis(doc).chain_id)
    stale = build_tx(account_key(DEFAULT_SEED_PHRASE, 1), Transfer(account_key(DEFAULT_SEED_PHRASE, 0).address, 2),
                     chain_id=parse_genesis(doc).chain_id, nonce=0, gas_limit=1000, fee=1000)  # nonce 0 of txs[0]'s sender
    cfg = NodeConfig(p2p=P2PSection(listen_addrs=("/ip4/127.0.0.1/tcp/0",)), rpc=RPCSection(enabled=False),
                     consensus=ConsensusSection(timeout_commit_ms=600_000, next_block_delay_ms=600_000))
    home = init_home(tmp_path / "node", doc, config=cfg, node_key_seed=b"submit",
                     validator_key=validator_key(DEFAULT_SEED_PHRASE, 0))
    node = Node(home, executor=LocalExecutor())
    node.own_hold = hold = RecordingHold()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            assert node.batcher is not None
            before = node.batcher.added
            first = await node.submit_txs(txs[:20])
            second = await node.submit_txs([*txs[20:30], stale, *txs[30:]])
            nursery.cancel_scope.cancel()
    assert all(v.accepted for v in first)
    assert [v.accepted for v in second] == [True] * 10 + [False] + [True] * 10
    assert node.batcher.added - before == 40
    assert hold.noted == [(before + i, bytes(tx.hash)) for i, tx in enumerate(txs)]
