"""A peer that stops reading holds at most its byte budget of our memory (docs/security.md, docs/p2p.md).

py-libp2p bounds each peer's outbound pubsub queue in RPCs only (32): at the 2 MiB frame a peer that subscribes
and then never reads made a node hold up to 64 MiB until it was dropped as stalled. `ByteBudgetQueue` bounds it
in bytes (`OUTBOUND_QUEUE_BYTES`, plus `OUTBOUND_PRIORITY_RESERVE` for consensus and control RPCs).
"""

from __future__ import annotations

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.rpc_queue import RpcQueue

from core.hashing import sha256
from p2p.batcher import encode_tx_batch
from p2p.limits import DEFAULT_TOPIC_LIMITS, OUTBOUND_PRIORITY_RESERVE, OUTBOUND_QUEUE_BYTES
from p2p.pubsub import ByteBudgetQueue, byte_budget
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

# More than the silent peer can absorb before its queue fills: what fits the budget (~4 batches at this size) plus
# what its Yamux takes without being read (the stream window grows to 16 MiB, ~8 batches: a peer whose Noise
# reader keeps up, p2p/noise.py, takes all of it within the test), and fewer than the queue's 32 RPCs.
BULK_MAX = 16


def queued(queue: RpcQueue, priority: bool) -> list[rpc_pb2.RPC]:
    """What the queue holds, read from upstream's own two lanes (not from our byte accounting)."""
    lanes = queue._queue
    return list(lanes._priority if priority else lanes._non_priority)


def held(queue: RpcQueue, priority: bool | None = None) -> int:
    lanes = [False, True] if priority is None else [priority]
    return sum(rpc.ByteSize() for p in lanes for rpc in queued(queue, p))


@pytest.mark.trio
async def test_a_peer_that_stops_reading_holds_at_most_its_byte_budget() -> None:
    """A real peer connects to node 0, subscribes to and grafts the transaction and vote topics, and never
    reads the stream node 0 opens to it. Node 0 publishes ~2 MiB transaction batches: the bytes queued for
    that peer (sampled from the queue's contents all along) stay within the budget, the batches past it are
    dropped and counted, a vote still enters that peer's queue within the reserve, and the honest node 1
    receives every batch and the vote."""
    inboxes = [Inbox() for _ in range(2)]
    per_tx = (DEFAULT_TOPIC_LIMITS.tx_batch - 16) // 7 - 400
    batches = [encode_tx_batch([make_tx(CHAIN, 7 * b + n, payload_bytes=per_tx).encode() for n in range(7)])
               for b in range(BULK_MAX)]
    vote = make_vote(CHAIN, validator_keys(1)[0], 3).encode()
    held_streams: list[INetStream] = []

    async def never_read(stream: INetStream) -> None:
        held_streams.append(stream)
        await trio.sleep_forever()

    with trio.fail_after(90):
        async with running_nodes(2, configure=lambda i, s: inboxes[i].attach(s)) as nodes, \
                attacker(b"stops reading") as bad:
            node = nodes[0]
            await wait_for_mesh(nodes, minimum=1)
            pubsub = node.gossip.pubsub
            assert pubsub is not None
            bad.host.set_stream_handler(PROTOCOL_ID_V11, never_read)
            stream = await bad.open_meshsub(node.addr)
            topics = [node.gossip.topic(k) for k in (TopicKind.TXS, TopicKind.VOTES)]
            await Attacker.send_rpc(stream, rpc_pb2.RPC(
                subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics],
                control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=t) for t in topics])))
            await wait_until(lambda: bool(held_streams) and bad.peer_id in pubsub.peer_queues and all(
                bad.peer_id in node.gossip.mesh_peers(k) for k in (TopicKind.TXS, TopicKind.VOTES)))
            queue = pubsub.peer_queues[bad.peer_id]
            lanes = byte_budget(queue)
            honest = byte_budget(pubsub.peer_queues[nodes[1].peer_id])
            assert lanes is not None and honest is not None
            most = {"all": 0, "bulk": 0}
            with trio.CancelScope() as sampling:
                async with trio.open_nursery() as nursery:

                    async def sample() -> None:
                        while True:
                            most["all"] = max(most["all"], held(queue))
                            most["bulk"] = max(most["bulk"], held(queue, priority=False))
                            await trio.sleep(0.005)

                    nursery.start_soon(sample)
                    published = []
                    for data in batches:
                        published.append(bytes(await node.publish(TopicKind.TXS, data, check=False)))
                        await trio.lowlevel.checkpoint()
                        if lanes.refused:
                            break
                    await node.publish(TopicKind.VOTES, vote)
                    in_reserve = any(m.data == vote for rpc in queued(queue, True) for m in rpc.publish)
                    most["all"] = max(most["all"], held(queue))
                    sampling.cancel()
            # the silent peer's queue never held more than its budget of bulk, nor more than budget + reserve
            assert most["bulk"] <= OUTBOUND_QUEUE_BYTES
            assert most["all"] <= OUTBOUND_QUEUE_BYTES + OUTBOUND_PRIORITY_RESERVE
            assert lanes.peak_bytes <= OUTBOUND_QUEUE_BYTES + OUTBOUND_PRIORITY_RESERVE
            assert most["bulk"] > OUTBOUND_QUEUE_BYTES - 2 * len(batches[0])  # it was filled to the budget
            # the batches past the budget were dropped for that peer, and counted
            assert lanes.refused >= 1
            assert node.counters.outbound_budget_drops >= lanes.refused
            assert node.counters.outbound_dropped >= node.counters.outbound_budget_drops
            # the vote still went into its queue, ahead of the batches, within the reserve
            assert in_reserve
            # the honest peer got the vote, and every batch its own queue took (all of them unless the loaded
            # machine made one 2 MiB write to it take over `peer_stall_s`, so that pacing stopped waiting for it)
            await wait_until(lambda: bytes(sha256(vote)) in inboxes[1].ids(TopicKind.VOTES), within=30)
            await wait_until(lambda: len(inboxes[1].ids(TopicKind.TXS) & set(published))
                             >= len(published) - honest.refused, within=30)



def publish_rpc(size: int) -> rpc_pb2.RPC:
    """An RPC of exactly `size` bytes (for sizes of a few hundred bytes)."""
    overhead = rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"\x00" * size, topicIDs=["t"])]).ByteSize() - size
    rpc = rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"\x00" * (size - overhead), topicIDs=["t"])])
    assert rpc.ByteSize() == size
    return rpc


def test_the_budget_refuses_bulk_past_it_keeps_a_reserve_for_priority_and_is_released_on_pop() -> None:
    refusals: list[int] = []
    lanes = ByteBudgetQueue(32, budget=1000, reserve=300, on_refused=lambda: refusals.append(1))
    assert [lanes.push(publish_rpc(400)) for _ in range(3)] == [True, True, False]  # 1200 > 1000
    assert (lanes.held_bytes, lanes.refused, len(refusals)) == (800, 1, 1)
    assert lanes.push(publish_rpc(300), priority=True)  # 1100: within budget + reserve
    assert not lanes.push(publish_rpc(300), priority=True)  # 1400 > 1300
    assert not lanes.push(publish_rpc(200))  # bulk stays refused while over the budget
    assert (lanes.held_bytes, lanes.peak_bytes, lanes.refused) == (1100, 1100, 3)
    popped = lanes.pop()  # priority first; its bytes are released
    assert popped is not None and popped.ByteSize() == 300 and lanes.held_bytes == 800
    assert lanes.pop() is not None and lanes.held_bytes == 400
    assert lanes.push(publish_rpc(400))  # room again
    assert lanes.held_bytes == 800 and lanes.peak_bytes == 1100


def test_the_rpc_count_bound_still_holds_and_is_not_counted_as_a_byte_refusal() -> None:
    lanes = ByteBudgetQueue(2, budget=10_000, reserve=0)
    assert [lanes.push(publish_rpc(200)) for _ in range(3)] == [True, True, False]
    assert lanes.refused == 0 and lanes.held_bytes == 400
