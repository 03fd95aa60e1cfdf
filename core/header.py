"""Block header and per-transaction results.

The header commits to everything in the block body and to the state after applying the block
(docs/design.md §4.2), so a commit of the header certifies the block's own state. `validate_header` is the one
place the header rules live: consensus (before judging a proposal), the VM (before re-executing one) and block
sync (before committing a fetched block) all call it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from core.codec import U16, CachedWire, MaxLen, wire
from core.errors import InvalidBlock
from core.limits import MAX_CHAIN_ID_BYTES, MAX_LOG_BYTES, MAX_RESULT_DATA_BYTES, MAX_TX_OUTPUTS
from core.tensor import Tensor
from core.types import Address, Gas, Hash32, Height, Round, Timestamp
from core.validators import ValidatorSet

PROTOCOL_VERSION = 1


class TxStatus(enum.IntEnum):
    """Outcome of one transaction in a block; any status but OK still pays its fee."""

    OK = 0
    FAILED = 1  # a stateful rule refused it (balance, nonce, unknown model...); see `log`
    OUT_OF_GAS = 2
    INFERENCE_FAILED = 3  # the numeric rules failed the run (non-finite or off-grid output)
    MODEL_REJECTED = 4  # a registration verdict: the model broke a static rule
    POSTPONED = 5  # a deferred activation's verdict (vm/deferred.py): the proposer could not check it


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
    round: Round  # the consensus round the block was built in; `proposer` is that round's proposer
    time: Timestamp
    last_block_id: Hash32
    proposer: Address  # who built the block (and earns its fees): the proposer of `round`
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


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """What the chain fixes about the header of block `height`, as the caller knows it.

    `round_proposer(r)` is consensus's proposer of round r at this height and `max_round` the latest round the
    header may name (the round of the proposal or commit that carries it); `round_proposer` is None where the
    caller does not know the schedule (the VM: consensus checked the binding before asking it to validate).
    """

    chain_id: str
    height: int
    last_block_id: Hash32
    last_block_time: int  # the previous block's time; the genesis time at height 1
    validators: ValidatorSet  # the set that signs this height
    next_validators_hash: Hash32
    round_proposer: Callable[[int], Address] | None = None
    max_round: int = Round.MAX


def validate_header(header: Header, rules: HeaderRules) -> None:
    """Raises InvalidBlock (one line) unless `header` may be the header of block `rules.height`: our protocol
    version and chain, the next height on the last block, a time strictly after the previous block's (at every
    height, the first included), the validator-set hashes of this height and the next, and a proposer that is
    a validator; with a schedule, the proposer of the round the block was built in, no later than `max_round`.
    """
    h = int(header.height)
    if header.version != PROTOCOL_VERSION:
        raise InvalidBlock(f"block {h}: unknown protocol version {int(header.version)}")
    if header.chain_id != rules.chain_id:
        raise InvalidBlock(f"block {h}: for another chain")
    if h != rules.height:
        raise InvalidBlock(f"block {h}: expected height {rules.height}")
    if header.last_block_id != rules.last_block_id:
        raise InvalidBlock(f"block {h}: does not extend the last block")
    if header.time <= rules.last_block_time:
        raise InvalidBlock(f"block {h}: time {int(header.time)} is not after the previous block's "
                           f"{int(rules.last_block_time)}")
    if header.validators_hash != rules.validators.hash:
        raise InvalidBlock(f"block {h}: validators_hash is not the hash of this height's set")
    if header.next_validators_hash != rules.next_validators_hash:
        raise InvalidBlock(f"block {h}: next_validators_hash is not the hash of the next height's set")
    if header.proposer not in rules.validators:
        raise InvalidBlock(f"block {h}: proposer is not a validator of this height")
    if rules.round_proposer is not None:
        if header.round > rules.max_round:
            raise InvalidBlock(f"block {h}: built in round {int(header.round)}, after round {rules.max_round} that "
                               "carries it")
        if header.proposer != rules.round_proposer(int(header.round)):
            raise InvalidBlock(f"block {h}: header names {header.proposer.hex()[:16]}, not the proposer of its "
                               f"round {int(header.round)}")


def is_build_round_ok(built_round: int, proposal_round: int, pol_round: int) -> bool:
    """Whether a proposal of `proposal_round` may carry a block built in `built_round`: a fresh proposal (no
    POL round) carries one built in its own round; a re-proposal one built no later than its POL round (where
    the block got its polka, so it was proposed, and checked, in that round or earlier)."""
    return built_round == proposal_round if pol_round < 0 else built_round <= pol_round
