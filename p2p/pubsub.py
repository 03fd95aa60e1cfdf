"""py-libp2p's Pubsub and GossipSub with the repairs our chain needs (docs/p2p.md, upstream pitfalls 2-5).

- Anything the library raises while parsing a peer's pubsub stream or pushing its message is contained
  and reported, not allowed to kill the swarm or the pubsub service (pitfall 2, and a second crash found
  here: a published message whose `key` is not a protobuf public key raises out of `push_msg`).
- A pubsub signature that does not verify costs the forwarder score (upstream drops it silently).
- Message ids are SHA-256 of the data; the sequence number starts at time.time_ns() (pitfall 5).
- Validation and delivery go to a `Gate` (our pipeline and per-topic buffers) instead of upstream's
  validator registry, result cache and 32-slot subscription channels that drop silently (pitfall 4).
- Outbound RPCs dropped on a full peer queue are counted. Messages of the consensus topics go out ahead of
  queued bulk (transaction batches): upstream's queue has a priority lane, used only for control messages.
- A slow or dead peer costs only itself: each peer's sending loop writes one frame at a time under a deadline;
  a peer that takes longer than that to accept one frame is stalled and dropped (its transport closed, which
  also unblocks a write stuck in the kernel), and publishing waits only on peers that are draining.
- One writer at a time per pubsub stream (`write_msg`): upstream's message-cache replay and pending flush
  write straight to a peer's stream while its sending loop writes to it too, and Yamux sends a write larger
  than the stream's window in pieces, so two writers interleaved their frames and the receiver could not
  parse them (an honest peer was cut off as MALFORMED_FRAME). A write that fails or is cancelled part-way
  resets the stream: nothing may follow half a frame.
- Inbound frames are read by our loop (`continuously_read_stream`), with the same handling as upstream's but a
  frame over `LIBP2P_FRAME_MAX` costs its sender MALFORMED_FRAME (upstream only reset the stream, so a peer
  could send oversized frames forever without a penalty), and the stream is read in chunks (`p2p.frames`):
  upstream's reads per frame left a loaded node's streams seconds behind their senders.
- Transaction batches wait for admission in bounded per-peer queues served by a few workers
  (`p2p.inbound`); consensus messages are admitted at once (docs/p2p.md, "Consensus first").
- Frames of up to `LIBP2P_FRAME_MAX` (2 MiB) go both ways: upstream makes each peer's outbound queue with its
  default `max_message_size` of 1 MiB, which drops a larger RPC at the sender (counted as any drop, nothing
  else), so a transaction with a 1 MiB input never left its node. `SizedQueues` sets each queue's size as it
  is made; the inbound size is the constructor's `max_inbound_rpc_size`.
- Each peer's outbound queue is bounded in bytes as well as RPCs (`ByteBudgetQueue`, `OUTBOUND_QUEUE_BYTES`):
  upstream's bound of 32 RPCs let a peer that stops reading hold 64 MiB at the frame cap until it was dropped
  as stalled. Past the budget a bulk RPC to that peer is dropped and counted; priority RPCs have a reserve of
  one frame more; publishing paces on the bytes a draining peer has room for.
- A copy of a message already delivered, still being validated, waiting for admission or whose admission
  task has not started yet is dropped where its frame is read (`Gate.is_copy`), before upstream spawns a task
  for it and checks its pubsub signature twice. From the read to the gate's in-validation mark a message is
  always held somewhere a later copy's read looks: the bulk queue, `_starting`, or the gate itself.
- The RPCs of one lane queued for a peer when its sending loop takes one leave with it as one frame
  (p2p/coalesce.py): each frame costs both sides a fixed amount of Python, whatever it holds.
- Consensus messages go to each peer on a second stream, the consensus lane, written by a loop of its own
  (`_open_lane`, `_send_lane`; p2p/lane.py), so none waits for the batch or proposal being written on the
  pubsub stream; a peer's lane to us is read by the same loop as its pubsub stream (`lane_stream_handler`).
- IDONTWANT (gossipsub v1.2) is `DontWantGossipSub` in p2p/dontwant.py; announcements waiting for a busy peer
  are merged in its queue (`ByteBudgetQueue`).
- The signed peer record a peer attaches to every RPC is checked once per peer and record bytes
  (`SenderRecords`): upstream verified its signature on each RPC, duplicates and control RPCs included, one
  Ed25519 check per frame (3-4 % of a loaded node's CPU).
- Work done once per message (docs/p2p.md, "Work done once per message"): the id is hashed where the frame is
  read and held while the message is admitted (`GuardedPubsub.message_id`: upstream and the gate asked for it
  six times more); the pubsub signature is checked once, by us (`_SIGNATURES_CHECKED` answers upstream's second
  check, and our own publishes are not verified); an RPC within the queue's size is queued without upstream's
  re-split (`CountingGossipSub.send_rpc`).
- No per-peer task of the library may end the service (and with it the process): every task the Pubsub or
  GossipSub manager starts for a peer is contained (logged, counted in `contained_errors`), and the two
  teardown paths (blacklist teardown, dead-peer cleanup) are idempotent. Upstream raised `KeyError` when a
  blacklisted peer's stream handler removed it first, which ended a validator's process.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import ValidationError
from libp2p.io.exceptions import IOException, MessageTooLarge
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamReset
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as upstream_pubsub
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import GossipsubEvent, Pubsub
from libp2p.pubsub.rpc_queue import OutBoundQueueSize, PriorityQueue, RpcQueue
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.pubsub.validators import signature_validator
from libp2p.utils.connection_shutdown import is_expected_connection_shutdown
from libp2p.utils.varint import encode_uvarint

from core.hashing import sha256
from core.types import Hash32
from p2p.coalesce import COALESCE_BYTES, is_mergeable
from p2p.counters import P2PCounters
from p2p.dontwant import MERGED_DONT_WANT_IDS, DontWantGossipSub, announced_ids
from p2p.frames import READ_CHUNK_BYTES, FrameBuffer
from p2p.inbound import BulkQueues, InboundPolicy, MessageKey
from p2p.lane import LANE_OPEN_TIMEOUT_S, LANE_PROTOCOL, LaneViolation, is_lane_rpc, lane_violation
from p2p.limits import LIBP2P_FRAME_MAX, OUTBOUND_PRIORITY_RESERVE, OUTBOUND_QUEUE_BYTES
from p2p.scoring import Offense

logger = logging.getLogger(__name__)

_RESET_TIMEOUT_S = 2.0
# A peer's unchanged signed record is consumed again (its addresses' TTL refreshed) after this long.
SENDER_RECORD_REFRESH_S = 600.0
OUTBOUND_QUEUE_SIZE: int = OutBoundQueueSize  # RPCs per peer; a push beyond is dropped


def content_msg_id(msg: rpc_pb2.Message) -> Hash32:
    """Message id = SHA-256 of the message bytes (docs/design.md §5.2): identical bytes are one message."""
    return sha256(msg.data)


class Gate(Protocol):
    """What the guarded pubsub asks of the gossip service."""

    def is_copy(self, forwarder: ID, topic: str, msg_id: bytes, size: int, seen: bool) -> bool: ...

    async def admit(self, forwarder: ID, msg: rpc_pb2.Message) -> bool: ...

    def deliver(self, msg: rpc_pb2.Message) -> None: ...

    def offense(self, peer: ID, offense: Offense, detail: str) -> None: ...

    def stalled(self, peer: ID, detail: str) -> None: ...


class SenderRecords:
    """The signed peer record on each inbound RPC (`senderRecord`), verified and stored once per peer and record.

    Upstream's `maybe_consume_signed_record` verifies the envelope's signature on every RPC, although a peer
    sends the same record bytes on each until its addresses change. Bytes equal to the last record accepted
    from the same peer were verified then (signature, and the record's peer id against the sender), so they
    are taken as they are; different bytes, or the same after `refresh_s` (the peerstore's address TTL is
    two hours), go through upstream's check again. A record that fails the check is not remembered.
    """

    def __init__(self, host: IHost, *, refresh_s: float = SENDER_RECORD_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._host = host
        self._refresh_s = refresh_s
        self._clock = clock
        self._accepted: dict[ID, tuple[bytes, float]] = {}
        self.checks = 0  # records verified (upstream's check run)

    def consume(self, rpc: rpc_pb2.RPC, peer_id: ID) -> bool:
        """False when the RPC carries a record that does not verify or is not `peer_id`'s (ignore the RPC)."""
        if not rpc.HasField("senderRecord"):
            return True
        record = rpc.senderRecord
        now = self._clock()
        known = self._accepted.get(peer_id)
        if known is not None and known[0] == record and now - known[1] < self._refresh_s:
            return True
        self.checks += 1
        if not maybe_consume_signed_record(rpc, self._host, peer_id):
            return False
        self._accepted[peer_id] = (bytes(record), now)
        return True

    def forget(self, peer_id: ID) -> None:
        self._accepted.pop(peer_id, None)

    def __len__(self) -> int:
        return len(self._accepted)


class ByteBudgetQueue(PriorityQueue):
    """Upstream's two-lane queue of one peer's outbound RPCs, bounded in bytes as well as in RPCs.

    A bulk RPC is taken while the bytes held, with it, stay within `budget`; a priority RPC (a consensus topic's
    message, control) while they stay within `budget + reserve`. A refused push returns False, which upstream's
    `send_rpc` reports as a drop (`CountingGossipSub` counts it); `refused` counts the ones the bytes refused.
    Bytes are released as the sending loop pops RPCs. `peak_bytes` is the most this queue ever held.
    """

    def __init__(self, max_size: int, *, budget: int = OUTBOUND_QUEUE_BYTES,
                 reserve: int = OUTBOUND_PRIORITY_RESERVE, on_refused: Callable[[], None] | None = None,
                 is_lane_rpc: Callable[[rpc_pb2.RPC], bool] | None = None) -> None:
        super().__init__(max_size)
        self.budget = budget
        self.reserve = reserve
        self.held_bytes = 0
        self.peak_bytes = 0
        self.refused = 0
        self._on_refused = on_refused
        # sizes of the RPCs in upstream's two deques, in the same order
        self._bulk_sizes: deque[int] = deque()
        self._urgent_sizes: deque[int] = deque()
        self.last_popped = (0, False)  # (bytes, whether priority) of the RPC `pop` returned last
        # The consensus lane (p2p/lane.py): while the peer's lane stream is open, priority RPCs that
        # `is_lane_rpc` accepts wait here for the lane's own sending loop, not in upstream's priority deque.
        self._is_lane_rpc = is_lane_rpc
        self.lane_open = False
        self.lane_tried = False  # a lane stream was asked for once for this queue (its peer's registration)
        self._lane: deque[rpc_pb2.RPC] = deque()
        self._lane_sizes: deque[int] = deque()

    def __len__(self) -> int:
        return super().__len__() + len(self._lane)

    def room(self, priority: bool) -> int:
        """Bytes a push in that lane may still add."""
        return self.budget + (self.reserve if priority else 0) - self.held_bytes

    def push(self, rpc: rpc_pb2.RPC, priority: bool = False) -> bool:
        on_lane = priority and self.lane_open and self._is_lane_rpc is not None and self._is_lane_rpc(rpc)
        if priority and self._merge_announcement(rpc, on_lane):
            return True
        size = rpc.ByteSize()
        if len(self) < self.max_size and size > self.room(priority):
            self.refused += 1
            if self._on_refused is not None:
                self._on_refused()
            return False
        if on_lane:
            if len(self) >= self.max_size:
                return False
            self._lane.append(rpc)
            self._lane_sizes.append(size)
        elif super().push(rpc, priority):
            (self._urgent_sizes if priority else self._bulk_sizes).append(size)
        else:
            return False
        self.held_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return True

    def _merge_announcement(self, rpc: rpc_pb2.RPC, on_lane: bool) -> bool:
        """An IDONTWANT-only RPC joins the one still waiting at the end of its lane, up to
        `MERGED_DONT_WANT_IDS` ids: one frame for what piled up while the peer's sending loop was busy."""
        ids = announced_ids(rpc)
        queued, sizes = (self._lane, self._lane_sizes) if on_lane else (self._priority, self._urgent_sizes)
        if ids is None or not queued:
            return False
        last = queued[-1]
        waiting = announced_ids(last)
        if waiting is None or len(waiting) + len(ids) > MERGED_DONT_WANT_IDS:
            return False
        before = last.ByteSize()
        last.control.idontwant[0].messageIDs.extend(ids)
        grown = last.ByteSize() - before
        sizes[-1] += grown
        self.held_bytes += grown
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return True

    def pop_lane(self) -> tuple[rpc_pb2.RPC, int] | None:
        """The oldest RPC waiting for the lane and its bytes; None if none waits."""
        if not self._lane:
            return None
        size = self._lane_sizes.popleft()
        self.held_bytes -= size
        return self._lane.popleft(), size

    def peek_lane(self) -> tuple[rpc_pb2.RPC, int] | None:
        return (self._lane[0], self._lane_sizes[0]) if self._lane else None

    def close_lane(self) -> int:
        """The lane stream is gone: what waits for it goes ahead of the priority deque, in its order, for the
        main stream's loop; later pushes go there too. Returns how many RPCs moved."""
        self.lane_open = False
        moved = len(self._lane)
        self._priority.extendleft(reversed(self._lane))
        self._urgent_sizes.extendleft(reversed(self._lane_sizes))
        self._lane.clear()
        self._lane_sizes.clear()
        return moved

    def pop(self) -> rpc_pb2.RPC | None:
        priority = bool(self._priority)
        sizes = self._urgent_sizes if priority else self._bulk_sizes
        rpc = super().pop()
        if rpc is not None:
            size = sizes.popleft()
            self.held_bytes -= size
            self.last_popped = (size, priority)
        return rpc

    def peek(self) -> tuple[rpc_pb2.RPC, int, bool] | None:
        """The RPC `pop` would return next, its bytes and whether it is in the priority lane; None if empty."""
        if self._priority:
            return self._priority[0], self._urgent_sizes[0], True
        if self._non_priority:
            return self._non_priority[0], self._bulk_sizes[0], False
        return None


def byte_budget(queue: RpcQueue) -> ByteBudgetQueue | None:
    """The byte-bounded lanes of a queue made by `SizedQueues` (None for one made elsewhere)."""
    lanes = queue._queue  # upstream's RpcQueue exposes no way to choose its inner queue
    return lanes if isinstance(lanes, ByteBudgetQueue) else None


class SizedQueues(dict[ID, RpcQueue]):
    """`Pubsub.peer_queues` whose queues take RPCs of up to `max_message_size` bytes and hold at most
    `budget` bytes of bulk (`ByteBudgetQueue`).

    Upstream builds each peer's `RpcQueue()` inline in `_handle_new_peer` with the 1 MiB default and uses it at
    once (pending flush, message-cache replay), so the size and the byte-bounded lanes are set where the queue
    is stored, before any use (the queue is still empty there).
    """

    def __init__(self, max_message_size: int, *, budget: int = OUTBOUND_QUEUE_BYTES,
                 reserve: int = OUTBOUND_PRIORITY_RESERVE, on_refused: Callable[[], None] | None = None,
                 is_lane_rpc: Callable[[rpc_pb2.RPC], bool] | None = None) -> None:
        super().__init__()
        self.max_message_size = max_message_size
        self.budget = budget
        self.reserve = reserve
        self._on_refused = on_refused
        self._is_lane_rpc = is_lane_rpc

    def __setitem__(self, peer_id: ID, queue: RpcQueue) -> None:
        queue.max_message_size = self.max_message_size
        if byte_budget(queue) is None:
            if len(queue):
                raise ValueError("a peer queue must be stored before anything is pushed to it")
            queue._queue = ByteBudgetQueue(  # see byte_budget
                queue._queue.max_size, budget=self.budget, reserve=self.reserve,
                on_refused=self._on_refused, is_lane_rpc=self._is_lane_rpc)
        super().__setitem__(peer_id, queue)


class OutboundTimes:
    """When consensus messages were queued for each peer, so that the sending loop can log the slow ones: how
    long one waited in the queue and how long its write took (bounded: the oldest entries are forgotten).

    Kept per message (origin and sequence number), not per RPC: a frame may hold several merged RPCs
    (p2p/coalesce.py). The sending loop reports only priority-lane frames, so a transaction batch costs
    nothing here."""

    LOG_AFTER_S = 0.5
    _LIMIT = 4096

    def __init__(self) -> None:
        # (peer, a publish's origin + seqno) -> when queued; upstream queues a copy of the RPC, not it
        self._queued: OrderedDict[tuple[ID, bytes], float] = OrderedDict()

    def queued(self, peer_id: ID, rpc: rpc_pb2.RPC) -> None:
        now = trio.current_time()
        for m in rpc.publish:
            self._queued[(peer_id, m.from_id + m.seqno)] = now
        while len(self._queued) > self._LIMIT:
            self._queued.popitem(last=False)

    def written(self, peer_id: ID, rpc: rpc_pb2.RPC, started: float) -> None:
        """The frame `rpc` (a priority-lane frame, perhaps merged) was written; log it if the message in it
        queued first waited `LOG_AFTER_S` or more."""
        oldest: float | None = None
        for m in rpc.publish:
            queued = self._queued.pop((peer_id, m.from_id + m.seqno), None)
            if queued is not None and (oldest is None or queued < oldest):
                oldest = queued
        if oldest is None:
            return
        now = trio.current_time()
        if now - oldest >= self.LOG_AFTER_S:
            topics = ",".join(t.rsplit("/", 2)[-2] for m in rpc.publish for t in m.topicIDs)
            logger.info("%s message of %d bytes to %s written %.2f s after it was queued (queue %.2f s, write "
                        "%.2f s)", topics, rpc.ByteSize(), str(peer_id)[-6:], now - oldest, started - oldest,
                        now - started)


class CountingGossipSub(DontWantGossipSub):
    """GossipSub that counts the outbound RPCs it drops on a full per-peer queue and sends the messages of
    `priority_topics` ahead of other queued RPCs (IDONTWANT: `DontWantGossipSub`, p2p/dontwant.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbound_times = OutboundTimes()


    def send_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, priority: bool = False) -> None:
        """Upstream's `send_rpc` (a copy of the RPC per peer, control retries piggybacked, split to the queue's
        size, pushed), except that an RPC within the size is pushed as it is: upstream's `split_rpc` rebuilt
        every RPC, copying each message and measuring each one again, ~10 µs per RPC and peer for a 5 KB batch
        (docs/p2p.md, "Work done once per message")."""
        if not priority and self._priority_topics:
            priority = any(t in self._priority_topics for m in rpc.publish for t in m.topicIDs)
            if priority:
                # for the logs: when each consensus message was queued for each peer (OutboundTimes)
                self.outbound_times.queued(peer_id, rpc)
        queue = self.pubsub.peer_queues.get(peer_id) if self.pubsub is not None else None
        if queue is None:
            super().send_rpc(peer_id, rpc, priority)  # upstream's handling of no pubsub or no queue
            return
        outbound = rpc_pb2.RPC()
        outbound.CopyFrom(rpc)
        self._piggyback_control_retry(peer_id, outbound)
        parts = [outbound] if outbound.ByteSize() <= queue.max_message_size else queue.split_rpc(outbound)
        for part in parts:
            if part is not outbound and part.ByteSize() > queue.max_message_size:
                self._handle_dropped_rpc(peer_id, part, "oversized")
                continue
            if not queue.push(part, priority=priority):
                self._handle_dropped_rpc(peer_id, part, "queue_full")

    async def run(self) -> None:
        contain_peer_tasks(self.manager, "gossipsub", self._counters)
        await super().run()

    def _handle_dropped_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, reason: str) -> None:
        self._counters.outbound_dropped += 1
        super()._handle_dropped_rpc(peer_id, rpc, reason)


class GuardedPubsub(Pubsub):
    def __init__(self, host: IHost, router: GossipSub, gate: Gate, counters: P2PCounters, *,
                 write_timeout_s: float = 10.0, stall_s: float = 1.0, coalesce_bytes: int = COALESCE_BYTES,
                 coalesce_bulk: bool = True, consensus_lane: bool = True,
                 bulk_topics: frozenset[str] = frozenset(), inbound: InboundPolicy | None = None, **kwargs: Any):
        """`bulk_topics`: topics whose inbound messages wait in `p2p.inbound.BulkQueues` for one of
        `inbound.bulk_workers` workers; every other topic's messages are admitted at once. `consensus_lane`:
        open a second stream to each peer for the messages of the other topics (p2p/lane.py); a peer's lane is
        read whatever this says."""
        # message ids of the messages being admitted, by message object (`message_id`)
        self._ids: dict[int, tuple[rpc_pb2.Message, Hash32]] = {}
        super().__init__(host, router, msg_id_constructor=self.message_id, max_inbound_rpc_size=LIBP2P_FRAME_MAX,
                         **kwargs)
        self._bulk_topics = bulk_topics
        self._inbound = inbound or InboundPolicy()
        self.bulk = BulkQueues[tuple[rpc_pb2.Message, Hash32]](self._inbound)  # (message, its id)
        # consensus messages whose admission task was started but has not run yet (`_admit_now`)
        self._starting: set[MessageKey] = set()
        # outbound frames as large as inbound ones, each peer's queue bounded in bytes
        self.peer_queues = SizedQueues(LIBP2P_FRAME_MAX, on_refused=self._budget_refused,
                                       is_lane_rpc=lambda rpc: is_lane_rpc(rpc, bulk_topics))
        self._consensus_lane = consensus_lane
        self._lanes_in: dict[ID, INetStream] = {}  # each peer's lane stream to us: one at a time
        host.set_stream_handler(LANE_PROTOCOL, self.lane_stream_handler)
        self._gate = gate
        self._counters = counters
        self._write_timeout_s = write_timeout_s
        self._stall_s = stall_s
        # RPCs queued for a peer leave as one frame up to this many bytes; 0 writes each alone (p2p/coalesce.py)
        self._coalesce_bytes = coalesce_bytes
        self._coalesce_bulk = coalesce_bulk  # bulk RPCs merge too (never with priority ones)
        # peer -> when the RPC being written to it started; absent while its sending loop waits for work
        self._writing_since: dict[ID, float] = {}
        # Upstream seeds with int(time.time()); with seqno-keyed equivocation checks a node restarted within
        # the same seconds range reuses numbers and loses its new messages (pitfall 5).
        self.counter = time.time_ns()
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = weakref.WeakKeyDictionary()
        self.sender_records = SenderRecords(host)

    async def run(self) -> None:
        contain_peer_tasks(self.manager, "pubsub", self._counters)
        for _ in range(self._inbound.bulk_workers):
            self.manager.run_daemon_task(self._admit_bulk)
        await super().run()

    async def _admit_bulk(self) -> None:
        """One worker of the bulk topics: admits (and relays) their messages one at a time, oldest of each
        forwarder first, forwarders in turn (`BulkQueues`)."""
        while self.manager.is_running:
            peer_id, (msg, msg_id) = await self.bulk.take()
            try:
                await self._push_with_id(peer_id, msg, msg_id)
            except Exception:
                self._contained(f"admitting a bulk message from {peer_id}")

    async def _admit_now(self, peer_id: ID, msg: rpc_pb2.Message, key: MessageKey, msg_id: Hash32) -> None:
        """The task of a consensus message read from a peer. Until it starts, the message is neither queued
        nor in validation, so `_starting` makes a copy read in the meantime a copy; from here to the gate's
        `admit` marking it as in validation nothing awaits, so no copy slips between the two."""
        self._starting.discard(key)
        await self._push_with_id(peer_id, msg, msg_id)

    def message_id(self, msg: rpc_pb2.Message) -> Hash32:
        """The message's id (`content_msg_id`), hashed once per message: upstream asks for it four times while
        admitting one (seen check twice, mark seen, the router's publish) and the gate twice more (admit,
        deliver); while `_push_with_id` admits a message its id, computed where its frame was read, is held
        here by message object (the entry holds the object, so its `id` is not reused meanwhile)."""
        held = self._ids.get(id(msg))
        if held is not None and held[0] is msg:
            return held[1]
        return content_msg_id(msg)

    async def _push_with_id(self, peer_id: ID, msg: rpc_pb2.Message, msg_id: Hash32) -> None:
        """`push_msg` with the message's id, already computed, held for `message_id` until it returns."""
        token = id(msg)
        if token in self._ids:  # the same object admitted twice at once: the first keeps the entry
            await self.push_msg(peer_id, msg)
            return
        self._ids[token] = (msg, msg_id)
        try:
            await self.push_msg(peer_id, msg)
        finally:
            self._ids.pop(token, None)

    async def stream_handler(self, stream: INetStream) -> None:
        # Runs in the swarm's connection nursery: anything escaping here ends the host, so nothing may.
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            # Library code parsing a remote peer's bytes: whatever it raises (protobuf DecodeError on a garbage
            # frame, pitfall 2) is the peer's fault and must stay inside this stream.
            self._counters.malformed_frames += 1
            try:
                self._gate.offense(peer_id, Offense.MALFORMED_FRAME, f"{type(exc).__name__}: {exc}")
            except Exception:
                self._contained("penalizing a peer for a malformed frame")
            await _reset_quietly(stream)
            self._handle_dead_peer(peer_id)

    async def lane_stream_handler(self, stream: INetStream) -> None:
        """A peer's consensus lane to us (p2p/lane.py), read as its pubsub stream is: one lane per peer (a new
        one replaces the old), and a frame that does not parse or holds what the lane may not carry costs the
        peer MALFORMED_FRAME and the lane (its pubsub stream stays)."""
        peer_id = stream.muxed_conn.peer_id
        if self.is_peer_blacklisted(peer_id):
            await _reset_quietly(stream)
            return
        old = self._lanes_in.get(peer_id)
        self._lanes_in[peer_id] = stream
        try:
            if old is not None:
                await _reset_quietly(old)
            await self.continuously_read_stream(stream, lane=True)
        except Exception as exc:  # library code parsing a peer's bytes, or LaneViolation: the peer's fault
            self._counters.malformed_frames += 1
            try:
                self._gate.offense(peer_id, Offense.MALFORMED_FRAME, f"lane: {type(exc).__name__}: {exc}")
            except Exception:
                self._contained("penalizing a peer for a malformed lane frame")
            await _reset_quietly(stream)
        finally:
            if self._lanes_in.get(peer_id) is stream:
                del self._lanes_in[peer_id]

    async def continuously_read_stream(self, stream: INetStream, *, lane: bool = False) -> None:
        """Upstream's read loop, reading in chunks (`p2p.frames`), with the frame limit enforced as an offense.

        Each read takes whatever the stream holds (up to `READ_CHUNK_BYTES`) and every whole frame in it is
        handled before the next read: the scheduler is visited per read, not several times per frame. A frame
        that does not parse raises out of here into `stream_handler`, which penalizes MALFORMED_FRAME (or
        `lane_stream_handler`, for a peer's consensus lane: `lane`).
        """
        peer_id = stream.muxed_conn.peer_id
        frames = FrameBuffer(self.max_inbound_rpc_size)
        while self.manager.is_running:
            try:
                chunk = await stream.read(READ_CHUNK_BYTES)
            except IOException as exc:  # EOF, reset, closed connection: the peer left, nothing to blame
                if not isinstance(exc, StreamEOF):
                    logger.debug("pubsub stream of %s ended: %s", peer_id, exc)
                return
            if not chunk:
                return
            frames.feed(chunk)
            try:
                complete = frames.take()
            except MessageTooLarge as exc:
                self._counters.oversized_frames += 1
                self._gate.offense(peer_id, Offense.MALFORMED_FRAME, f"pubsub frame over the limit: {exc}")
                await _reset_quietly(stream)
                if not lane:
                    self._handle_dead_peer(peer_id)
                return
            for incoming in complete:
                if not self.manager.is_running:
                    return
                await self._handle_frame(peer_id, stream, incoming, lane=lane)

    async def _handle_frame(self, peer_id: ID, stream: INetStream, incoming: bytes, *, lane: bool = False) -> None:
        """What upstream's loop does with one frame: signed peer record, publishes (consensus topics each in
        a task of its own, bulk ones queued), subscriptions (capped per RPC), control to the router. A frame
        read from a lane (`lane`) must keep the lane's rule (p2p/lane.py), or raises `LaneViolation`."""
        rpc = rpc_pb2.RPC()
        rpc.ParseFromString(incoming)
        self._counters.rpcs_received += 1
        self._counters.rpc_bytes_received += len(incoming)
        self._counters.messages_received += len(rpc.publish)
        if lane:
            self._counters.lane_rpcs_received += 1
            why = lane_violation(rpc, self._bulk_topics)
            if why is not None:
                raise LaneViolation(f"the consensus lane carried {why}")
        if not self.sender_records.consume(rpc, peer_id):
            logger.debug("peer %s sent an invalid signed peer record; RPC ignored", peer_id)
            return
        for msg in rpc.publish:
            if self._is_subscribed_to_msg(msg) and self.manager.is_running:
                data = msg.data
                msg_id = sha256(data)
                topic = msg.topicIDs[0] if len(msg.topicIDs) == 1 else ""
                key = (topic, msg_id)
                seen = self.seen_messages.has(msg_id) or self.bulk.holds(key) or key in self._starting
                size = len(data)
                if self._gate.is_copy(peer_id, topic, msg_id, size, seen):
                    if topic in self._bulk_topics and isinstance(self.router, DontWantGossipSub):
                        self.router.note_holder(peer_id, topic, msg_id)  # our relay of it skips this peer
                    continue  # a copy costs its parse and one hash, not a task and signature checks
                if topic not in self._bulk_topics or not self._inbound.lanes:
                    # consensus (or the bulk lanes off): admitted at once
                    self._starting.add(key)
                    self.manager.run_task(self._admit_now, peer_id, msg, key, msg_id)
                elif not self.bulk.offer(peer_id, key, (msg, msg_id), size):
                    self._counters.inbound_bulk_dropped += 1  # this forwarder's queue is full
        if rpc.subscriptions:
            if len(rpc.subscriptions) > self.max_subscriptions_per_rpc:
                logger.debug("peer %s sent %d subscriptions in one RPC; ignored", peer_id, len(rpc.subscriptions))
            else:
                for sub in rpc.subscriptions:
                    self.handle_subscription(peer_id, sub)
        if rpc.HasField("control"):
            rpc.ClearField("senderRecord")  # checked above; the router would verify it a second time
            await self.router.handle_rpc(rpc, peer_id)
        if stream.metric_send_channel is not None:
            event = GossipsubEvent()
            event.peer_id = peer_id.pretty()
            event.message_size = len(incoming)
            event.publish = bool(rpc.publish)
            event.subopts = bool(rpc.subscriptions)
            event.control = rpc.HasField("control")
            await stream.metric_send_channel.send(event)

    def _handle_dead_peer(self, peer_id: ID) -> None:
        """Upstream's cleanup, which several paths (stream handler, sender, notifee, teardown) may all run for
        one peer: the first does the work, the others find nothing; an error in it is contained."""
        self.sender_records.forget(peer_id)
        self.bulk.forget(peer_id)
        try:
            super()._handle_dead_peer(peer_id)
        except Exception:
            self._contained(f"dead-peer cleanup of {peer_id}")

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        """Blacklist teardown (replaces upstream's, whose `del self.peers[peer]` raised KeyError when the peer's
        stream handler had removed it during the awaited reset): reset the stream, then the one idempotent
        cleanup, which also closes the peer's outbound queue and tells the router."""
        stream = self.peers.get(peer_id)
        if stream is not None:
            await _reset_quietly(stream)
        self._handle_dead_peer(peer_id)
        self._forget_all_subscriptions(peer_id)

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC, *, lane: bool = False) -> bool:
        """Write one length-prefixed RPC, alone on the stream until it is complete (see module docstring).

        Upstream's, with the frame built by one concatenation: upstream copied the serialized RPC into a
        bytearray and that into bytes again, two more copies of up to a frame. False when the stream was
        closed or reset (the peer then goes through the dead-peer cleanup, as upstream; for a consensus lane,
        `lane`, its loop falls back to the pubsub stream instead)."""
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            whole = False
            try:
                body = rpc_msg.SerializeToString()
                try:
                    await stream.write(encode_uvarint(len(body)) + body)
                except (StreamClosed, StreamReset):
                    logger.debug("writing to %s failed: stream closed or reset", stream.muxed_conn.peer_id)
                    if not lane:
                        self._handle_dead_peer(stream.muxed_conn.peer_id)
                    return False
                whole = True
                return True
            finally:
                if not whole:
                    # Failed, cancelled or reset in the middle of a frame: the peer must not parse what follows.
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + _RESET_TIMEOUT_S):
                        await _reset_quietly(stream)

    def _contained(self, what: str) -> None:
        self._counters.contained_errors += 1
        logger.exception("BUG (contained): %s failed", what)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Upstream's, with the pubsub signature checked once: here for a peer's message (a bad one costs the
        forwarder), not at all for our own (we signed it); upstream's second check finds it in
        `_SIGNATURES_CHECKED` (docs/p2p.md, "Work done once per message")."""
        token = id(msg)
        if token not in self._ids:  # our own publish, or a caller other than the read loop
            await self._push_with_id(msg_forwarder, msg, content_msg_id(msg))
            return
        if msg_forwarder == self.my_id:
            with _signature_checked(msg):
                await super().push_msg(msg_forwarder, msg)
            return
        if self.is_peer_blacklisted(msg_forwarder):
            return  # upstream drops these too, but only after our signature check would have run
        try:
            if self.strict_signing and not self._is_msg_seen(msg):
                if not signature_validator(msg):
                    self._gate.offense(msg_forwarder, Offense.BAD_SIGNATURE, "pubsub signature does not verify")
                    return
                with _signature_checked(msg):
                    await super().push_msg(msg_forwarder, msg)
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

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: RpcQueue) -> None:
        """A peer's sending loop (replaces upstream's): one frame at a time, each under a deadline; a frame is
        the RPC popped and, merged into it, the RPCs of its lane queued behind it (`_coalesce_queued`).

        Upstream waits as long as the peer takes: a paused peer (SIGSTOP, cut cable) never acknowledges,
        Yamux windows grow to 16 MiB under load, so the write blocks in the kernel forever, its queue stays
        full, and everything that waits on queues waits on it. Here a peer that does not take one RPC within
        `write_timeout_s` is declared stalled and dropped; it costs nobody else more than that.
        """
        budget = byte_budget(queue)
        lanes = budget if self._coalesce_bytes > 0 else None
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return
                if self._is_unwanted(peer_id, rpc):
                    continue  # the peer got this message from someone else while it waited here
                taken = 1
                if lanes is not None and is_mergeable(rpc):
                    taken += self._coalesce_queued(peer_id, lanes, rpc)
                self._counters.rpcs_sent += taken
                self._counters.frames_sent += 1
                started = self._writing_since[peer_id] = trio.current_time()
                try:
                    with trio.move_on_after(self._write_timeout_s) as deadline:
                        ok = await self.write_msg(stream, rpc)
                finally:
                    self._writing_since.pop(peer_id, None)
                priority = budget.last_popped[1] if budget is not None else True
                if priority and isinstance(self.router, CountingGossipSub):
                    self.router.outbound_times.written(peer_id, rpc, started)
                if deadline.cancelled_caught:
                    self._stalled(peer_id, f"one RPC not accepted within {self._write_timeout_s:g} s")
                    return
                if not ok:
                    if trio.current_time() - started >= self._stall_s:
                        # Yamux gives up on a stream whose window stayed shut for 5 s: the peer read nothing.
                        self._stalled(peer_id, "stream reset after its window stayed shut")
                    return
        except IOException as exc:  # the connection went away under the write: the peer left
            logger.debug("sending to %s ended: %s: %s", peer_id, type(exc).__name__, exc)
            self._handle_dead_peer(peer_id)
        except Exception:
            self._contained(f"sending loop of {peer_id}")
            self._handle_dead_peer(peer_id)

    def _is_unwanted(self, peer_id: ID, rpc: rpc_pb2.RPC) -> bool:
        return isinstance(self.router, DontWantGossipSub) and self.router.is_unwanted(peer_id, rpc)

    async def _open_lane(self, peer_id: ID, queue: RpcQueue) -> None:
        """Open the consensus lane to a peer just registered (p2p/lane.py) and run its sending loop until the
        lane or the peer goes. A peer that does not take the lane protocol keeps one stream for everything, as
        does any peer until its lane is open; when the lane goes, what waits for it moves to the pubsub stream."""
        lanes = byte_budget(queue)
        if lanes is None:
            return
        stream: INetStream | None = None
        with trio.move_on_after(LANE_OPEN_TIMEOUT_S):
            try:
                stream = await self.host.new_stream(peer_id, [LANE_PROTOCOL])
            except Exception as exc:  # a peer without the lane (negotiation refused) or a link gone: no lane
                logger.debug("no consensus lane to %s: %s: %s", peer_id, type(exc).__name__, exc)
        if stream is None:
            return
        try:
            if queue.closed or self.peer_queues.get(peer_id) is not queue:
                return  # the peer left (or was registered again) while the lane was being opened
            lanes.lane_open = True
            self._counters.lanes_opened += 1
            await self._send_lane(peer_id, stream, queue, lanes)
        finally:
            if lanes.close_lane():
                _wake(queue)  # the pubsub stream's loop may be waiting with these now in its deque
            with trio.CancelScope(shield=True, deadline=trio.current_time() + _RESET_TIMEOUT_S):
                await _reset_quietly(stream)

    async def _send_lane(self, peer_id: ID, stream: INetStream, queue: RpcQueue, lanes: ByteBudgetQueue) -> None:
        """A peer's consensus lane sending loop: as `handle_sending_messages`, for the RPCs waiting for the lane
        (merged while queued together); beside the pubsub stream's loop, so no consensus message waits for the
        batch or proposal being written there. Returns when the peer's queue closes or the lane fails."""
        try:
            while True:
                popped = await _pop_lane(queue, lanes)
                if popped is None:
                    return
                rpc, size = popped
                if self._is_unwanted(peer_id, rpc):
                    continue
                taken = 1 + self._coalesce_queued(peer_id, lanes, rpc, lane_size=size)
                self._counters.rpcs_sent += taken
                self._counters.frames_sent += 1
                self._counters.lane_frames_sent += 1
                started = trio.current_time()
                with trio.move_on_after(self._write_timeout_s) as deadline:
                    ok = await self.write_msg(stream, rpc, lane=True)
                if isinstance(self.router, CountingGossipSub):
                    self.router.outbound_times.written(peer_id, rpc, started)
                if deadline.cancelled_caught:
                    self._stalled(peer_id, f"one lane RPC not accepted within {self._write_timeout_s:g} s")
                    return
                if not ok:
                    return  # the lane was reset: the rest goes on the pubsub stream
        except IOException as exc:
            logger.debug("consensus lane to %s ended: %s: %s", peer_id, type(exc).__name__, exc)
        except Exception:
            self._contained(f"consensus lane of {peer_id}")

    def _coalesce_queued(self, peer_id: ID, lanes: ByteBudgetQueue, merged: rpc_pb2.RPC, *,
                         lane_size: int | None = None) -> int:
        """Merge into `merged` (just popped) the RPCs of its own lane queued behind it, while they are
        mergeable and the frame stays within `coalesce_bytes` (p2p/coalesce.py); returns how many were merged.
        A priority frame never takes a bulk RPC, and a bulk one is popped only while no priority RPC waits.
        For the consensus lane's loop (`lane_size`: the bytes of the RPC it popped) the RPCs merged are those
        waiting for the lane.

        The popped RPCs are this peer's own (upstream's `send_rpc` queues a copy per peer), so merging into
        the first changes nothing another peer is sent."""
        if self._coalesce_bytes <= 0:
            return 0
        on_lane = lane_size is not None
        size, priority = (lane_size, True) if lane_size is not None else lanes.last_popped
        merged_count = 0
        if not (priority or self._coalesce_bulk):
            return 0
        while (head := _peek(lanes, on_lane)) is not None:
            rpc, rpc_size, rpc_priority = head
            if rpc_priority != priority or size + rpc_size > self._coalesce_bytes or not is_mergeable(rpc):
                break
            if on_lane:
                lanes.pop_lane()
            else:
                lanes.pop()
            if self._is_unwanted(peer_id, rpc):
                continue
            merged.MergeFrom(rpc)
            size += rpc_size
            merged_count += 1
        return merged_count

    async def _handle_new_peer(self, peer_id: ID) -> None:
        self.drop_stale_stream(peer_id)
        await super()._handle_new_peer(peer_id)
        queue = self.peer_queues.get(peer_id)
        lanes = byte_budget(queue) if queue is not None else None
        if self._consensus_lane and queue is not None and lanes is not None and not lanes.lane_tried:
            lanes.lane_tried = True  # once per registration: upstream calls this again for a peer it has
            self.manager.run_task(self._open_lane, peer_id, queue)

    def drop_stale_stream(self, peer_id: ID) -> bool:
        """Forget the peer's pubsub stream if the connection under it has closed.

        Upstream keys a peer's stream by peer id and drops it on a disconnect only when no other connection
        to the peer is open, and opens a new stream only for a peer it has none for. A peer that comes back
        (after a pause, a cut link, our stall drop) while its old connection is still being torn down keeps
        the dead stream for good: nothing is sent to it and its subscriptions are never heard again, so it
        never rejoins the mesh. Called on every connect and disconnect of the peer; returns whether it
        dropped one (the cleanup then opens a stream on a live connection).
        """
        stream = self.peers.get(peer_id)
        if stream is None or not getattr(stream.muxed_conn, "is_closed", False):
            return False
        logger.debug("pubsub stream of %s is on a closed connection; replacing it", peer_id)
        self._handle_dead_peer(peer_id)
        return True

    def _stalled(self, peer_id: ID, detail: str) -> None:
        self._counters.peers_stalled += 1
        self._handle_dead_peer(peer_id)
        self._gate.stalled(peer_id, detail)

    def _budget_refused(self) -> None:
        self._counters.outbound_budget_drops += 1

    def writing_since(self, peer_id: ID) -> float | None:
        """When the RPC being written to the peer now started (trio clock); None while none is."""
        return self._writing_since.get(peer_id)

    def queued_bytes(self, peer_id: ID) -> tuple[int, int]:
        """(bytes held now, most ever held) in the peer's outbound queue; (0, 0) without one."""
        queue = self.peer_queues.get(peer_id)
        lanes = byte_budget(queue) if queue is not None else None
        return (lanes.held_bytes, lanes.peak_bytes) if lanes is not None else (0, 0)

    def congested_peers(self, high_water: int, need_bytes: int = 0, priority: bool = False) -> list[ID]:
        """Peers whose outbound queue holds `high_water` RPCs or more, or has less than `need_bytes` of room in
        the `priority` lane's byte budget, and that are draining it: what publishing paces against (pitfall 4).
        A peer stuck on one write for `stall_s` is not waited for."""
        now = trio.current_time()
        out = []
        for peer, queue in list(self.peer_queues.items()):
            lanes = byte_budget(queue)
            if len(queue) < high_water and (lanes is None or lanes.room(priority) >= need_bytes):
                continue
            since = self._writing_since.get(peer)
            if since is not None and now - since >= self._stall_s:
                continue
            out.append(peer)
        return out


def contain_peer_tasks(manager: Any, service: str, counters: P2PCounters) -> None:
    """Wrap `manager.run_task` so that a non-daemon task that raises is logged and counted, not fatal.

    The library's service manager cancels the whole service (Pubsub or GossipSub) when any task it started
    raises, and our node cannot run without them. Those tasks are per peer or per message (push a message,
    send to a peer, tear a peer down, retry a stream, replay the message cache): whatever one of them meets,
    the right outcome is that this one peer or message is affected, never the process. Daemon tasks (the
    service's own loops) are left as they are: their failure is a bug that must stay visible.
    """
    run_task: Callable[..., None] = manager.run_task

    def contained_run_task(async_fn: Callable[..., Awaitable[Any]], *args: Any, daemon: bool = False,
                           name: str | None = None, **kwargs: Any) -> None:
        if daemon:
            run_task(async_fn, *args, daemon=True, name=name, **kwargs)
            return
        label = name or getattr(async_fn, "__qualname__", repr(async_fn))

        async def contained(*task_args: Any) -> None:
            try:
                await async_fn(*task_args)
            except Exception as exc:
                if is_expected_connection_shutdown(exc):  # a peer hanging up, as upstream's manager judges it
                    logger.debug("%s task %s ended with its connection: %s", service, label, exc)
                    return
                counters.contained_errors += 1
                logger.exception("BUG (contained): %s task %s failed", service, label)

        run_task(contained, *args, name=label, **kwargs)

    manager.run_task = contained_run_task


# Messages whose pubsub signature was checked (or made) by `GuardedPubsub.push_msg`, by object, while upstream's
# `push_msg` runs on them: upstream checks every message's signature again (one Ed25519 verification per
# message admitted, our own publishes included), which `_checked_or_verify` answers from here.
_SIGNATURES_CHECKED: dict[int, rpc_pb2.Message] = {}


@contextmanager
def _signature_checked(msg: rpc_pb2.Message) -> Iterator[None]:
    token = id(msg)
    if token in _SIGNATURES_CHECKED:  # the same object pushed twice at once: the first holds the entry
        yield
        return
    _SIGNATURES_CHECKED[token] = msg
    try:
        yield
    finally:
        _SIGNATURES_CHECKED.pop(token, None)


def _checked_or_verify(msg: rpc_pb2.Message) -> bool:
    """Upstream's `signature_validator` as `libp2p.pubsub.pubsub` calls it: True for a message checked above."""
    if _SIGNATURES_CHECKED.get(id(msg)) is msg:
        return True
    return signature_validator(msg)


# A process-wide rebind of the name upstream's Pubsub.push_msg calls (as p2p/yamux.py does for Yamux): messages
# not in `_SIGNATURES_CHECKED` (any other Pubsub in the process) are verified as before.
upstream_pubsub.signature_validator = _checked_or_verify  # type: ignore[attr-defined]


def _peek(lanes: ByteBudgetQueue, on_lane: bool) -> tuple[rpc_pb2.RPC, int, bool] | None:
    if not on_lane:
        return lanes.peek()
    head = lanes.peek_lane()
    return None if head is None else (head[0], head[1], True)


async def _pop_lane(queue: RpcQueue, lanes: ByteBudgetQueue) -> tuple[rpc_pb2.RPC, int] | None:
    """The next RPC for the consensus lane (waiting for one); None once the queue is closed. `RpcQueue.pop`'s
    wait, on the same event: every push wakes both of the peer's sending loops, each takes from its deques."""
    while True:
        popped = lanes.pop_lane()
        if popped is not None:
            return popped
        if queue.closed:
            return None
        await queue._notify.wait()  # upstream's RpcQueue offers no wait of its own for a second consumer


def _wake(queue: RpcQueue) -> None:
    """Wake whatever waits on the queue (as a push does), after RPCs were moved between its deques."""
    queue._notify.set()
    queue._notify = trio.Event()


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception:  # the stream may already be gone; nothing to contain beyond that
        logger.debug("reset of a failed pubsub stream failed", exc_info=True)
    await trio.lowlevel.checkpoint()
