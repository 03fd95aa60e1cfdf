"""Outputs of the consensus state machine: what the driver must do, in the order given.

Actions are plain values (never persisted: the WAL holds inputs, and replay recomputes actions).
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.params import Step
from consensus.proposer import ProposerPriorities
from core.app import BlockTemplate
from core.block import Block, ProposalBlock
from core.evidence import Evidence
from core.types import Height, Round
from core.votes import Commit, Vote


@dataclass(frozen=True, slots=True)
class BuildBlock:
    """This node proposes: `Application.build_block(template, mempool txs)`, then feed BlockBuilt."""

    template: BlockTemplate


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Re-execute a proposed block: `Application.validate_block(block)`, then feed BlockValidated."""

    block: Block


@dataclass(frozen=True, slots=True)
class Sign:
    """Sign an unsigned vote or proposal (zero signature) with the Signer, which adds the PoI commitment to
    precommits and enforces the double-sign guard; WAL-append the signed result with fsync, then feed it
    back as VoteReceived / ProposalReceived. A DoubleSignError means: drop it and raise an alarm."""

    message: Vote | ProposalBlock


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Gossip this node's own signed vote or proposal (emitted when the machine handles it)."""

    message: Vote | ProposalBlock


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """After `duration_ms`, feed TimeoutFired(height, round, step). Never cancel: stale ones are ignored."""

    height: Height
    round: Round
    step: Step
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Decided. Store block, commit and `next_proposers` and finalize with the application in one atomic
    batch (skip if this height is already stored), then feed NewHeight(height+1)."""

    block: Block
    commit: Commit
    next_proposers: ProposerPriorities


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """New verified evidence: store it as pending and gossip it."""

    evidence: Evidence


@dataclass(frozen=True, slots=True)
class RaiseAlarm:
    """Something an operator must see (local fault, a committed block this node judged invalid, ...)."""

    reason: str


Action = (BuildBlock | ValidateBlock | Sign | Broadcast | ScheduleTimeout | CommitBlock | ReportEvidence
          | RaiseAlarm)
