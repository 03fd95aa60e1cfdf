"""IDONTWANT (gossipsub v1.2): not sending a mesh peer a large message it told us it already holds.

With every validator in one mesh each message reaches a node once from its origin and once more from every
other mesh peer that relays it (three copies in a four-validator network), and each copy costs the receiver
transport, Noise decryption, parsing and a hash before it is found to be a copy. v1.2's remedy: a node that
receives a message tells its mesh peers "I have this one" (IDONTWANT, the message id), and a peer about to
send it (its own publish, a relay, still queued or not yet made) leaves that peer out.

Two choices differ from py-libp2p's own v1.2 code, which announces after validation (when the relays it would
prevent are already being sent) for every message, and forgets every announcement at each heartbeat:

- announce on receipt, before validation (as the spec and go-libp2p do), and only transaction batches of at
  least `min_bytes`: a small message costs about as much to announce as to receive twice, and a consensus
  message that a node IGNOREs for now (a proposal or vote a round ahead of it) is accepted from a later copy,
  which an announcement would cancel;
- keep each announcement `ttl_s` (not until the next heartbeat, which may be at once), at most `max_per_peer`
  ids a peer and `max_ids_per_rpc` from one control message.

Why a lying peer cannot use this to keep a message from anyone else: an announcement only ever changes what we
send to the peer that made it (the book is keyed by the authenticated peer id of the connection it came on).
A peer that announces messages it lacks starves itself; it cannot suppress a relay to a third node, nor our
own relaying of what we validated. Ids are content hashes (SHA-256 of the data), so a node announcing an id
holds exactly those bytes, whoever it got them from; and an announcement names the id with its topic
(`announcement_id`), so bytes sent on the wrong topic cannot cancel the real message. Memory per peer is
bounded by `max_per_peer`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import (
    PROTOCOL_ID_V12,
    PROTOCOL_ID_V13,
    PROTOCOL_ID_V14,
    PROTOCOL_ID_V20,
    GossipSub,
)
from libp2p.pubsub.pb import rpc_pb2

from p2p.counters import P2PCounters

# router protocols that understand IDONTWANT (gossipsub v1.2 and later)
_DONT_WANT_PROTOCOLS = frozenset({PROTOCOL_ID_V12, PROTOCOL_ID_V13, PROTOCOL_ID_V14, PROTOCOL_ID_V20})
MERGED_DONT_WANT_IDS = 64  # ids in one merged announcement (a peer takes at most max_ids_per_rpc, 64 by default)
_SENT_IDS = 8192  # announced messages remembered: (origin, seqno) -> id sent, and arrival times


def announcement_id(topic: str, msg_id: bytes) -> bytes:
    """What an announcement names: the message id bound to its topic. Ids hash the bytes alone, so without the
    topic a peer could send a proposal's bytes on the transactions topic (where they fail), have us announce
    them, and so keep the real proposal from us."""
    return hashlib.sha256(topic.encode() + b"\0" + msg_id).digest()


@dataclass(frozen=True, slots=True)
class DontWantPolicy:
    """When to announce and how long to honour announcements; `enabled=False` turns both sides off."""

    enabled: bool = True
    # Announce transaction batches of at least this many data bytes. go-libp2p's threshold is 1 KiB; here a copy
    # of a batch of a few KiB, dropped where it is read, costs about what an announcement frame costs, so only
    # batches large enough that transport, decryption and hashing dominate are announced (docs/p2p.md).
    min_bytes: int = 64 * 1024
    # An announcement is honoured for this long: longer than a message waits in validation and in a peer's
    # outbound queue under load, so a copy still queued when it arrives is also left out.
    ttl_s: float = 10.0
    max_per_peer: int = 1024
    max_ids_per_rpc: int = 64
    # A relay of a bulk (transaction batch) message leaves no sooner than this after the message arrived, so
    # that the other mesh peers' announcements, sent when they got it from the origin, are in by then. Without
    # it a relay of a small batch, validated in a millisecond, races those announcements and mostly wins.
    bulk_relay_delay_s: float = 0.05

    def __post_init__(self) -> None:
        if self.min_bytes < 0 or self.ttl_s <= 0 or self.max_per_peer < 1 or self.max_ids_per_rpc < 1:
            raise ValueError("dont-want policy: min_bytes >= 0, ttl_s > 0, max_per_peer and max_ids_per_rpc >= 1")
        if not 0 <= self.bulk_relay_delay_s < self.ttl_s:
            raise ValueError("dont-want policy: bulk_relay_delay_s must be at least 0 and below ttl_s")


class DontWantBook:
    """Per peer, the message ids it told us it holds, each with when it said so (oldest first)."""

    def __init__(self, policy: DontWantPolicy) -> None:
        self.policy = policy
        self._ids: dict[object, OrderedDict[bytes, float]] = {}

    def add(self, peer: object, msg_ids: list[bytes], now: float) -> int:
        """Record an announcement; returns how many ids were taken (at most `max_ids_per_rpc`, 32-byte ids)."""
        held = self._ids.get(peer)
        if held is None:
            held = self._ids[peer] = OrderedDict()
        taken = 0
        for msg_id in msg_ids[:self.policy.max_ids_per_rpc]:
            if len(msg_id) != 32:
                continue  # not one of our ids (SHA-256): nothing we would ever send under it
            held[msg_id] = now
            held.move_to_end(msg_id)
            taken += 1
        while len(held) > self.policy.max_per_peer:
            held.popitem(last=False)
        return taken

    def holds(self, peer: object, msg_id: bytes, now: float) -> bool:
        """Whether `peer` told us, within `ttl_s`, that it holds `msg_id`."""
        held = self._ids.get(peer)
        if held is None:
            return False
        at = held.get(msg_id)
        return at is not None and now - at <= self.policy.ttl_s

    def prune(self, now: float) -> None:
        """Forget announcements older than `ttl_s` (called at each heartbeat)."""
        for held in self._ids.values():
            while held:
                oldest = next(iter(held.values()))
                if now - oldest <= self.policy.ttl_s:
                    break
                held.popitem(last=False)

    def forget(self, peer: object) -> None:
        self._ids.pop(peer, None)

    def size(self, peer: object) -> int:
        held = self._ids.get(peer)
        return len(held) if held is not None else 0


def announced_ids(rpc: rpc_pb2.RPC) -> Any:
    """The message ids of an RPC that is one IDONTWANT and nothing else (our announcements), else None."""
    if rpc.publish or rpc.subscriptions or rpc.HasField("senderRecord") or not rpc.HasField("control"):
        return None
    control = rpc.control
    if (len(control.idontwant) != 1 or control.ihave or control.iwant or control.graft or control.prune
            or control.ListFields()[1:]):
        return None
    return control.idontwant[0].messageIDs


class DontWantGossipSub(GossipSub):
    """GossipSub with IDONTWANT kept as above: announced on receipt by the gossip gate (`announce_held`),
    honoured for `ttl_s` when choosing whom to send a message to and again when a queued copy is about to be
    written (`is_unwanted`, called by the pubsub's sending loop)."""

    def __init__(self, *args: Any, counters: P2PCounters, priority_topics: frozenset[str] = frozenset(),
                 dont_want: DontWantPolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counters = counters
        self._priority_topics = priority_topics
        self.dont_want = DontWantBook(dont_want or DontWantPolicy())
        self._clock = clock
        # (origin, seqno) -> announcement id of what we published or relayed lately: a queued RPC carries the
        # message, not its id, and hashing it again before each write would cost what the check saves
        self._sent_ids: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        # message id -> when it arrived, for messages announced and not yet relayed (bulk_relay_delay_s)
        self._arrived: OrderedDict[bytes, float] = OrderedDict()

    def note_holder(self, peer: ID, topic: str, msg_id: bytes) -> None:
        """A peer sent us a copy of a bulk (transaction batch) message: it holds the message, so it is left out
        of our relay of it (if that has not gone yet) as if it had announced it, without an announcement frame.

        In a four-validator full mesh every relayer of a batch also receives it from the other relayers; of two
        relayers that each owe the other a copy, the later one now skips it (docs/p2p.md, "Copies of a
        batch"). The peer did send the bytes whose hash is the id, on this topic and over its authenticated
        connection, so it holds them whoever signed them: this changes only what we send to that peer, like an
        announcement. Consensus topics keep every relay (their copies are small and a vote or proposal IGNOREd
        for now is accepted from a later copy)."""
        if not self.dont_want.policy.enabled or topic in self._priority_topics:
            return
        self._counters.holders_noted += self.dont_want.add(peer, [announcement_id(topic, msg_id)], self._clock())

    def announce_held(self, msg_id: bytes, topic: str, size: int, forwarder: ID, *, accepted: bool = False) -> int:
        """Tell the topic's mesh peers that speak v1.2, except the forwarder, that we hold the message, if it is
        of at least `min_bytes` and either bulk, announced on receipt, or `accepted` (validated and delivered):
        a consensus message (`priority_topics`) IGNOREd for now, such as a proposal a round ahead, is accepted
        from a later copy, which an announcement on receipt would cancel; once accepted, later copies are
        only copies, and a large proposal's relays are what votes queue behind. Sent in the priority lane
        (announcements waiting for one peer are merged, `ByteBudgetQueue`), without our peer record. Returns how
        many peers were told."""
        policy = self.dont_want.policy
        if not policy.enabled or size < policy.min_bytes or (topic in self._priority_topics and not accepted):
            return 0
        if topic not in self._priority_topics:  # a consensus relay is never held back (bulk_relay_delay_s)
            self._arrived[msg_id] = self._clock()
            while len(self._arrived) > _SENT_IDS:
                self._arrived.popitem(last=False)
        announced = announcement_id(topic, msg_id)
        told = 0
        for peer in self.mesh.get(topic, ()):
            if peer == forwarder or self.peer_protocol.get(peer) not in _DONT_WANT_PROTOCOLS:
                continue
            rpc = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(
                idontwant=[rpc_pb2.ControlIDontWant(messageIDs=[announced])]))
            self.send_rpc(peer, rpc, priority=True)
            told += 1
        self._counters.idontwant_sent += told
        return told

    async def handle_idontwant(self, idontwant_msg: rpc_pb2.ControlIDontWant, sender_peer_id: ID) -> None:
        if not self.dont_want.policy.enabled:
            return
        ids = list(idontwant_msg.messageIDs)
        self._counters.idontwant_received += self.dont_want.add(sender_peer_id, ids, self._clock())

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        """Upstream announces after validation, every message to every v1.2 mesh peer: too late to save the
        relays it is meant to save, and a control frame per vote. We announce on receipt (`announce_held`)."""

    def _prune_idontwant_entries(self) -> None:
        self.dont_want.prune(self._clock())

    def _get_peers_to_send(self, topic_ids: Any, msg_forwarder: ID, origin: ID,
                           msg_id: bytes | None = None) -> Iterator[ID]:
        peers = super()._get_peers_to_send(topic_ids, msg_forwarder, origin, None)
        if msg_id is None or not self.dont_want.policy.enabled:
            yield from peers
            return
        now = self._clock()
        keys = [announcement_id(topic, msg_id) for topic in topic_ids]
        for peer in peers:
            if any(self.dont_want.holds(peer, key, now) for key in keys):
                self._counters.relays_suppressed += 1
                continue
            yield peer

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        """Send a validated message on (ours or a relay), remembering its id for `is_unwanted`; a relay of a
        bulk message waits until `bulk_relay_delay_s` after it arrived (it runs in the message's own task)."""
        policy = self.dont_want.policy
        if policy.enabled and (len(pubsub_msg.data) >= policy.min_bytes
                               or any(topic not in self._priority_topics for topic in pubsub_msg.topicIDs)):
            # a bulk message of any size: a peer may yet send us a copy (`note_holder`) while ours is queued
            msg_id = (self.pubsub.get_message_id(pubsub_msg) if self.pubsub is not None
                      else hashlib.sha256(pubsub_msg.data).digest())
            if len(pubsub_msg.topicIDs) == 1:
                key = announcement_id(pubsub_msg.topicIDs[0], msg_id)
                self._sent_ids[(bytes(pubsub_msg.from_id), bytes(pubsub_msg.seqno))] = key
            while len(self._sent_ids) > _SENT_IDS:
                self._sent_ids.popitem(last=False)
            arrived = self._arrived.pop(msg_id, None)
            if arrived is not None:
                wait = arrived + policy.bulk_relay_delay_s - self._clock()
                if wait > 0:
                    await trio.sleep(wait)
        await super().publish(msg_forwarder, pubsub_msg)

    def is_unwanted(self, peer_id: ID, rpc: rpc_pb2.RPC) -> bool:
        """Whether a queued RPC is one message the peer has told us, since it was queued, that it holds.

        Only an RPC that is exactly one published message (no control, no subscriptions) is ever left out, so
        nothing but that copy is lost; its id comes from `publish` (origin and sequence number are signed)."""
        if (len(rpc.publish) != 1 or rpc.subscriptions or rpc.HasField("control")
                or not self.dont_want.policy.enabled):
            return False
        msg = rpc.publish[0]
        msg_id = self._sent_ids.get((bytes(msg.from_id), bytes(msg.seqno)))
        if msg_id is None or not self.dont_want.holds(peer_id, msg_id, self._clock()):
            return False
        self._counters.relays_suppressed += 1
        return True

    def remove_peer(self, peer_id: ID) -> None:
        self.dont_want.forget(peer_id)
        super().remove_peer(peer_id)
