"""The node's one event hub: bounded block streams and transaction outcomes (what the RPC reads)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import trio

from core.block import Block
from core.types import Hash32
from node.events import MAX_SUBSCRIBERS, EventHub, TxOutcome, TxState
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_the_hub_refuses_a_block_stream_beyond_its_cap_and_frees_closed_ones() -> None:
    hub = EventHub()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(MAX_SUBSCRIBERS):
            await stack.enter_async_context(hub.committed_blocks())
        with pytest.raises(OverflowError):
            await stack.enter_async_context(hub.committed_blocks())
        assert hub.subscribers == MAX_SUBSCRIBERS
    assert hub.subscribers == 0


async def _waited(chain: SimChain, hashes: list[Hash32], act: Callable[[], Block]) -> tuple[dict[bytes, TxOutcome], Block]:
    """Wait for each of `hashes` in its own task; once all wait, `act` (commit or reject); the outcomes and
    what `act` returned."""
    outcomes: dict[bytes, TxOutcome] = {}
    done: list[Block] = []

    async def wait(tx_hash: Hash32) -> None:
        outcomes[bytes(tx_hash)] = await chain.events.wait_for_tx(tx_hash)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for tx_hash in hashes:
                nursery.start_soon(wait, tx_hash)
            await trio.testing.wait_all_tasks_blocked()
            done.append(act())
    return outcomes, done[0]


@pytest.mark.trio
async def test_a_waiter_learns_a_rejection_or_the_block_and_leaves_no_trace() -> None:
    chain = SimChain()
    refused = chain.transfer(0, chain.account_keys[1].address, 1)
    landed = chain.transfer(1, chain.account_keys[0].address, 1)
    assert all(v.accepted for v in await chain.submit_txs([refused, landed]))

    def act() -> Block:
        assert chain.events.waiting == 2
        chain.reject(refused.hash, "rejected: validators disagreed")
        return chain.produce()

    outcomes, block = await _waited(chain, [refused.hash, landed.hash], act)
    assert outcomes[bytes(refused.hash)].state is TxState.REJECTED
    assert outcomes[bytes(refused.hash)].reason == "rejected: validators disagreed"
    done = outcomes[bytes(landed.hash)]
    assert done.state is TxState.COMMITTED and done.height == block.height and done.index == 0
    assert chain.events.waiting == 0


def test_an_own_clients_rejection_outlives_a_flood_of_other_rejections() -> None:
    """The node that answered "accepted" keeps its own clients' rejections apart from the rejections of
    gossiped transactions, which an overloaded node has more of than its general memory holds."""
    hub = EventHub(outcome_memory=8, own_memory=4)
    own, landed = Hash32(b"\x01" * 32), Hash32(b"\x02" * 32)
    hub.own_accepted(own)
    hub.own_accepted(landed)
    hub.tx_rejected(own, "rejected: evicted: mempool full")
    gossiped = [Hash32(bytes([0x10 + i]) * 32) for i in range(20)]
    for tx_hash in gossiped:
        hub.tx_rejected(tx_hash, "rejected: expired: not included in time")
    assert hub.outcome(gossiped[0]) is None  # the general memory forgot the oldest
    found = hub.outcome(own)
    assert found is not None and found.state is TxState.REJECTED and found.reason == "rejected: evicted: mempool full"
    assert hub.own_pending == 1 and hub.outcome(landed) is None  # accepted, neither committed nor rejected yet
    # The own memory is bounded too: the oldest own rejection goes first.
    extra = [Hash32(bytes([0x40 + i]) * 32) for i in range(5)]
    for tx_hash in extra:
        hub.own_accepted(tx_hash)
        hub.tx_rejected(tx_hash, "rejected: evicted: mempool full")
    assert hub.outcome(own) is None and hub.outcome(extra[-1]) is not None


@pytest.mark.trio
async def test_a_commit_resolves_only_the_waited_transaction_at_its_index_and_forgets_own_pending() -> None:
    """A committed block resolves a waiter with its own index and result even behind transactions nobody
    waits for, keeps no outcome for those (the block store answers for them), ends their own-client pending
    entries, and then calls the commit hooks."""
    chain = SimChain()
    first = chain.transfer(0, chain.account_keys[1].address, 1)
    second = chain.transfer(1, chain.account_keys[0].address, 1)
    assert all(v.accepted for v in await chain.submit_txs([first, second]))
    chain.events.own_accepted(first.hash)
    chain.events.own_accepted(second.hash)
    hooked: list[int] = []
    chain.events.commit_hooks.append(hooked.append)
    outcomes, block = await _waited(chain, [second.hash], chain.produce)
    assert [tx.hash for tx in block.txs] == [first.hash, second.hash]
    done = outcomes[bytes(second.hash)]
    assert done.state is TxState.COMMITTED and done.height == block.height and done.index == 1
    assert done.result == block.results[1]
    assert chain.events.outcome(first.hash) is None  # nobody waited: the block store answers for it
    assert chain.events.own_pending == 0 and chain.events.waiting == 0
    assert hooked == [2]  # the process's commit hook (node/gctune.py, CommitFreezer) learns the block's size
