"""The node's one event hub: bounded block streams and transaction outcomes (what the RPC reads)."""

from __future__ import annotations

import contextlib

import pytest
import trio

from core.types import Hash32
from node.events import MAX_SUBSCRIBERS, EventHub, TxState
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


@pytest.mark.trio
async def test_a_waiter_learns_a_rejection_or_the_block_and_leaves_no_trace() -> None:
    chain = SimChain()
    refused = chain.transfer(0, chain.account_keys[1].address, 1)
    landed = chain.transfer(1, chain.account_keys[0].address, 1)
    assert all(v.accepted for v in await chain.submit_txs([refused, landed]))
    outcomes = {}

    async def wait(tx_hash: Hash32) -> None:
        outcomes[bytes(tx_hash)] = await chain.events.wait_for_tx(tx_hash)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, refused.hash)
            nursery.start_soon(wait, landed.hash)
            await trio.testing.wait_all_tasks_blocked()
            assert chain.events.waiting == 2
            chain.reject(refused.hash, "rejected: validators disagreed")
            block = chain.produce()
    assert outcomes[bytes(refused.hash)].state is TxState.REJECTED
    assert outcomes[bytes(refused.hash)].reason == "rejected: validators disagreed"
    done = outcomes[bytes(landed.hash)]
    assert done.state is TxState.COMMITTED and done.height == block.height and done.index == 0
    assert chain.events.waiting == 0
