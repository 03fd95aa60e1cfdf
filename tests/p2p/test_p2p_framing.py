"""Honest traffic must never produce a frame the receiver cannot parse (issue 9.9b)."""

from __future__ import annotations

import pytest
import trio

from p2p.batcher import encode_tx_batch
from p2p.testing.chain import make_tx
from p2p.topics import TopicKind
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]


def big_batch(n: int) -> bytes:
    """~400 KiB: more than a Yamux stream's initial send window (256 KiB)."""
    return encode_tx_batch([make_tx(CHAIN, n * 10 + i, payload_bytes=100_000).encode() for i in range(4)])


@pytest.mark.trio
async def test_a_peer_joining_during_large_publishes_gets_only_whole_frames() -> None:
    """A peer that joins (or re-opens its pubsub stream) gets the message cache replayed by tasks that wrote
    straight to its stream while the peer's sending loop wrote live messages to the same stream: two writers,
    and a write larger than the Yamux window goes out in pieces, so the frames interleaved."""
    batches = [big_batch(n) for n in range(24)]
    inbox = Inbox()
    with trio.fail_after(120):
        async with running_nodes(2, seed="frames") as nodes:
            await wait_for_mesh(nodes)
            source = nodes[0]
            published: list[bytes] = []

            async def publish_all() -> None:
                for data in batches:
                    published.append(bytes(await source.publish(TopicKind.TXS, data)))
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_all)
                await wait_until(lambda: len(published) >= 6, within=60)
                async with running_nodes(1, seed="frames-late", dial=(source.addr,),
                                         configure=lambda i, s: inbox.attach(s)) as late:
                    await wait_until(lambda: len(published) == len(batches), within=90)
                    joined_at = len(published)
                    await wait_until(lambda: set(published[joined_at:]) <= inbox.ids(TopicKind.TXS), within=60)
                    await trio.sleep(1)
                    assert late[0].counters.malformed_frames == 0
            assert source.counters.malformed_frames == 0
