"""Size limits of everything p2p carries; py-libp2p refuses any frame over 1 MiB, so all stay below it."""

from __future__ import annotations

from dataclasses import dataclass

from core.limits import MAX_PROPOSAL_MESSAGE_BYTES

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
# (a model chunk, an inference on an ImageNet image) travels alone, and any transaction a block can hold
# (vm.params.MAX_RELAY_BLOCK_BYTES) fits.
TX_BATCH_TARGET = 256 * KIB
TX_BATCH_MAX = 960 * KIB
TXS_PER_BATCH_MAX = 8192


@dataclass(frozen=True, slots=True)
class TopicLimits:
    """Byte cap per gossip message on each topic; a message over its cap is rejected before decoding."""

    tx_batch: int = TX_BATCH_MAX
    proposal: int = MAX_PROPOSAL_MESSAGE_BYTES  # a proposal with its block
    vote: int = 1 * KIB
    evidence: int = 1000 * KIB  # wrong-inference evidence carries a transaction (up to a block's size) and proofs

    def __post_init__(self) -> None:
        for name in ("tx_batch", "proposal", "vote", "evidence"):
            if not 0 < getattr(self, name) <= LIBP2P_FRAME_MAX - ENVELOPE_SLACK:
                raise ValueError(f"{name} limit must be in (0, {LIBP2P_FRAME_MAX - ENVELOPE_SLACK}]")


DEFAULT_TOPIC_LIMITS = TopicLimits()
