"""Gossip service: the four chain topics over GossipSub, their pipelines, publishing, delivery.

Publishing waits, bounded, for room in the queues of peers that are draining theirs, so that a burst is not
dropped by upstream's 32-RPC queues; consensus messages (proposals, votes, evidence) keep room reserved and
are sent ahead of queued transaction batches. No publish ever waits for a stalled peer (see pubsub.py).

Delivered messages go through one bounded buffer per topic to the node's handler, drained by one task per
topic; a full buffer drops and counts (the node is too slow), never blocks the network.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service

from core.errors import LocalError, PeerMisbehaved, RemoteError
from core.hashing import sha256
from core.types import Hash32
from p2p.config import P2PConfig
from p2p.counters import P2PCounters
from p2p.envelope import EnvelopeCheck, core_envelopes
from p2p.errors import Oversized
from p2p.limits import ENVELOPE_SLACK
from p2p.pubsub import OUTBOUND_QUEUE_SIZE, CountingGossipSub, GuardedPubsub
from p2p.ratelimit import PeerRateLimiter
from p2p.scoring import Offense
from p2p.topics import TopicKind, topic_cap, topic_name
from p2p.validation import Arrival, GossipMessage, GossipVerdict, StateHook, TopicPipeline

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (a libp2p dependency) export it only here

logger = logging.getLogger(__name__)

Handler = Callable[[GossipMessage], Awaitable[None]]
OffenseSink = Callable[[ID, Offense, str], None]
StallSink = Callable[[ID, str], None]

_REJECT_CACHE = 4096
_PENDING_DELIVERY = 4096
_DELIVERED_MEMORY = 16384  # upstream's seen-cache keeps ids 120 s; this only closes its validation race
_PACING_POLL_S = 0.002
# The event-loop watch: how often it wakes, and the lateness (worst in a second) worth a log line.
_LOOP_PROBE_S = 0.1
LOOP_LATE_LOG_S = 0.3


class Gossip:
    """Owns the Pubsub/GossipSub pair of one host run (a stopped Pubsub cannot restart: pitfall 7)."""

    def __init__(self, host: IHost, config: P2PConfig, counters: P2PCounters, on_offense: OffenseSink,
                 on_stalled: StallSink | None = None):
        self._host = host
        self._config = config
        self._counters = counters
        self._on_offense = on_offense
        self._on_stalled = on_stalled
        self._topics = {kind: topic_name(config.chain_id, kind) for kind in TopicKind}
        self._kinds = {name: kind for kind, name in self._topics.items()}
        envelopes = core_envelopes(config.chain_id)
        self._pipelines = {
            kind: TopicPipeline(kind, topic_cap(config.limits, kind), envelopes[kind]) for kind in TopicKind
        }
        self._handlers: dict[TopicKind, Handler] = {}
        # Told the origin of every message accepted from another forwarder (the peer manager's sign of life).
        self.on_origin: Callable[[ID], None] | None = None
        self._limiter = PeerRateLimiter(
            config.rates.gossip_msgs_per_s, config.rates.gossip_burst, config.rates.gossip_bytes_per_s,
            max_peers=config.rates.max_tracked_peers,
        )
        # Keyed by (topic, message id): the id is a hash of the bytes alone, and the same bytes sent on another
        # topic (where they fail) must not make the honest copy look rejected or in validation.
        self._rejected: OrderedDict[tuple[str, bytes], Offense] = OrderedDict()
        self._accepted: OrderedDict[tuple[str, bytes], GossipMessage] = OrderedDict()
        self._validating: set[tuple[str, bytes]] = set()
        self._delivered: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        # when each first copy was read, until its admission begins (for the logs: `Arrival`)
        self._arrivals: OrderedDict[tuple[str, bytes], Arrival] = OrderedDict()
        self._admitting: dict[TopicKind, int] = dict.fromkeys(TopicKind, 0)  # messages in admission now
        self._buffers: dict[TopicKind, tuple[trio.MemorySendChannel[GossipMessage],
                                             trio.MemoryReceiveChannel[GossipMessage]]] = {}
        self.pubsub: GuardedPubsub | None = None
        self.router: CountingGossipSub | None = None

    # ------------------------------------------------------------------ node-facing configuration

    def set_envelope(self, kind: TopicKind, envelope: EnvelopeCheck) -> None:
        """Replace the stateless check of a topic (the default is core's type for that topic)."""
        self._pipelines[kind].envelope = envelope

    def set_hook(self, kind: TopicKind, hook: StateHook | None) -> None:
        """The node's check with chain state, run after the envelope check, before relay."""
        self._pipelines[kind].hook = hook

    def set_handler(self, kind: TopicKind, handler: Handler) -> None:
        """Where accepted messages of a topic go; called one at a time per topic."""
        self._handlers[kind] = handler

    def topic(self, kind: TopicKind) -> str:
        return self._topics[kind]

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self._config
        self.router = CountingGossipSub(
            # v1.2 for IDONTWANT (p2p/dontwant.py); peers speaking only v1.1 or v1.0 still interoperate
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=cfg.mesh_degree,
            degree_low=cfg.mesh_degree_low,
            degree_high=cfg.mesh_degree_high,
            heartbeat_interval=cfg.heartbeat_s,  # upstream default 120 s (pitfall 3)
            spam_protection_enabled=False,  # 10 msg/s per peer per topic, also caps our own publishes
            # Adaptive gossip stretches the heartbeat to >= 30 s whenever its health score dips, and
            # eclipse protection counts IPs, meaningless on one host: both off.
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
            counters=self._counters,
            priority_topics=frozenset(self._topics[k] for k in TopicKind if k is not TopicKind.TXS),
            dont_want=cfg.dont_want,
        )
        self.pubsub = GuardedPubsub(self._host, self.router, self, self._counters,
                                    write_timeout_s=cfg.peer_write_timeout_s, stall_s=cfg.peer_stall_s,
                                    coalesce_bytes=cfg.coalesce_bytes, coalesce_bulk=cfg.coalesce_bulk,
                                    consensus_lane=cfg.consensus_lane,
                                    bulk_topics=frozenset({self._topics[TopicKind.TXS]}), inbound=cfg.inbound)
        for kind in TopicKind:
            self._buffers[kind] = trio.open_memory_channel[GossipMessage](cfg.delivery_buffer)
        async with background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            for kind in TopicKind:
                await self.pubsub.subscribe(self._topics[kind])
            async with trio.open_nursery() as nursery:
                for kind in TopicKind:
                    nursery.start_soon(self._drain, kind)
                nursery.start_soon(self._watch_loop)
                task_status.started()
                await trio.sleep_forever()

    async def _drain(self, kind: TopicKind) -> None:
        _, receive = self._buffers[kind]
        async for message in receive:
            handler = self._handlers.get(kind)
            if handler is None:
                continue
            self._counters.delivered[kind.value] += 1
            if message.arrival is not None:
                message.arrival.handled = trio.current_time()
            try:
                await handler(message)
            except PeerMisbehaved as exc:
                self.offense(message.forwarder, Offense.INVALID, f"node handler: {exc}")
            except RemoteError as exc:
                logger.info("node handler refused a %s message: %s", kind.value, exc)
            except LocalError as exc:  # our own fault: never blamed on the peer
                logger.warning("node handler could not handle a %s message (a fault of this node): %s",
                               kind.value, exc)
            except Exception:
                # A bug of ours, met while handling one message: as CometBFT's reactors recover from a panic
                # in Receive, drop that message loudly (traceback, counter on /metrics) and keep the topic
                # alive; ending the drain task would stop the whole node for one message.
                self._counters.handler_errors[kind.value] += 1
                logger.exception("BUG: node handler failed on a %s message %s from %s", kind.value,
                                 message.msg_id.hex()[:16], message.forwarder)

    async def _watch_loop(self) -> None:
        """Log when the event loop runs late (a sleep of `_LOOP_PROBE_S` wakes later than asked), with what
        waits to run: the cost of a backlog to every task of the node, reading peers' frames included."""
        worst = 0.0
        window_end = trio.current_time() + 1.0
        while True:
            asked = trio.current_time() + _LOOP_PROBE_S
            await trio.sleep_until(asked)
            now = trio.current_time()
            worst = max(worst, now - asked)
            if now < window_end:
                continue
            if worst >= LOOP_LATE_LOG_S:
                stats = trio.lowlevel.current_statistics()
                logger.info("event loop ran up to %.2f s late (tasks runnable %d, living %d; in admission: %s)",
                            worst, stats.tasks_runnable, stats.tasks_living,
                            ", ".join(f"{k.value} {n}" for k, n in self._admitting.items() if n) or "none")
            worst = 0.0
            window_end = now + 1.0

    # ------------------------------------------------------------------ publishing

    async def publish(self, kind: TopicKind, data: bytes, *, check: bool = True) -> Hash32:
        """Check our own message like a peer would, publish (a tx batch first waits for room, see module doc).

        Raises the envelope's RemoteError for a message peers would reject. `check=False` skips the
        envelope check (not the size cap) for bytes built from values the caller already verified, such as a
        batch of mempool transactions: re-verifying them costs one signature check per transaction.
        """
        pipeline = self._pipelines[kind]
        if check:
            await pipeline.decode(data)
        elif len(data) > pipeline.cap:
            raise Oversized(f"{kind.value}: {len(data)} bytes exceeds the cap of {pipeline.cap}")
        began = trio.current_time()
        await self._pace(kind, len(data) + ENVELOPE_SLACK)
        pubsub = self._require_pubsub()
        if kind is TopicKind.PROPOSALS:
            # For the logs: what a proposal finds ahead of it in each peer's outbound queue (bytes held; it goes
            # ahead of the bulk ones, not of the RPC being written) and how long that write has run.
            now = trio.current_time()
            ahead = ", ".join(f"{str(peer)[-6:]} {held // 1024} KiB"
                              + (f" writing {now - since:.2f} s" if (since := pubsub.writing_since(peer)) else "")
                              for peer in list(pubsub.peer_queues)
                              for held, _ in [pubsub.queued_bytes(peer)])
            logger.info("proposal of %d bytes published after %.2f s of pacing; peers' queues: %s", len(data),
                        now - began, ahead or "none")
        await pubsub.publish(self._topics[kind], data)
        self._counters.published[kind.value] += 1
        return sha256(data)

    async def _pace(self, kind: TopicKind, size: int) -> None:
        """Upstream drops, silently, whatever does not fit a peer's 32-RPC queue (pitfall 4), and ours drops
        what does not fit its byte budget: a publish waits (bounded) while a peer that is draining its queue
        has no room for `size` bytes or one more RPC. A transaction batch leaves room for
        consensus messages (it waits from `outbound_high_water`), a consensus message waits only for a full
        queue and at most `peer_stall_s`, and goes out ahead of the batches. Never global: a stalled peer is
        not waited for."""
        pubsub = self._require_pubsub()
        cfg = self._config
        bulk = kind is TopicKind.TXS
        high_water = cfg.outbound_high_water if bulk else OUTBOUND_QUEUE_SIZE
        if not pubsub.congested_peers(high_water, size, not bulk):
            return
        self._counters.publish_waits += 1
        # a consensus message waits at most peer_stall_s: a peer that slow may miss it and catch up later
        with trio.move_on_after(cfg.publish_pacing_timeout_s if bulk else cfg.peer_stall_s) as scope:
            # Upstream's RpcQueue signals pushes, not pops: polling is the only way to see it drain.
            while pubsub.congested_peers(high_water, size, not bulk):  # noqa: ASYNC110
                await trio.sleep(_PACING_POLL_S)
        if scope.cancelled_caught:
            self._counters.publish_pacing_timeouts += 1

    def forget_peer(self, peer: ID) -> None:
        """The peer disconnected: free its rate state (its score stays with the peer manager)."""
        self._limiter.forget(str(peer))

    def tracked_peers(self) -> int:
        return self._limiter.tracked()

    def mesh_peers(self, kind: TopicKind) -> set[ID]:
        router = self.router
        return set(router.mesh.get(self._topics[kind], set())) if router is not None else set()

    def topic_peers(self, kind: TopicKind) -> set[ID]:
        pubsub = self.pubsub
        return set(pubsub.peer_topics.get(self._topics[kind], set())) if pubsub is not None else set()

    def _require_pubsub(self) -> GuardedPubsub:
        if self.pubsub is None:
            raise RuntimeError("gossip is not running")
        return self.pubsub

    # ------------------------------------------------------------------ Gate, called by GuardedPubsub

    def is_copy(self, forwarder: ID, topic: str, msg_id: bytes, size: int, seen: bool) -> bool:
        """Whether to drop `msg` where it is read: a copy of a message already delivered (`seen` by upstream's
        cache, or in ours) or still being validated. Copies count toward the forwarder's rate like any message,
        but are dropped before the task, pubsub signature checks and hashing a first copy gets (pitfall 9)."""
        key = (topic, msg_id)
        if not (seen or key in self._validating or key in self._delivered):
            if key not in self._arrivals:
                _remember(self._arrivals, key, Arrival(trio.current_time(), time.time()), _PENDING_DELIVERY)
            return False
        self._counters.duplicates += 1
        if not self._limiter.allow(str(forwarder), size, trio.current_time()):
            self._counters.ignored["rate_limited"] += 1
            self.offense(forwarder, Offense.RATE_LIMITED, "gossip rate limit")
        return True

    async def admit(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        pubsub = self._require_pubsub()
        if len(msg.topicIDs) != 1 or msg.topicIDs[0] not in self._kinds:
            self.offense(forwarder, Offense.INVALID, f"message on topics {list(msg.topicIDs)!r}")
            return False
        if forwarder == pubsub.my_id:
            return True  # our own publish, checked in publish()
        kind = self._kinds[msg.topicIDs[0]]
        data = bytes(msg.data)
        if not self._limiter.allow(str(forwarder), len(data), trio.current_time()):
            self._counters.ignored["rate_limited"] += 1
            self.offense(forwarder, Offense.RATE_LIMITED, "gossip rate limit")
            return False
        msg_id = pubsub.message_id(msg)  # hashed once, where its frame was read
        key = (msg.topicIDs[0], msg_id)
        if key in self._validating or key in self._delivered:
            # Upstream marks a message seen only after validation, so copies from several peers can be
            # validated concurrently and each delivered: drop later copies here (no penalty, no CPU).
            self._counters.duplicates += 1
            self._counters.late_duplicates += 1  # is_copy should have dropped it where it was read
            return False
        cached = self._rejected.get(key)
        if cached is not None:
            self._counters.rejected[cached.value] += 1
            self.offense(forwarder, cached, "relayed a message already rejected")
            return False
        self._validating.add(key)
        arrival = self._arrivals.pop(key, None)
        if arrival is not None:
            arrival.admitted = trio.current_time()
        if self.router is not None:
            # Before validation, as gossipsub v1.2 intends: the mesh peers' relays of this message come when
            # their own validation ends, so "I have it" must reach them before that (p2p/dontwant.py).
            # The forwarder will not send it back; the origin, when it is not the forwarder, may still hold its
            # own copy for us in its queue, so it is told too.
            self.router.announce_held(msg_id, msg.topicIDs[0], len(data), forwarder)
        self._admitting[kind] += 1
        try:
            outcome = await self._pipelines[kind].run(data, msg_id, forwarder, ID(msg.from_id), arrival)
        finally:
            self._admitting[kind] -= 1
            self._validating.discard(key)
        if arrival is not None:
            arrival.checked = trio.current_time()
        if outcome.verdict is GossipVerdict.ACCEPT and outcome.message is not None:
            _remember(self._accepted, key, outcome.message, _PENDING_DELIVERY)
            origin = outcome.message.origin
            if self.on_origin is not None and origin != forwarder:
                self.on_origin(origin)
            if kind is not TopicKind.TXS and self.router is not None:
                # A large consensus message (a proposal) is announced once accepted, before our relay of it is
                # queued: the other mesh peers' relays to us, 3 copies of up to ~1 MB each in a full mesh, are
                # what their votes to us would otherwise wait behind (p2p/dontwant.py).
                self.router.announce_held(msg_id, msg.topicIDs[0], len(data), forwarder, accepted=True)
            return True
        if outcome.verdict is GossipVerdict.IGNORE:
            self._counters.ignored[kind.value] += 1
            return False
        offense = outcome.offense or Offense.INVALID
        _remember(self._rejected, key, offense, _REJECT_CACHE)
        self._counters.rejected[offense.value] += 1
        self.offense(forwarder, offense, f"{kind.value}: {outcome.reason}")
        return False

    def deliver(self, msg: rpc_pb2.Message) -> None:
        msg_id = self.pubsub.message_id(msg) if self.pubsub is not None else sha256(msg.data)
        key = (msg.topicIDs[0] if len(msg.topicIDs) == 1 else "", msg_id)
        message = self._accepted.pop(key, None)
        if message is None:
            return  # our own publish: the node already has it
        _remember(self._delivered, key, None, _DELIVERED_MEMORY)
        if message.arrival is not None:
            message.arrival.delivered = trio.current_time()
        send, _ = self._buffers[message.kind]
        try:
            send.send_nowait(message)
        except trio.WouldBlock:
            self._counters.delivery_dropped[message.kind.value] += 1

    def offense(self, peer: ID, offense: Offense, detail: str) -> None:
        logger.info("peer %s: %s (%s)", peer, offense.name, detail[:200])
        self._on_offense(peer, offense, detail)

    def stalled(self, peer: ID, detail: str) -> None:
        logger.warning("peer %s stalled: %s; dropping it", peer, detail)
        if self._on_stalled is not None:
            self._on_stalled(peer, detail)


def _remember(cache: OrderedDict[tuple[str, bytes], Any], key: tuple[str, bytes], value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
