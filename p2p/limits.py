"""Size limits of everything p2p carries; every frame (pubsub RPC, request, response) stays under
`LIBP2P_FRAME_MAX` (core.limits.P2P_FRAME_BYTES, 2 MiB), the size p2p.pubsub and p2p.reqresp configure
py-libp2p with. A block larger than one response travels as several (`BLOCK_PART_BYTES` each, docs/p2p.md
"Block sync in parts")."""

from __future__ import annotations

from dataclasses import dataclass

from core.limits import MAX_BLOCK_BYTES, MAX_COMPACT_PROPOSAL_BYTES, MAX_GOSSIP_MESSAGE_BYTES, P2P_FRAME_BYTES

KIB = 1024
MIB = 1024 * 1024

# The ceiling of one pubsub RPC or request/response frame, sent or read. py-libp2p 0.8.1 defaults to 1 MiB for
# pubsub (the outbound queue's `max_message_size`, which drops a larger RPC at the sender, and the inbound
# `max_inbound_rpc_size`); p2p.pubsub raises both to this, and p2p.reqresp passes it as the response size.
LIBP2P_FRAME_MAX = P2P_FRAME_BYTES
# Room for the pubsub envelope (topic, from, seqno, signature, key) and the varint around our payload.
ENVELOPE_SLACK = 4 * KIB
# Request/response payloads we produce stay under this.
RESPONSE_MAX = LIBP2P_FRAME_MAX - ENVELOPE_SLACK
REQUEST_MAX = 64 * KIB
# Model bytes travel in chunks of this size (docs/design.md §5.4: chunk transactions are at most 256 KiB).
MODEL_CHUNK = 256 * KIB
MODEL_MAX = 256 * MIB
# One gossiped transaction batch: the batcher flushes at TX_BATCH_TARGET; a single transaction larger than that
# (a model chunk, an inference on an ImageNet image) travels alone, up to core.limits.MAX_GOSSIP_TX_BYTES.
TX_BATCH_TARGET = 256 * KIB
TX_BATCH_MAX = MAX_GOSSIP_MESSAGE_BYTES
TXS_PER_BATCH_MAX = 8192
# Block sync in parts: a stored block (block and commit) that does not fit one response is served in parts of
# this many bytes (the last one shorter); a whole one is at most MAX_STORED_BLOCK_BYTES, so at most
# MAX_BLOCK_PARTS parts.
BLOCK_PART_BYTES = 512 * KIB
MAX_STORED_BLOCK_BYTES = MAX_BLOCK_BYTES + 96 * KIB  # the block, its commit (up to 128 precommits), framing
MAX_BLOCK_PARTS = -(-MAX_STORED_BLOCK_BYTES // BLOCK_PART_BYTES)
# Bytes one peer's outbound pubsub queue may hold (p2p.pubsub.ByteBudgetQueue). Upstream bounds the queue in RPCs
# only (32), so at the frame cap a peer that stops reading held 64 MiB until it was dropped as stalled (10 s),
# ~3.2 GiB for 50 such peers. 8 MiB is four frames at the cap, or 32 honest 256 KiB batches: a peer that drains
# never reaches it with pacing on (publishing waits for room), one that stalls holds no more. Past it a bulk RPC
# to that peer is dropped (counted); priority RPCs (consensus topics, control) may use `OUTBOUND_PRIORITY_RESERVE`
# more, one whole frame, so a full proposal still goes out to a peer whose queue is full of transaction batches.
OUTBOUND_QUEUE_BYTES = 8 * MIB
OUTBOUND_PRIORITY_RESERVE = LIBP2P_FRAME_MAX


@dataclass(frozen=True, slots=True)
class TopicLimits:
    """Byte cap per gossip message on each topic; a message over its cap is rejected before decoding."""

    tx_batch: int = TX_BATCH_MAX
    proposal: int = MAX_COMPACT_PROPOSAL_BYTES  # a compact proposal (a full one only if it fits)
    vote: int = 1 * KIB
    evidence: int = MAX_GOSSIP_MESSAGE_BYTES  # wrong-inference evidence carries a transaction and proofs

    def __post_init__(self) -> None:
        for name in ("tx_batch", "proposal", "vote", "evidence"):
            if not 0 < getattr(self, name) <= LIBP2P_FRAME_MAX - ENVELOPE_SLACK:
                raise ValueError(f"{name} limit must be in (0, {LIBP2P_FRAME_MAX - ENVELOPE_SLACK}]")


DEFAULT_TOPIC_LIMITS = TopicLimits()


assert MAX_GOSSIP_MESSAGE_BYTES == LIBP2P_FRAME_MAX - ENVELOPE_SLACK
