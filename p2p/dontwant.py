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
from collections import OrderedDict
from dataclasses import dataclass


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
