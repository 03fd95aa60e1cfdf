"""Configuration of the p2p service: one frozen value the node builds from its config file."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.coalesce import COALESCE_BYTES
from p2p.dontwant import DontWantPolicy
from p2p.inbound import InboundPolicy
from p2p.limits import DEFAULT_TOPIC_LIMITS, ENVELOPE_SLACK, LIBP2P_FRAME_MAX, TopicLimits


@dataclass(frozen=True, slots=True)
class PenaltyPolicy:
    """How peer scores decay and when a peer is cut off; scores start at 0 and only go down."""

    disconnect_below: float = -100.0
    ban_below: float = -200.0
    disconnect_ban_s: float = 30.0  # a disconnected peer may not come back for this long
    ban_s: float = 600.0
    half_life_s: float = 60.0  # penalties fade so one honest mistake is forgotten
    # A peer disconnected this many times for misbehaviour within ban_s is banned: a hostile peer cannot
    # wait out each short refusal, reconnect and start again forever.
    strikes_to_ban: int = 2
    # Peers the score book remembers at most (scores, bans, strikes); the oldest are forgotten first.
    max_tracked_peers: int = 4096

    def __post_init__(self) -> None:
        if not self.ban_below < self.disconnect_below < 0:
            raise ValueError("thresholds must satisfy ban_below < disconnect_below < 0")
        if not 0 < self.disconnect_ban_s < self.ban_s / 2:
            raise ValueError("disconnect_ban_s must be positive and shorter than half of ban_s")
        if self.strikes_to_ban < 1 or self.max_tracked_peers < 1:
            raise ValueError("strikes_to_ban and max_tracked_peers must be at least 1")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Inbound budgets per peer (token buckets); defaults are far above what a 16-validator chain needs."""

    gossip_msgs_per_s: float = 300.0
    gossip_burst: float = 600.0
    gossip_bytes_per_s: float = 32 * 1024 * 1024
    requests_per_s: float = 50.0
    request_burst: float = 100.0
    # Bytes we answer one peer with (all request/response protocols): a 20-byte blocks request costs up to one
    # 2 MiB frame, so requests alone are no budget. Over it, requests are refused as RATE_LIMITED (no penalty);
    # the burst still covers 8 whole frames, so one large block or transaction is never out of reach.
    served_bytes_per_s: float = 8 * 1024 * 1024
    served_bytes_burst: float = 16 * 1024 * 1024
    # Peers whose rate state is kept at most (it is also freed when a peer disconnects).
    max_tracked_peers: int = 4096


@dataclass(frozen=True, slots=True)
class P2PConfig:
    """Everything the p2p service needs besides the node key and the node's callbacks."""

    chain_id: str
    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    # Full multiaddrs with /p2p/<peer id>; these peers are redialed forever and exempt from max_peers.
    bootstrap: tuple[str, ...] = ()
    max_peers: int = 50
    heartbeat_s: float = 1.0
    mesh_degree: int = 6
    mesh_degree_low: int = 4
    mesh_degree_high: int = 12
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 2.0  # persistent peers only (validators, bootstrap): a healed link back soon
    # A transaction batch waits (at most publish_pacing_timeout_s) while a draining peer's outbound queue
    # (32 RPCs upstream) holds this many (pitfall 4); consensus messages never wait.
    outbound_high_water: int = 20
    publish_pacing_timeout_s: float = 5.0
    # A peer that does not accept one outbound RPC (<= 2 MiB, p2p.limits.LIBP2P_FRAME_MAX) within this is stalled
    # and dropped: ~200 KiB/s at the largest frame, far below any link a validator runs on.
    peer_write_timeout_s: float = 10.0
    # A peer stuck this long on one write is no longer waited for by pacing.
    peer_stall_s: float = 1.0
    # Delivered messages buffered per topic between validation and the node's handler.
    delivery_buffer: int = 2048
    request_timeout_s: float = 10.0
    limits: TopicLimits = field(default_factory=lambda: DEFAULT_TOPIC_LIMITS)
    rates: RateLimits = field(default_factory=RateLimits)
    penalties: PenaltyPolicy = field(default_factory=PenaltyPolicy)
    # IDONTWANT (gossipsub v1.2, p2p/dontwant.py): peers are told on receipt that we hold a large message, and
    # what they told us is not sent to them again.
    dont_want: DontWantPolicy = field(default_factory=DontWantPolicy)
    # RPCs queued for one peer leave as one pubsub frame of up to this many bytes; 0 writes each RPC alone
    # (p2p/coalesce.py). At most one transaction batch's worth, so a consensus message waits no longer.
    coalesce_bytes: int = COALESCE_BYTES
    # Inbound transaction batches wait in bounded per-peer queues for a few workers (p2p/inbound.py), so that
    # consensus messages, admitted at once, never queue behind a backlog of them.
    inbound: InboundPolicy = field(default_factory=InboundPolicy)
    # Yamux sends a window update on every read by default; batching them halves small-message CPU.
    yamux_release_on_read: bool = False
    # Transaction batches queued for a peer are merged into frames too (within `coalesce_bytes`), never with
    # consensus messages; False merges the priority lane only, as before (p2p/coalesce.py).
    coalesce_bulk: bool = True
    # Consensus messages (proposals, votes, evidence) and IDONTWANT announcements go to each peer on a second
    # stream of their own, so none waits behind a batch or a large proposal being written (p2p/lane.py); False
    # keeps one stream per peer, for A/B runs. Peers' lanes are read either way.
    consensus_lane: bool = True

    def __post_init__(self) -> None:
        if not self.chain_id or "/" in self.chain_id:
            raise ValueError(f"chain id must be non-empty and contain no '/': {self.chain_id!r}")
        if self.max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        if not 0 < self.mesh_degree_low <= self.mesh_degree <= self.mesh_degree_high:
            raise ValueError("mesh degrees must satisfy 0 < low <= degree <= high")
        if not 0 < self.outbound_high_water < 32:
            raise ValueError("outbound_high_water must be below the upstream queue size of 32")
        if not 0 <= self.coalesce_bytes <= LIBP2P_FRAME_MAX - ENVELOPE_SLACK:
            raise ValueError("coalesce_bytes must be between 0 and the frame limit less its envelope slack")
        if not 0 < self.peer_stall_s < self.peer_write_timeout_s:
            raise ValueError("peer_stall_s must be positive and below peer_write_timeout_s")
