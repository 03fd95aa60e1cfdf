"""py-libp2p's Pubsub and GossipSub with the repairs our chain needs (docs/p2p.md, upstream pitfalls 2-5).

- Anything the library raises while parsing a peer's pubsub stream or pushing its message is contained
  and reported, not allowed to kill the swarm or the pubsub service (pitfall 2, and a second crash found
  here: a published message whose `key` is not a protobuf public key raises out of `push_msg`).
- A pubsub signature that does not verify costs the forwarder score (upstream drops it silently).
- Message ids are SHA-256 of the data; the sequence number starts at time.time_ns() (pitfall 5).
- Validation and delivery go to a `Gate` (our pipeline and per-topic buffers) instead of upstream's
  validator registry, result cache and 32-slot subscription channels that drop silently (pitfall 4).
- Outbound RPCs dropped on a full peer queue are counted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import signature_validator

from p2p.counters import P2PCounters
from p2p.scoring import Offense

logger = logging.getLogger(__name__)


def content_msg_id(msg: rpc_pb2.Message) -> bytes:
    """Message id = SHA-256 of the message bytes (docs/design.md §5.2): identical bytes are one message."""
    return hashlib.sha256(msg.data).digest()


class Gate(Protocol):
    """What the guarded pubsub asks of the gossip service."""

    async def admit(self, forwarder: ID, msg: rpc_pb2.Message) -> bool: ...

    def deliver(self, msg: rpc_pb2.Message) -> None: ...

    def offense(self, peer: ID, offense: Offense, detail: str) -> None: ...


class CountingGossipSub(GossipSub):
    """GossipSub that counts the outbound RPCs it drops on a full per-peer queue."""

    def __init__(self, *args: Any, counters: P2PCounters, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counters = counters

    def _handle_dropped_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, reason: str) -> None:
        self._counters.outbound_dropped += 1
        super()._handle_dropped_rpc(peer_id, rpc, reason)


class GuardedPubsub(Pubsub):
    def __init__(self, host: IHost, router: GossipSub, gate: Gate, counters: P2PCounters, **kwargs: Any):
        super().__init__(host, router, msg_id_constructor=content_msg_id, **kwargs)
        self._gate = gate
        self._counters = counters
        # Upstream seeds with int(time.time()); with seqno-keyed equivocation checks a node restarted within
        # the same seconds range reuses numbers and loses its new messages (pitfall 5).
        self.counter = time.time_ns()

    async def stream_handler(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            # Library code parsing a remote peer's bytes: whatever it raises (protobuf DecodeError on a garbage
            # frame, pitfall 2) is the peer's fault and must stay inside this stream.
            self._counters.malformed_frames += 1
            self._gate.offense(peer_id, Offense.MALFORMED_FRAME, f"{type(exc).__name__}: {exc}")
            await _reset_quietly(stream)
            self._handle_dead_peer(peer_id)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:
            await super().push_msg(msg_forwarder, msg)
            return
        if self.is_peer_blacklisted(msg_forwarder):
            return  # upstream drops these too, but only after our signature check would have run
        try:
            if self.strict_signing and not self._is_msg_seen(msg) and not signature_validator(msg):
                self._gate.offense(msg_forwarder, Offense.BAD_SIGNATURE, "pubsub signature does not verify")
                return
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            # Same boundary as above: upstream raises from signature checks on a bad `key` field.
            self._counters.malformed_frames += 1
            self._gate.offense(msg_forwarder, Offense.MALFORMED_FRAME, f"{type(exc).__name__}: {exc}")

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if not await self._gate.admit(msg_forwarder, msg):
            raise ValidationError("refused by the topic pipeline")

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        self._gate.deliver(publish_message)

    def max_outbound_queue(self) -> int:
        """Longest per-peer outbound queue: what publishing paces against (pitfall 4)."""
        return max((len(q) for q in self.peer_queues.values()), default=0)


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception:  # the stream may already be gone; nothing to contain beyond that
        logger.debug("reset of a failed pubsub stream failed", exc_info=True)
    await trio.lowlevel.checkpoint()
