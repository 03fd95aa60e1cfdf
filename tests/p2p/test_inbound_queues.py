"""The inbound bulk queues (p2p/inbound.py): per-forwarder bounds, round-robin turns, copies recognised."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from libp2p.peer.id import ID

from p2p.inbound import BulkQueues, InboundPolicy

pytestmark = [pytest.mark.p2p]

A, B = ID(b"peer-a"), ID(b"peer-b")


def key(n: int) -> tuple[str, bytes]:
    return ("txs", n.to_bytes(4, "big"))


def test_forwarders_take_turns_and_each_keeps_its_order() -> None:
    queues = BulkQueues[str](InboundPolicy())
    for n in range(3):
        assert queues.offer(A, key(n), f"a{n}", 10)
    assert queues.offer(B, key(10), "b0", 10)
    taken = [queues.take_nowait() for _ in range(4)]
    assert [item for _, item in filter(None, taken)] == ["a0", "b0", "a1", "a2"]
    assert queues.take_nowait() is None and len(queues) == 0


def test_a_flooding_forwarder_fills_only_its_own_queue() -> None:
    queues = BulkQueues[int](InboundPolicy(peer_bytes=100, peer_messages=3))
    assert [queues.offer(A, key(n), n, 40) for n in range(3)] == [True, True, False]  # bytes bound
    assert [queues.offer(B, key(10 + n), n, 1) for n in range(4)] == [True, True, True, False]  # count bound
    assert queues.dropped == 2
    assert queues.take_nowait() == (A, 0)
    assert queues.offer(A, key(2), 2, 40)  # room again once one left


def test_a_waiting_message_is_known_until_taken_or_its_forwarder_leaves() -> None:
    queues = BulkQueues[int](InboundPolicy())
    queues.offer(A, key(1), 1, 5)
    queues.offer(B, key(2), 2, 5)
    assert queues.holds(key(1)) and queues.holds(key(2))
    assert queues.take_nowait() == (A, 1)
    assert not queues.holds(key(1))
    assert queues.forget(B) == 1
    assert not queues.holds(key(2)) and len(queues) == 0


@pytest.mark.trio
async def test_take_waits_for_an_offer() -> None:
    queues = BulkQueues[int](InboundPolicy())
    got: list[tuple[ID, int]] = []

    async def taker() -> None:
        got.append(await queues.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(taker)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        queues.offer(A, key(7), 7, 1)
    assert got == [(A, 7)]
