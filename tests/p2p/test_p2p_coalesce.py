"""Coalescing on real hosts (p2p/coalesce.py, docs/p2p.md "Fewer frames per message"): the consensus RPCs
queued for a peer leave as one pubsub frame, and so do the transaction batches, never mixed with them; every
message is delivered once; a frame grows no larger than `coalesce_bytes`. That a peer which stops reading is
still dropped as stalled, with coalescing on (the default), is tests/p2p/test_p2p_slow_peer.py's and
test_p2p_dead_link.py's.

To make RPCs queue up deterministically, a test holds the sender's write lock of the peer's pubsub stream (the
one `GuardedPubsub.write_msg` takes) while it publishes, as a slow socket would: the sending loop pops the
first RPC and waits on the lock, the rest queue behind it. The peer is a raw libp2p host that records each
frame as it comes off the wire.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.io.exceptions import IOException
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from p2p.batcher import encode_tx_batch
from p2p.coalesce import COALESCE_BYTES, is_mergeable
from p2p.limits import LIBP2P_FRAME_MAX
from p2p.pubsub import GuardedPubsub
from p2p.service import P2PService
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, join_tx_and_vote_meshes, running_nodes, wait_until

pytestmark = [pytest.mark.p2p]

KEYS = validator_keys(4)
VOTES = 12


class Frame(NamedTuple):
    """One pubsub frame as the peer read it: its RPC's bytes, and (topic kind, data) of each published message."""

    size: int
    messages: list[tuple[TopicKind, bytes]]

# one vote's RPC beyond the vote: its pubsub envelope (topic, from, seqno, signature, key, ~185 B) and our
# signed peer record (~220 B)
RPC_OVERHEAD = 410


def _pubsub(node: P2PService) -> GuardedPubsub:
    pubsub = node.gossip.pubsub
    assert pubsub is not None
    return pubsub


@asynccontextmanager
async def writes_held(sender: P2PService, receiver: ID) -> AsyncIterator[None]:
    """Hold the sender's write lock of its pubsub stream to `receiver` for the body (see module doc)."""
    pubsub = _pubsub(sender)
    stream: INetStream = pubsub.peers[receiver]
    lock = pubsub._write_locks.setdefault(stream, trio.Lock())
    async with lock:
        yield


def votes(first_height: int, count: int) -> list[bytes]:
    return [make_vote(CHAIN, KEYS[0], height=first_height + n).encode() for n in range(count)]


@asynccontextmanager
async def framed_peer(seed: str, **config_changes: Any) -> AsyncIterator[tuple[P2PService, Attacker, list[Frame]]]:
    """One node and a raw libp2p peer in its vote and transaction meshes that records every pubsub frame the
    node writes to it: per frame, (topic kind, data) of each published message, in frame order."""
    frames: list[Frame] = []
    async with running_nodes(1, seed=seed, **config_changes) as (node,), attacker(seed.encode()) as peer:
        kinds = {node.gossip.topic(k): k for k in TopicKind}

        async def record(stream: INetStream) -> None:
            with contextlib.suppress(IOException):
                while True:
                    rpc = rpc_pb2.RPC.FromString(await read_varint_prefixed_bytes_limited(stream, LIBP2P_FRAME_MAX))
                    frames.append(Frame(rpc.ByteSize(), [(kinds[m.topicIDs[0]], bytes(m.data)) for m in rpc.publish]))

        peer.host.set_stream_handler(PROTOCOL_ID_V11, record)
        _stream = await join_tx_and_vote_meshes(peer, node)  # held open while the test runs
        yield node, peer, frames


async def send_held(node: P2PService, peer: Attacker, frames: list[Frame],
                    messages: list[tuple[TopicKind, bytes]]) -> list[Frame]:
    """Publish `messages` on `node` while its writes to `peer` are held, let them go, and return the frames
    (those with published messages) that carried them."""
    first = len(frames)
    async with writes_held(node, peer.peer_id):
        for kind, data in messages:
            await node.publish(kind, data, check=False)
    await wait_until(lambda: sum(len(f.messages) for f in frames[first:]) >= len(messages))
    return [f for f in frames[first:] if f.messages]


@pytest.mark.trio
async def test_queued_votes_leave_as_one_frame_each_once_in_publish_order() -> None:
    """12 votes queued behind a held write reach the peer in at most two frames (the one the sending loop had
    popped, and the rest merged), each vote once and in publish order; with coalescing off, 12 frames."""
    sent = votes(1, VOTES)
    with trio.fail_after(60):
        for coalesce_bytes, most_frames in ((COALESCE_BYTES, 2), (0, VOTES)):
            async with framed_peer(f"co{coalesce_bytes}", coalesce_bytes=coalesce_bytes) as (node, peer, frames):
                got = await send_held(node, peer, frames, [(TopicKind.VOTES, v) for v in sent])
                assert [d for f in got for _, d in f.messages] == sent
                assert len(got) <= most_frames
                if coalesce_bytes == 0:
                    assert len(got) == VOTES


@pytest.mark.trio
async def test_queued_batches_leave_as_one_frame_each_once_in_publish_order() -> None:
    """8 transaction batches queued behind a held write reach the peer in at most two frames, each batch once
    and in publish order; with bulk coalescing off (`coalesce_bulk=False`), a frame each."""
    sent = [encode_tx_batch([make_tx(CHAIN, 10 * b + n).encode() for n in range(5)]) for b in range(8)]
    with trio.fail_after(60):
        for bulk, most_frames in ((True, 2), (False, len(sent))):
            async with framed_peer(f"cob{bulk}", coalesce_bulk=bulk) as (node, peer, frames):
                got = await send_held(node, peer, frames, [(TopicKind.TXS, b) for b in sent])
                assert [d for f in got for _, d in f.messages] == sent
                assert len(got) <= most_frames
                if not bulk:
                    assert len(got) == len(sent)


@pytest.mark.trio
async def test_a_merged_frame_stays_within_coalesce_bytes_and_never_mixes_batches_with_votes() -> None:
    """With `coalesce_bytes` set to three votes' worth, 12 queued votes leave in frames of at most three votes;
    transaction batches queued before them are never merged with a vote and go out after the votes (the
    priority lane first), except the one the sending loop had already popped."""
    sent = votes(100, VOTES)
    batches = [encode_tx_batch([make_tx(CHAIN, 10 * b + n).encode() for n in range(5)]) for b in range(3)]
    per_vote = len(sent[0]) + RPC_OVERHEAD
    cap = 3 * per_vote + per_vote // 2
    with trio.fail_after(60):
        async with framed_peer("cocap", coalesce_bytes=cap) as (node, peer, frames):
            got = await send_held(node, peer, frames,
                                  [(TopicKind.TXS, b) for b in batches] + [(TopicKind.VOTES, v) for v in sent])
    assert [d for f in got for k, d in f.messages if k is TopicKind.VOTES] == sent
    assert all(f.size <= cap for f in got if len(f.messages) > 1)  # only a lone RPC may be larger
    assert all(len(f.messages) <= 3 for f in got)
    assert all(len({k for k, _ in f.messages}) == 1 for f in got)  # a frame is one lane's
    assert sum(len(f.messages) == 3 for f in got) >= VOTES // 3 - 1  # votes were merged up to the cap
    order = [k for f in got for k, _ in f.messages]
    # the first batch may have been popped before the write was held; the others wait for every vote
    assert order[-2:] == [TopicKind.TXS, TopicKind.TXS]
    assert order.index(TopicKind.TXS, 1) > max(i for i, k in enumerate(order) if k is TopicKind.VOTES)


def test_only_publishes_announcements_and_the_peer_record_are_mergeable() -> None:
    """What a receiver handles the same whether it comes alone or merged; subscriptions and the other control
    messages keep a frame of their own."""
    msg = rpc_pb2.Message(data=b"v", topicIDs=["t"])
    dont_want = rpc_pb2.ControlMessage(idontwant=[rpc_pb2.ControlIDontWant(messageIDs=[b"\x01" * 32])])
    assert is_mergeable(rpc_pb2.RPC(publish=[msg], senderRecord=b"record"))
    assert is_mergeable(rpc_pb2.RPC(control=dont_want))
    assert is_mergeable(rpc_pb2.RPC(publish=[msg], control=dont_want))
    assert not is_mergeable(rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid="t")]))
    graft = rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID="t")])
    assert not is_mergeable(rpc_pb2.RPC(publish=[msg], control=graft))
    ihave = rpc_pb2.ControlMessage(idontwant=list(dont_want.idontwant),
                                   ihave=[rpc_pb2.ControlIHave(topicID="t", messageIDs=[b"x"])])
    assert not is_mergeable(rpc_pb2.RPC(control=ihave))
