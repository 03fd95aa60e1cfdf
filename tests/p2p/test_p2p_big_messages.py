"""Messages past py-libp2p's 1 MiB default cross real hosts up to the 2 MiB frame; one byte more is refused.

py-libp2p makes each peer's outbound queue with a 1 MiB `max_message_size` and drops larger RPCs at the
sender, so a transaction with a 1 MiB input (the largest transaction, ~1.07 MiB) never left its node. The
frame cap is now 2 MiB both ways (p2p.limits.LIBP2P_FRAME_MAX, set by GuardedPubsub).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from core.limits import MAX_TX_PAYLOAD_BYTES
from core.tx import Transaction
from core.types import Hash32
from p2p.batcher import encode_tx_batch
from p2p.errors import Oversized
from p2p.limits import DEFAULT_TOPIC_LIMITS, LIBP2P_FRAME_MAX
from p2p.testing.chain import make_tx
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KIB = 1024


@pytest.mark.trio
async def test_the_largest_transaction_and_a_batch_at_the_cap_cross_the_mesh() -> None:
    """Three nodes in a star (1 and 2 dial 0): node 1 publishes a batch holding one transaction at the payload
    cap (over 1 MiB) and a batch just under the topic cap (~2 MiB); node 0 receives and relays both to node 2.
    Before the fix the sender dropped both without a trace but a counter."""
    inboxes = [Inbox() for _ in range(3)]
    largest = encode_tx_batch([make_tx(CHAIN, 1, payload_bytes=MAX_TX_PAYLOAD_BYTES).encode()])
    assert len(largest) > 1024 * KIB
    # Seven transactions of ~290 KiB: the batch sits within 4 KiB under the tx-batch topic cap.
    per_tx = (DEFAULT_TOPIC_LIMITS.tx_batch - 16) // 7 - 400
    near_cap = encode_tx_batch([make_tx(CHAIN, 10 + n, payload_bytes=per_tx).encode() for n in range(7)])
    assert DEFAULT_TOPIC_LIMITS.tx_batch - 4 * KIB < len(near_cap) <= DEFAULT_TOPIC_LIMITS.tx_batch
    with trio.fail_after(60):
        async with running_nodes(3, full_mesh=False, configure=lambda i, s: inboxes[i].attach(s)) as nodes:
            await wait_for_mesh(nodes, minimum=1)
            ids = {bytes(await nodes[1].publish(TopicKind.TXS, data)) for data in (largest, near_cap)}
            await wait_until(lambda: all(inboxes[i].ids(TopicKind.TXS) >= ids for i in (0, 2)), within=30)
            assert all(n.counters.outbound_dropped == 0 for n in nodes)
            assert sorted(len(m.data) for m in inboxes[2].messages[TopicKind.TXS]) == sorted(
                [len(largest), len(near_cap)])


def rpc_of_size(bad: Attacker, topic: str, size: int) -> bytes:
    """A signed pubsub RPC publishing one message, serialized to exactly `size` bytes."""
    data_len = size - 256
    while True:
        frame = rpc_pb2.RPC(publish=[bad.signed_message(topic, b"\x00" * data_len)]).SerializeToString()
        if len(frame) == size:
            return frame
        data_len += size - len(frame)


@pytest.mark.trio
async def test_a_message_over_the_caps_is_refused_at_the_sender_and_at_the_receiver() -> None:
    """The caps hold: our own publish over the topic cap is refused before it leaves; a pubsub RPC over the
    2 MiB frame is dropped by the sending queue (counted); a peer's frame of 2 MiB + 1 byte is a
    MALFORMED_FRAME offense at the receiver (the sender is cut off), and nothing of it is delivered."""
    inboxes = [Inbox() for _ in range(2)]
    over_topic = encode_tx_batch([make_tx(CHAIN, n, payload_bytes=300 * KIB).encode() for n in range(7)])
    assert len(over_topic) > DEFAULT_TOPIC_LIMITS.tx_batch
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inboxes[i].attach(s)) as nodes:
            await wait_for_mesh(nodes, minimum=1)
            with pytest.raises(Oversized):
                await nodes[0].publish(TopicKind.TXS, over_topic, check=False)
            # Past our topic check, straight to the library: the outbound queue's size stops it.
            pubsub = nodes[0].gossip.pubsub
            assert pubsub is not None
            await pubsub.publish(nodes[0].gossip.topic(TopicKind.TXS), b"\x00" * (LIBP2P_FRAME_MAX + 1))
            await wait_until(lambda: nodes[0].counters.outbound_dropped >= 1)

            async with attacker(b"frame over 2 MiB") as bad:
                stream = await bad.open_meshsub(nodes[1].addr)
                frame = rpc_of_size(bad, nodes[1].gossip.topic(TopicKind.TXS), LIBP2P_FRAME_MAX + 1)
                with trio.move_on_after(10), contextlib.suppress(Exception):  # the victim resets mid-frame
                    await Attacker.send_raw(stream, frame)
                await wait_until(lambda: nodes[1].counters.oversized_frames == 1)
                # MALFORMED_FRAME costs a correct peer's whole score: the sender is cut off.
                await wait_until(lambda: not nodes[1].host.get_network().get_connections(bad.peer_id))
            await trio.sleep(0.5)
            assert not inboxes[1].messages[TopicKind.TXS]


@pytest.mark.trio
async def test_the_txs_protocol_returns_a_transaction_at_the_payload_cap() -> None:
    """A compact proposal's missing transaction is fetched over `txs` (node/proposal_relay.py): the largest
    transaction (~1.07 MiB) fits one response, which was capped under 1 MiB before."""
    largest = make_tx(CHAIN, 1, payload_bytes=MAX_TX_PAYLOAD_BYTES)
    small = make_tx(CHAIN, 2)

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        held = {bytes(t.hash): t for t in (largest, small)}
        return [held[bytes(h)] for h in hashes if bytes(h) in held]

    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: s.reqresp.serve_txs(provide) if i == 0 else None
                                 ) as (server, client):
            got = await client.reqresp.txs(server.peer_id, [largest.hash, small.hash])
            assert [t.hash for t in got] == [largest.hash, small.hash]
