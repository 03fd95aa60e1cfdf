"""Inbound bulk gossip (transaction batches) waits in bounded per-peer queues; consensus messages never do.

Upstream's read loop starts one task per published message the moment its frame is read. Under a transaction
backlog that is hundreds of batch tasks, each doing milliseconds of work at a time, and a proposal or a vote
read after them is one more task among them: it waits its turn in the event loop and, for a large proposal,
behind every batch already queued for the envelope check's worker threads (measured: docs/performance-latency.md,
"Consensus messages ahead of transaction gossip"). As CometBFT's MConnection gives each channel a priority,
`GuardedPubsub` now admits the consensus topics at once, as before, and puts bulk messages here, where a
fixed number of workers (`InboundPolicy.bulk_workers`) take them one at a time: however deep the backlog,
a consensus message competes with that many batch tasks, not with all of them. `bulk_workers = 0` turns the
lanes off (every bulk message admitted at once in a task of its own, upstream's way): the knob that A/Bs
them on a devnet (docs/performance-throughput.md, "Tiny inference on the devnet").

Each forwarder has its own FIFO, served round-robin, holding at most `peer_bytes` and `peer_messages`; a
message past either bound is dropped where it was read and counted (`inbound_bulk_dropped`). Dropping is
what overload must do somewhere: the transactions reach the mempool later through other peers' copies or a
proposal's fetch, and one peer flooding batches fills only its own queue. Pure data structure; the trio
waiting is one `ParkingLot`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio
from libp2p.peer.id import ID

from p2p.limits import MIB

T = TypeVar("T")

MessageKey = tuple[str, bytes]  # (topic, message id)


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """Bounds of the inbound bulk queues (per forwarder) and how many messages are admitted at a time."""

    bulk_workers: int = 16  # 0: no lanes, each bulk message admitted at once in its own task (upstream's way)
    peer_bytes: int = 16 * MIB  # two seconds of a peer at 8 MiB/s of batches; 16 frames at the cap
    peer_messages: int = 512

    def __post_init__(self) -> None:
        if self.bulk_workers < 0 or self.peer_bytes < 1 or self.peer_messages < 1:
            raise ValueError("inbound policy: workers must be at least 0, bytes and messages at least 1")

    @property
    def lanes(self) -> bool:
        """Bulk messages wait in `BulkQueues` for the workers (False: each is admitted at once)."""
        return self.bulk_workers > 0


class BulkQueues(Generic[T]):
    """Per-forwarder FIFOs of bulk messages waiting for admission, taken round-robin across forwarders."""

    def __init__(self, policy: InboundPolicy) -> None:
        self.policy = policy
        self._queues: OrderedDict[ID, deque[tuple[MessageKey, T, int]]] = OrderedDict()
        self._bytes: dict[ID, int] = {}
        self._keys: dict[MessageKey, int] = {}  # keys waiting, with how many copies (normally one)
        self._lot = trio.lowlevel.ParkingLot()
        self.dropped = 0
        self.peak_messages = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def holds(self, key: MessageKey) -> bool:
        """A message with this key waits here: a later copy of it is a copy (dropped where read)."""
        return key in self._keys

    def offer(self, peer: ID, key: MessageKey, item: T, size: int) -> bool:
        """Queue `item` from `peer`; False (and counted) when the peer's queue is at a bound."""
        queue = self._queues.get(peer)
        held = self._bytes.get(peer, 0)
        if queue is not None and (len(queue) >= self.policy.peer_messages or held + size > self.policy.peer_bytes):
            self.dropped += 1
            return False
        if queue is None:
            queue = self._queues[peer] = deque()
        queue.append((key, item, size))
        self._bytes[peer] = held + size
        self._keys[key] = self._keys.get(key, 0) + 1
        self.peak_messages = max(self.peak_messages, len(self))
        self._lot.unpark()
        return True

    def take_nowait(self) -> tuple[ID, T] | None:
        """The oldest message of the forwarder whose turn it is (round-robin), or None when all are empty."""
        while self._queues:
            peer, queue = next(iter(self._queues.items()))
            if not queue:
                del self._queues[peer]
                self._bytes.pop(peer, None)
                continue
            key, item, size = queue.popleft()
            self._bytes[peer] -= size
            left = self._keys.pop(key) - 1
            if left:
                self._keys[key] = left
            if queue:
                self._queues.move_to_end(peer)  # the next forwarder's turn
            else:
                del self._queues[peer]
                self._bytes.pop(peer, None)
            return peer, item
        return None

    async def take(self) -> tuple[ID, T]:
        """Wait for the next message (see `take_nowait`)."""
        while True:
            got = self.take_nowait()
            if got is not None:
                return got
            await self._lot.park()

    def forget(self, peer: ID) -> int:
        """Drop what a peer that left (or was cut off) still has waiting; returns how many."""
        queue = self._queues.pop(peer, None)
        self._bytes.pop(peer, None)
        for key, _, _ in queue or ():
            left = self._keys.pop(key) - 1
            if left:
                self._keys[key] = left
        return len(queue or ())
