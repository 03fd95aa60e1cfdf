"""Size limits of everything p2p carries; py-libp2p refuses any frame over 1 MiB, so all stay below it. A block
larger than one response travels as several (`BLOCK_PART_BYTES` each, docs/p2p.md "Block sync in parts")."""

from __future__ import annotations

from dataclasses import dataclass

from core.limits import MAX_BLOCK_BYTES, MAX_COMPACT_PROPOSAL_BYTES, MAX_GOSSIP_MESSAGE_BYTES

KIB = 1024
MIB = 1024 * 1024

# The hard ceiling of one pubsub RPC or request/response frame in py-libp2p 0.8.1.
LIBP2P_FRAME_MAX = 1 * MIB
# Room for the pubsub envelope (topic, from, seqno, signature, key) and the varint around our payload.
ENVELOPE_SLACK = 4 * KIB
# Request/response payloads we produce stay under this (the library caps requests at 1 MiB).
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
