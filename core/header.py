"""Block header and per-transaction results.

The header commits to everything in the block body and to the state after applying the block
(docs/design.md §4.2), so a commit of the header certifies the block's own state.
"""

from __future__ import annotations

import enum
from typing import Annotated

from core.codec import U16, CachedWire, MaxLen, wire
from core.limits import MAX_CHAIN_ID_BYTES, MAX_LOG_BYTES, MAX_RESULT_DATA_BYTES, MAX_TX_OUTPUTS
from core.tensor import Tensor
from core.types import Address, Gas, Hash32, Height, Timestamp

PROTOCOL_VERSION = 1


class TxStatus(enum.IntEnum):
    """Outcome of one transaction in a block; any status but OK still pays its fee."""

    OK = 0
    FAILED = 1  # a stateful rule refused it (balance, nonce, unknown model...); see `log`
    OUT_OF_GAS = 2
    INFERENCE_FAILED = 3  # the numeric rules failed the run (non-finite or off-grid output)
    MODEL_REJECTED = 4  # a registration verdict: the model broke a static rule


@wire(max_bytes=MAX_TX_OUTPUTS * (256 * 1024 + 300) + MAX_RESULT_DATA_BYTES + 512)
class TxResult(CachedWire):
    """What executing a transaction produced, committed in the block by the proposer.

    `outputs` are the inference outputs (float outputs on their integer grid); `data` is kind-specific
    (e.g. a registered model's id and price); `log` is a deterministic one-line message.
    """

    status: TxStatus
    gas_used: Gas
    outputs: Annotated[tuple[Tensor, ...], MaxLen(MAX_TX_OUTPUTS)]
    data: Annotated[bytes, MaxLen(MAX_RESULT_DATA_BYTES)]
    log: Annotated[str, MaxLen(MAX_LOG_BYTES)]

    @property
    def hash(self) -> Hash32:
        return self.digest()


@wire(max_bytes=2048)
class Header(CachedWire):
    """The block header; its hash is the block id, computed once per instance (`CachedWire`)."""

    version: U16
    chain_id: Annotated[str, MaxLen(MAX_CHAIN_ID_BYTES)]
    height: Height
    time: Timestamp
    last_block_id: Hash32
    proposer: Address
    txs_root: Hash32
    results_root: Hash32
    state_root: Hash32  # after applying this block
    validators_hash: Hash32  # the set that signs this block
    next_validators_hash: Hash32  # the set that signs the next block
    last_commit_hash: Hash32
    evidence_hash: Hash32
    poi_reveal: Tensor | None  # the challenge output of height - 2, revealed by the proposer

    @property
    def block_id(self) -> Hash32:
        return self.digest()
