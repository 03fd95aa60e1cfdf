"""The Application Protocol: the only way consensus (through the node) talks to the VM.

Consensus never imports the VM: the node passes an object satisfying `Application` to the consensus driver.
Calls happen on the node's consensus path, in this order for each height h:

1. `poi_commitment(h, me)` as soon as block h-1 is committed (the signer puts it in every precommit of h);
2. `build_block(template, txs)` when this node proposes; `validate_block(block)` before prevoting on a
   proposal (re-execution; the verdict decides prevote-for-block vs prevote-nil);
3. `finalize_block(block, batch)` once a commit for the block is seen: applies it without running any
   model and stages every state write into the caller's write batch, which the node commits together
   with the block and its commit (one atomic batch, docs/design.md §6).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.block import Block
from core.evidence import Evidence
from core.tx import Transaction
from core.types import Address, Hash32, Height, Round, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import Commit

if TYPE_CHECKING:
    from core.store import WriteBatch


class VerdictKind(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # the block is wrong: prevote nil; `bad_txs` names the transactions at fault
    LOCAL_FAULT = "local_fault"  # this node cannot judge (worker crash, quarantined model): prevote nil, alarm


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    bad_txs: tuple[int, ...] = ()
    reason: str = ""
    # Indices (a subset of bad_txs) whose `exact` inference output is provably wrong: consensus turns each
    # into WrongInference evidence against the proposer (docs/design.md §2.6).
    wrong_outputs: tuple[int, ...] = ()

    @classmethod
    def valid(cls) -> Verdict:
        return cls(VerdictKind.VALID)

    @classmethod
    def invalid(cls, reason: str, bad_txs: Sequence[int] = (), wrong_outputs: Sequence[int] = ()) -> Verdict:
        return cls(VerdictKind.INVALID, tuple(bad_txs), reason, tuple(wrong_outputs))

    @classmethod
    def local_fault(cls, reason: str) -> Verdict:
        return cls(VerdictKind.LOCAL_FAULT, (), reason)

    @property
    def is_valid(self) -> bool:
        return self.kind is VerdictKind.VALID


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    """What consensus fixes about a block before the application fills it."""

    chain_id: str
    height: Height
    round: Round
    time: Timestamp
    proposer: Address
    last_block_id: Hash32
    last_commit: Commit | None
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class AppInfo:
    """The application's committed position, for the start-up handshake with the block store."""

    chain_id: str
    last_height: Height  # 0 before the first block
    last_block_id: Hash32  # ZERO_HASH before the first block
    last_block_time: Timestamp  # genesis time before the first block
    state_root: Hash32


@dataclass(frozen=True, slots=True)
class FinalizeOutcome:
    height: Height
    state_root: Hash32
    # Changes to the validator set, effective at height + 2 (power 0 removes a validator).
    validator_updates: tuple[ValidatorEntry, ...]
    # Evidence the application accepted and punished in this block.
    punished: tuple[Evidence, ...] = ()


class Application(Protocol):
    def info(self) -> AppInfo: ...

    def validator_set(self, height: Height) -> ValidatorSet:
        """The set that signs block `height`; known up to the last committed height + 2."""
        ...

    def build_block(self, template: BlockTemplate, txs: Sequence[Transaction]) -> Block:
        """Pick transactions, run inferences and registrations, fill results, PoI reveal and roots."""
        ...

    def build_faults(self, block: Block) -> tuple[Hash32, ...]:
        """Transactions `build_block` left out of `block` because their work met a local fault on this node;
        the node backs them off in its mempool (asked once per built block)."""
        ...

    def validate_block(self, block: Block) -> Verdict:
        """Re-execute a proposed block and judge it; never raises for a bad block."""
        ...

    def finalize_block(self, block: Block, batch: WriteBatch) -> FinalizeOutcome:
        """Apply a committed block (no model runs) and stage all its state writes into `batch`."""
        ...

    def poi_commitment(self, height: Height, validator: Address) -> Hash32 | None:
        """H(challenge output ‖ validator ‖ height) for `height`, or None if this node cannot answer."""
        ...

    def is_valid_evidence(self, evidence: Evidence) -> bool:
        """True when application-level evidence (a wrong exact inference) proves misbehaviour."""
        ...
