"""p2p's own wire types: the transaction batch and the request/response messages.

They use core's canonical codec, so each has one byte form and decoding rejects anything else.
"""

from __future__ import annotations

import enum
from typing import Annotated

from core.codec import U32, U64, MaxLen, Wire, wire
from core.limits import MAX_BLOCK_BYTES, MAX_CHAIN_ID_BYTES, MAX_VALIDATORS
from core.tx import Transaction
from core.types import Hash32, Height, Round
from core.votes import Vote, VoteType
from p2p.limits import (
    BLOCK_PART_BYTES,
    MAX_BLOCK_PARTS,
    MAX_STORED_BLOCK_BYTES,
    MODEL_CHUNK,
    REQUEST_MAX,
    RESPONSE_MAX,
    TX_BATCH_MAX,
    TXS_PER_BATCH_MAX,
)

# At most this many blocks are asked for in one request; a response holds as many as fit in RESPONSE_MAX.
MAX_BLOCKS_PER_REQUEST = 1000
# At most this many transactions are asked for by hash in one request (34 bytes each, under REQUEST_MAX).
MAX_TXS_PER_REQUEST = 1500
# At most this many pending transaction hashes are asked for and answered in one exchange (~140 KB).
MAX_PENDING_HASHES = 4096
# A stored block whose encoding is larger than this does not travel whole in a BlocksResponse, but in parts.
WHOLE_BLOCK_MAX = RESPONSE_MAX - 64


@wire(max_bytes=TX_BATCH_MAX)
class TxBatch(Wire):
    """Transactions gossiped together: message count, not bytes, is py-libp2p's cost (docs/design.md §5.2)."""

    txs: Annotated[tuple[Transaction, ...], MaxLen(TXS_PER_BATCH_MAX)]


class ResponseCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1  # the peer lacks what was asked (heights beyond its head, an unknown model)
    BAD_REQUEST = 2
    UNAVAILABLE = 3  # no provider registered, or the provider failed
    RATE_LIMITED = 4


@wire(max_bytes=RESPONSE_MAX + 64)
class Response(Wire):
    """Every response: a code, and on OK the encoded body message of the protocol."""

    code: ResponseCode
    body: Annotated[bytes, MaxLen(RESPONSE_MAX)]
    reason: Annotated[str, MaxLen(200)]


@wire(max_bytes=128)
class StatusRequest(Wire):
    chain_id: Annotated[str, MaxLen(MAX_CHAIN_ID_BYTES)]


@wire(max_bytes=256)
class ChainStatus(Wire):
    """A peer's view of its chain: what a syncing node compares with its own head."""

    chain_id: Annotated[str, MaxLen(MAX_CHAIN_ID_BYTES)]
    height: Height  # of the last committed block; 0 before the first
    head_hash: Hash32  # id of that block; ZERO_HASH at height 0
    base_height: Height  # lowest height this peer serves blocks from


@wire(max_bytes=64)
class BlocksRequest(Wire):
    """Blocks start..end inclusive; the response may stop early to stay under the frame limit."""

    start: Height
    end: Height

    def validate_wire(self) -> None:
        if self.start < 1 or self.end < self.start or self.end - self.start >= MAX_BLOCKS_PER_REQUEST:
            raise ValueError(f"bad block range {self.start}..{self.end}")


@wire(max_bytes=MAX_STORED_BLOCK_BYTES)
class StoredBlock(Wire):
    """A block with the commit that finalizes it, as the canonical bytes the provider stores."""

    height: Height
    block: Annotated[bytes, MaxLen(MAX_BLOCK_BYTES)]
    commit: Annotated[bytes, MaxLen(MAX_STORED_BLOCK_BYTES - MAX_BLOCK_BYTES)]


@wire(max_bytes=RESPONSE_MAX)
class BlocksResponse(Wire):
    """The blocks from the asked start that fit one response; `next_size` is the encoded size of the
    `StoredBlock` that follows them when it alone does not fit one response (0 otherwise): the requester
    fetches it in parts (`BlockPartRequest`)."""

    blocks: Annotated[tuple[StoredBlock, ...], MaxLen(MAX_BLOCKS_PER_REQUEST)]
    next_size: U32

    def validate_wire(self) -> None:
        if self.next_size and not WHOLE_BLOCK_MAX < self.next_size <= MAX_STORED_BLOCK_BYTES:
            raise ValueError(f"a block of {self.next_size} bytes is not one to fetch in parts")


@wire(max_bytes=64)
class BlockPartRequest(Wire):
    """Part `index` of the encoded `StoredBlock` at `height`: bytes index·BLOCK_PART_BYTES onwards."""

    height: Height
    index: U32

    def validate_wire(self) -> None:
        if self.height < 1 or self.index >= MAX_BLOCK_PARTS:
            raise ValueError(f"bad block part {self.height}/{self.index}")


@wire(max_bytes=BLOCK_PART_BYTES + 64)
class BlockPart(Wire):
    """One part of a stored block of `total` bytes; every part but the last is BLOCK_PART_BYTES long."""

    height: Height
    index: U32
    total: U32
    data: Annotated[bytes, MaxLen(BLOCK_PART_BYTES)]


def block_part_span(total: int, index: int) -> tuple[int, int]:
    """The byte range [start, end) of part `index` of a stored block of `total` bytes (empty past the end)."""
    start = min(total, index * BLOCK_PART_BYTES)
    return start, min(total, start + BLOCK_PART_BYTES)


def count_block_parts(total: int) -> int:
    return -(-total // BLOCK_PART_BYTES)


@wire(max_bytes=128)
class VotesRequest(Wire):
    """Vote catch-up (docs/design.md §4.8): the votes of one height, round and type that the requester lacks.

    `have` is a bitset over the validator set of that height in address order (bit i = byte i//8,
    bit i%8 from the least significant end): set bits are votes the requester already holds.
    """

    height: Height
    round: Round
    type: VoteType
    have: Annotated[bytes, MaxLen((MAX_VALIDATORS + 7) // 8)]

    def holds(self, index: int) -> bool:
        byte = index // 8
        return byte < len(self.have) and bool(self.have[byte] >> (index % 8) & 1)


@wire(max_bytes=RESPONSE_MAX)
class VotesResponse(Wire):
    votes: Annotated[tuple[Vote, ...], MaxLen(MAX_VALIDATORS)]


@wire(max_bytes=128)
class ModelChunkRequest(Wire):
    model_id: Hash32
    offset: U64
    length: U32

    def validate_wire(self) -> None:
        if not 0 < self.length <= MODEL_CHUNK:
            raise ValueError(f"chunk length must be in 1..{MODEL_CHUNK}")


@wire(max_bytes=MODEL_CHUNK + 128)
class ModelChunkResponse(Wire):
    """Bytes offset..offset+len(data) of a model of `total` bytes."""

    total: U64
    offset: U64
    data: Annotated[bytes, MaxLen(MODEL_CHUNK)]


@wire(max_bytes=REQUEST_MAX)
class TxsRequest(Wire):
    """Transactions by hash: those of a compact proposal the requester's mempool lacks."""

    hashes: Annotated[tuple[Hash32, ...], MaxLen(MAX_TXS_PER_REQUEST)]

    def validate_wire(self) -> None:
        if not self.hashes:
            raise ValueError("no transaction asked for")


@wire(max_bytes=RESPONSE_MAX)
class TxsResponse(Wire):
    """The asked-for transactions the provider holds, as many as fit in one response, in the asked order."""

    txs: Annotated[tuple[Transaction, ...], MaxLen(MAX_TXS_PER_REQUEST)]


@wire(max_bytes=64)
class PendingRequest(Wire):
    """The hashes of the pending transactions a peer would propose first, at most `limit` of them: a node
    whose mempool has diverged from the peer's (a healed partition) asks, then fetches what it lacks by
    `TxsRequest` (node.mempool_sync)."""

    limit: U32

    def validate_wire(self) -> None:
        if not 0 < self.limit <= MAX_PENDING_HASHES:
            raise ValueError(f"limit must be in 1..{MAX_PENDING_HASHES}")


@wire(max_bytes=MAX_PENDING_HASHES * 34 + 64)
class PendingResponse(Wire):
    """Pending transaction hashes, best first (the order the peer's proposals would name them in)."""

    hashes: Annotated[tuple[Hash32, ...], MaxLen(MAX_PENDING_HASHES)]


def bitset(indices: list[int] | set[int] | range) -> bytes:
    """The `have` bitset of VotesRequest for the given validator indices."""
    idx = sorted(indices)
    if not idx:
        return b""
    out = bytearray(idx[-1] // 8 + 1)
    for i in idx:
        if not 0 <= i < MAX_VALIDATORS:
            raise ValueError(f"validator index out of range: {i}")
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


assert REQUEST_MAX >= 128
assert MAX_PENDING_HASHES * 34 + 64 <= RESPONSE_MAX
