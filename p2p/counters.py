"""Plain counters the node's metrics exporter reads; p2p only ever increments them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class P2PCounters:
    """Mutable by design: one instance per service, incremented in place, read by /metrics."""

    published: Counter[str] = field(default_factory=Counter)  # by topic kind
    delivered: Counter[str] = field(default_factory=Counter)  # handed to the node's handler
    delivery_dropped: Counter[str] = field(default_factory=Counter)  # node's handler too slow, buffer full
    handler_errors: Counter[str] = field(default_factory=Counter)  # a bug of ours met while handling a message
    rejected: Counter[str] = field(default_factory=Counter)  # by offense name
    ignored: Counter[str] = field(default_factory=Counter)  # not relayed, not penalized (hook said so)
    inbound_bulk_dropped: int = 0  # transaction batches dropped where read: their forwarder's inbound queue was full
    duplicates: int = 0  # copies dropped because the message was being validated or was delivered already
    rpcs_received: int = 0  # pubsub frames read from peers (publishes, control, subscriptions)
    rpc_bytes_received: int = 0
    messages_received: int = 0  # published messages in those frames, copies included
    rpcs_sent: int = 0  # outbound RPCs written to peers (queued ones merged into one frame count each)
    frames_sent: int = 0  # pubsub frames written to peers: rpcs_sent less those merged (p2p/coalesce.py)
    lanes_opened: int = 0  # consensus lanes opened to peers (p2p/lane.py)
    lane_frames_sent: int = 0  # of frames_sent, those written on a consensus lane
    lane_rpcs_received: int = 0  # of rpcs_received, those read from a peer's consensus lane
    idontwant_sent: int = 0  # message ids we told a mesh peer not to send us (we have the message)
    idontwant_received: int = 0  # message ids peers told us not to send them
    relays_suppressed: int = 0  # copies not sent to a peer that had told us it holds the message
    holders_noted: int = 0  # bulk message copies a peer sent us: it holds them, so our relay skips it
    outbound_dropped: int = 0  # RPCs upstream dropped: a peer's queue was full or the RPC over the frame cap
    outbound_budget_drops: int = 0  # of those, RPCs refused because the peer's queue held its byte budget
    publish_waits: int = 0  # tx batch publishes that had to wait for a draining peer's queue
    peers_stalled: int = 0  # peers dropped because they did not accept an outbound RPC in time
    publish_pacing_timeouts: int = 0
    malformed_frames: int = 0  # contained errors from the library's pubsub stream and push paths
    oversized_frames: int = 0  # pubsub frames over the 2 MiB limit (each also a MALFORMED_FRAME offense)
    contained_errors: int = 0  # library tasks for one peer or message that raised: logged, never fatal
    requests_served: Counter[str] = field(default_factory=Counter)
    requests_failed: Counter[str] = field(default_factory=Counter)  # our outbound requests that failed
    requests_refused: Counter[str] = field(default_factory=Counter)  # inbound ones we refused
    requests_skipped: Counter[str] = field(default_factory=Counter)  # not sent: the peer does not serve it
    requests_abandoned: int = 0  # requests not released within their bound: the caller went on, the link dropped
    served_bytes: int = 0  # response bytes we answered peers with
    served_budget_refusals: int = 0  # requests refused because the peer spent its byte budget
    penalties: int = 0
    disconnects: int = 0
    disconnects_stalled: int = 0  # connections closed because the peer stopped taking our messages
    bans: int = 0
    reconnects: int = 0
    redials_woken: int = 0  # redials started early: a persistent peer we had no link to showed life
    dial_failures: int = 0
    peers_refused: int = 0  # inbound connections closed for max_peers or a ban
    late_duplicates: int = 0  # of `duplicates`, copies that got past the read (a task each) and were dropped in admit

    def snapshot(self) -> dict[str, int]:
        """Flat name -> value map, e.g. `delivered.votes`, for an exporter that wants plain numbers."""
        out: dict[str, int] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, Counter):
                for key, count in value.items():
                    out[f"{name}.{key}"] = count
            else:
                out[name] = value
        return out
