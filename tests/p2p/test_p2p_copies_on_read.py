"""A copy of a message is dropped where its frame is read, whenever the first copy was read before it
(p2p/pubsub.py `_handle_frame`, `Gate.is_copy`; docs/p2p.md "Validator pipeline").

The race this pins down: a consensus message gets an admission task when its frame is read, and until that task
runs the message was neither queued nor in validation, so the same message read from a second peer in between
got a task of its own (a pubsub signature check twice, a hash) and was dropped only in the gate's `admit`
(`late_duplicates`). Which of two peers' read loops runs first is up to trio's scheduler, so the test hands the
node's real read path (`GuardedPubsub._handle_frame`) the two peers' frames back to back, with no schedule point
in between: exactly the interleaving that raced, every time. The peers are real libp2p hosts connected to a
real node; their frames are what they would write on the wire.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.io.exceptions import IOException
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2

from core.hashing import sha256
from p2p.batcher import encode_tx_batch
from p2p.pubsub import GuardedPubsub
from p2p.service import P2PService
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_until

pytestmark = [pytest.mark.p2p]


@asynccontextmanager
async def node_and_peers(n: int) -> AsyncIterator[tuple[P2PService, GuardedPubsub, Inbox, list[Attacker]]]:
    """One node and `n` raw peers, each with its pubsub stream to the node open."""
    inbox = Inbox()
    async with AsyncExitStack() as stack:
        (node,) = await stack.enter_async_context(running_nodes(1, seed="copies", configure=lambda _, s: inbox.attach(s)))
        pubsub = node.gossip.pubsub
        assert pubsub is not None
        peers = [await stack.enter_async_context(attacker(f"copier-{i}".encode())) for i in range(n)]
        for peer in peers:
            peer.host.set_stream_handler(PROTOCOL_ID_V11, drain)  # the node's pubsub stream to the peer
            await peer.open_meshsub(node.addr)
        await wait_until(lambda: all(p.peer_id in pubsub.peers for p in peers))
        yield node, pubsub, inbox, peers


async def drain(stream: INetStream) -> None:
    with contextlib.suppress(IOException):
        while await stream.read(1 << 16):
            pass


def frame(*messages: rpc_pb2.Message) -> bytes:
    return rpc_pb2.RPC(publish=list(messages)).SerializeToString()


async def read_from_each(pubsub: GuardedPubsub, peers: list[Attacker], data: bytes) -> None:
    """The node reads `data` (one frame) from each peer in turn, without a schedule point in between."""
    for peer in peers:
        await pubsub._handle_frame(peer.peer_id, pubsub.peers[peer.peer_id], data)


@pytest.mark.trio
async def test_a_consensus_message_read_from_two_peers_before_its_task_starts_is_admitted_once() -> None:
    with trio.fail_after(30):
        async with node_and_peers(3) as (node, pubsub, inbox, (origin, relay, late)):
            vote = make_vote(CHAIN, validator_keys(1)[0], height=7).encode()
            data = frame(origin.signed_message(node.gossip.topic(TopicKind.VOTES), vote))
            await read_from_each(pubsub, [origin, relay], data)
            await wait_until(lambda: sha256(vote) in inbox.ids(TopicKind.VOTES))
            await read_from_each(pubsub, [late], data)  # a copy after delivery: upstream's seen cache
            await trio.sleep(0.2)  # anything that slipped through would be admitted by now
            assert [m.msg_id for m in inbox.messages[TopicKind.VOTES]] == [sha256(vote)]
            assert node.counters.duplicates == 2
            assert node.counters.late_duplicates == 0  # both copies dropped where read, none got a task


@pytest.mark.trio
async def test_a_frame_of_several_batches_read_from_two_peers_is_admitted_once_each() -> None:
    """Transaction batches wait in the forwarder's bulk queue until a worker admits them; the worker's path from
    the queue to the gate's in-validation mark has no schedule point, so a copy always finds one or the other."""
    with trio.fail_after(30):
        async with node_and_peers(2) as (node, pubsub, inbox, (origin, relay)):
            topic = node.gossip.topic(TopicKind.TXS)
            batches = [encode_tx_batch([make_tx(CHAIN, 100 * b + n).encode() for n in range(5)]) for b in range(3)]
            data = frame(*(origin.signed_message(topic, b) for b in batches))
            await read_from_each(pubsub, [origin, relay], data)
            await wait_until(lambda: len(inbox.messages[TopicKind.TXS]) >= len(batches))
            await read_from_each(pubsub, [relay], data)
            await trio.sleep(0.2)
            assert sorted(m.msg_id for m in inbox.messages[TopicKind.TXS]) == sorted(sha256(b) for b in batches)
            assert node.counters.duplicates == 2 * len(batches)
            assert node.counters.late_duplicates == 0
