"""The consensus lane: a second pubsub stream to each peer, for consensus messages only.

Each peer gets one pubsub stream from upstream, written one frame at a time (`GuardedPubsub.write_msg`), so
a vote queued while a transaction batch or a large proposal is being written left only when that write was
done: up to 2 MiB behind a Yamux window that the peer reopens only as it reads (docs/p2p.md, "The consensus
lane"). Yamux interleaves the frames of different streams on one connection (each of its frames, at most one
Noise message, takes the connection's write lock on its own), and each stream has its own flow-control window.
So the sender opens a second stream, `LANE_PROTOCOL`, and a loop of its own writes the consensus RPCs to it: a
vote waits for at most one Yamux frame of a bulk write, never for the whole write, nor for a bulk stream whose
window the peer has not reopened.

The lane carries the same pubsub RPC frames as the main stream, read by the same loop, so every per-peer rule
applies to it unchanged: frame limit, copy check, rate limit, pubsub and payload signatures, topic caps,
scores. What it may carry is narrower (`lane_violation`): published messages of consensus topics, IDONTWANT
announcements and the peer record. A peer that puts anything else there (a transaction batch, subscriptions,
GRAFT) breaks the protocol: MALFORMED_FRAME, as for a frame that does not parse.
"""

from __future__ import annotations

from collections.abc import Collection

from libp2p.custom_types import TProtocol
from libp2p.pubsub.pb import rpc_pb2

from core.errors import PeerMisbehaved
from p2p.coalesce import is_mergeable

LANE_PROTOCOL = TProtocol("/inferchain/consensus-lane/1.0.0")
# How long the sender waits for a peer to accept the lane stream; a peer without it keeps one stream.
LANE_OPEN_TIMEOUT_S = 5.0


class LaneViolation(PeerMisbehaved):
    """A frame on a peer's lane stream held what the lane may not carry (`lane_violation`)."""


def is_lane_rpc(rpc: rpc_pb2.RPC, bulk_topics: Collection[str]) -> bool:
    """Whether an outbound RPC goes on the lane: it breaks no rule of `lane_violation` and carries something."""
    if not rpc.publish and not rpc.HasField("control"):
        return False
    return lane_violation(rpc, bulk_topics) is None


def lane_violation(rpc: rpc_pb2.RPC, bulk_topics: Collection[str]) -> str | None:
    """Why an RPC may not travel on the lane (None when it may): only published messages of topics other than
    the bulk ones, each of exactly one topic, IDONTWANT announcements and the sender's peer record."""
    if not is_mergeable(rpc):
        return "subscriptions or control other than IDONTWANT"
    for msg in rpc.publish:
        if len(msg.topicIDs) != 1:
            return f"a message of {len(msg.topicIDs)} topics"
        if msg.topicIDs[0] in bulk_topics:
            return f"a message of bulk topic {msg.topicIDs[0]}"
    return None
