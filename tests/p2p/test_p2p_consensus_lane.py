"""The consensus lane on real hosts (p2p/lane.py, docs/p2p.md "The consensus lane"): a vote published while a
large transaction batch is being written to a peer reaches that peer before the batch's write is done; the
lane is bound by every per-peer rule of the pubsub stream, and carries nothing but consensus messages.

The peer is a raw libp2p host that records what the node writes to it on each stream. It holds the bulk write
by not reading the node's pubsub stream: Yamux reopens a stream's window only as its reader reads, so once the
window the peer granted (256 KiB, grown by its reads while the stream was negotiated) is spent, the node's
write of the batch in progress waits, part-written, until the peer reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.io.exceptions import IOException
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from p2p.batcher import encode_tx_batch
from p2p.lane import LANE_PROTOCOL, is_lane_rpc, lane_violation
from p2p.limits import LIBP2P_FRAME_MAX
from p2p.pubsub import ByteBudgetQueue, GuardedPubsub
from p2p.service import P2PService
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, join_tx_and_vote_meshes, running_nodes, wait_until

pytestmark = [pytest.mark.p2p]

KEY = validator_keys(1)[0]
# Batches of ~900 KiB are published until one is held: the peer's window for the stream is 256 KiB doubled once
# per read of its negotiation (0.5-4 MiB seen), at most Yamux's 16 MiB.
MAX_BATCHES = 20
TXS_TOPIC = "/inferchain/t/txs/1"
VOTES_TOPIC = "/inferchain/t/votes/1"


def _pubsub(node: P2PService) -> GuardedPubsub:
    pubsub = node.gossip.pubsub
    assert pubsub is not None
    return pubsub


def _window_spent(node: P2PService, peer: Attacker) -> bool:
    """The node is writing to the peer's pubsub stream and that stream's send window is shut."""
    pubsub = _pubsub(node)
    stream = pubsub.peers.get(peer.peer_id)
    return (stream is not None and pubsub.writing_since(peer.peer_id) is not None
            and stream.muxed_stream.send_window <= 0)  # type: ignore[attr-defined]  # Yamux's, not in INetStream


def _batch(n: int) -> bytes:
    return encode_tx_batch([make_tx(CHAIN, n, payload_bytes=900_000).encode()])


async def _publish_until_held(node: P2PService, peer: Attacker) -> list[bytes]:
    """Publish batches until the write of one to the peer is held; returns the batches published."""
    pubsub = _pubsub(node)
    published = []
    for n in range(MAX_BATCHES):
        published.append(_batch(n))
        await node.publish(TopicKind.TXS, published[-1], check=False)
        await wait_until(lambda: _window_spent(node, peer) or (
            pubsub.writing_since(peer.peer_id) is None and pubsub.queued_bytes(peer.peer_id)[0] == 0))
        if _window_spent(node, peer):
            return published
    raise AssertionError(f"{MAX_BATCHES} batches did not fill the peer's window")


class Recorder:
    """What the raw peer read from the node, per stream: the data of each published message, in order."""

    def __init__(self) -> None:
        self.main: list[bytes] = []
        self.lane: list[bytes] = []
        self.release = trio.Event()  # until set, the node's pubsub stream is not read (its write is held)

    async def read_main(self, stream: INetStream) -> None:
        await self.release.wait()
        await self._record(stream, self.main)

    async def read_lane(self, stream: INetStream) -> None:
        await self._record(stream, self.lane)

    @staticmethod
    async def _record(stream: INetStream, into: list[bytes]) -> None:
        with contextlib.suppress(IOException):
            while True:
                rpc = rpc_pb2.RPC.FromString(await read_varint_prefixed_bytes_limited(stream, LIBP2P_FRAME_MAX))
                into.extend(bytes(m.data) for m in rpc.publish)


@asynccontextmanager
async def held_peer(seed: str, **config_changes: Any) -> AsyncIterator[tuple[P2PService, Attacker, Recorder]]:
    """One node and a raw peer in its vote and transaction meshes that reads the node's lane at once and its
    pubsub stream only once `Recorder.release` is set."""
    recorder = Recorder()
    async with running_nodes(1, seed=seed, **config_changes) as (node,), attacker(seed.encode()) as peer:
        peer.host.set_stream_handler(PROTOCOL_ID_V11, recorder.read_main)
        peer.host.set_stream_handler(LANE_PROTOCOL, recorder.read_lane)
        _stream = await join_tx_and_vote_meshes(peer, node)  # held open while the test runs
        yield node, peer, recorder
        recorder.release.set()


@pytest.mark.trio
async def test_a_vote_overtakes_a_batch_whose_write_to_the_same_peer_is_held() -> None:
    """Batches are published and their write to the peer stops at the stream's window; a vote published then
    reaches the peer (on the lane) while that write is still in progress; once the peer reads, the batches
    arrive whole on the pubsub stream and the vote is not sent twice. Without the lane (consensus_lane=False,
    as before the change) the vote waits in the same queue and is read only after the batch being written."""
    vote = make_vote(CHAIN, KEY, 1).encode()
    with trio.fail_after(60):
        async with held_peer("lane-on") as (node, peer, recorder):
            await wait_until(lambda: node.counters.lanes_opened == 1)
            batches = await _publish_until_held(node, peer)
            await node.publish(TopicKind.VOTES, vote, check=False)
            # Yamux gives up on a stream whose window stays shut for 5 s; the vote needs milliseconds
            await wait_until(lambda: recorder.lane == [vote], within=4.0)
            assert _window_spent(node, peer)  # the batch's write is still held
            assert recorder.main == []
            recorder.release.set()
            await wait_until(lambda: len(recorder.main) == len(batches))
            assert recorder.main == batches
            assert node.counters.lane_frames_sent == 1

        async with held_peer("lane-off", consensus_lane=False) as (node, peer, recorder):
            batches = await _publish_until_held(node, peer)
            await node.publish(TopicKind.VOTES, vote, check=False)
            recorder.release.set()
            await wait_until(lambda: len(recorder.main) == len(batches) + 1)
            assert recorder.main == [*batches, vote]
            assert recorder.lane == [] and node.counters.lanes_opened == 0


@pytest.mark.trio
async def test_a_peers_lane_and_its_pubsub_stream_share_one_rate_budget() -> None:
    """Attack: a peer floods copies of a known vote, half on its pubsub stream and half on its consensus lane,
    each half within the gossip burst (600) on its own. Defence: both streams are read by the same loop and
    charged to the same per-peer buckets, so the peer is over its rate, penalized and cut off as with one
    stream; a lane of its own budget would have let it stay."""
    inbox = Inbox()
    copies_per_stream, per_rpc = 600, 100
    with trio.fail_after(60):
        async with running_nodes(1, seed="lane-flood", configure=lambda i, s: inbox.attach(s)) as (victim,):
            votes = victim.gossip.topic(TopicKind.VOTES)
            vote = make_vote(CHAIN, KEY, 1).encode()
            async with attacker(b"lane-flooder") as bad:
                main = await bad.open_meshsub(victim.addr)
                lane = await bad.host.new_stream(victim.peer_id, [LANE_PROTOCOL])
                await Attacker.send_rpc(lane, rpc_pb2.RPC(publish=[bad.signed_message(votes, vote)]))
                await wait_until(lambda: any(m.data == vote for m in inbox.messages[TopicKind.VOTES]), within=20)
                with contextlib.suppress(Exception):  # the victim resets the streams once it cuts us off
                    for _ in range(copies_per_stream // per_rpc):
                        for stream in (main, lane):
                            rpc = rpc_pb2.RPC(publish=[bad.signed_message(votes, vote) for _ in range(per_rpc)])
                            await Attacker.send_rpc(stream, rpc)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id), within=20)
                assert victim.counters.lane_rpcs_received >= 2
                assert victim.counters.ignored["rate_limited"] >= 20
                assert victim.peers.is_banned(bad.peer_id)
            assert [m.data for m in inbox.messages[TopicKind.VOTES]] == [vote]


@pytest.mark.trio
async def test_a_transaction_batch_on_the_lane_costs_the_peer_its_link_and_is_not_delivered() -> None:
    """Attack: a peer sends transaction batches on the consensus lane, to jump the bulk queues. Defence: a lane
    frame holding a bulk topic's message is MALFORMED_FRAME (the peer is cut off) and its batch is dropped."""
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(1, seed="lane-batch", configure=lambda i, s: inbox.attach(s)) as (victim,):
            txs = victim.gossip.topic(TopicKind.TXS)
            batch = encode_tx_batch([make_tx(CHAIN, 7).encode()])
            async with attacker(b"lane-batcher") as bad:
                await bad.open_meshsub(victim.addr)
                lane = await bad.host.new_stream(victim.peer_id, [LANE_PROTOCOL])
                with contextlib.suppress(Exception):
                    await Attacker.send_rpc(lane, rpc_pb2.RPC(publish=[bad.signed_message(txs, batch)]))
                await wait_until(lambda: victim.counters.malformed_frames == 1)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id))
                assert victim.peers.is_banned(bad.peer_id)
            assert inbox.messages[TopicKind.TXS] == []


def _publish(topic: str, *, idontwant: bool = False) -> rpc_pb2.RPC:
    rpc = rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"x" * 40, topicIDs=[topic])])
    if idontwant:
        rpc.control.idontwant.append(rpc_pb2.ControlIDontWant(messageIDs=[b"id"]))
    return rpc


def test_the_lane_carries_consensus_publishes_and_announcements_only() -> None:
    bulk = {TXS_TOPIC}
    assert lane_violation(_publish(VOTES_TOPIC, idontwant=True), bulk) is None
    assert is_lane_rpc(_publish(VOTES_TOPIC), bulk)
    assert lane_violation(_publish(TXS_TOPIC), bulk) is not None
    two_topics = rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"x", topicIDs=[VOTES_TOPIC, TXS_TOPIC])])
    assert lane_violation(two_topics, bulk) is not None
    subscribe = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=VOTES_TOPIC)])
    graft = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=VOTES_TOPIC)]))
    assert lane_violation(subscribe, bulk) is not None and lane_violation(graft, bulk) is not None
    assert not is_lane_rpc(rpc_pb2.RPC(), bulk)  # nothing to carry


def test_queued_lane_rpcs_move_ahead_of_the_pubsub_streams_priority_rpcs_when_the_lane_closes() -> None:
    """While the lane is open, consensus RPCs wait for it (sharing the peer's byte budget); when it goes, they
    go ahead of the priority deque in their order, and later pushes go there as before the lane."""
    queue = ByteBudgetQueue(32, is_lane_rpc=lambda rpc: is_lane_rpc(rpc, {TXS_TOPIC}))
    graft = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=VOTES_TOPIC)]))
    queue.lane_open = True
    votes = [_publish(VOTES_TOPIC) for _ in range(3)]
    for n, vote in enumerate(votes):
        vote.publish[0].seqno = bytes([n])
        assert queue.push(vote, priority=True)
    assert queue.push(graft, priority=True)  # control stays on the pubsub stream
    assert queue.push(_publish(TXS_TOPIC))  # bulk too
    held = queue.held_bytes
    assert held == sum(r.ByteSize() for r in [*votes, graft, _publish(TXS_TOPIC)])
    assert len(queue) == 5
    first = queue.pop_lane()
    assert first is not None and first[0] is votes[0]
    assert queue.held_bytes == held - votes[0].ByteSize()
    assert queue.close_lane() == 2
    assert [queue.pop() for _ in range(4)][:3] == [votes[1], votes[2], graft]
    assert queue.held_bytes == 0 and len(queue) == 0
    assert queue.push(votes[0], priority=True) and queue.pop_lane() is None and queue.pop() is votes[0]
