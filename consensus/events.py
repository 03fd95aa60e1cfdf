"""Inputs of the consensus state machine.

Every event is a wire type: the driver appends it to the WAL *before* handling it, and replaying the WAL
feeds the same bytes back, so a restarted machine makes the same decisions. Time enters only here, as `now`
(milliseconds, the driver's clock when the input arrived); the machine never reads a clock.
"""

from __future__ import annotations

from typing import Annotated

from consensus.params import Step
from consensus.proposer import ProposerPriorities
from core.app import Verdict, VerdictKind
from core.block import Block, ProposalBlock
from core.codec import U8, U32, MaxLen, Wire, wire
from core.evidence import Evidence
from core.limits import MAX_BLOCK_BYTES, MAX_PROPOSAL_MESSAGE_BYTES, MAX_TX_BYTES, MAX_VALIDATORS
from core.types import Hash32, Height, Round, Timestamp
from core.validators import ValidatorEntry
from core.votes import Commit, Vote

_COMMIT_MAX = 600 * MAX_VALIDATORS + 128
_LIST_MAX = 64 * MAX_VALIDATORS + 16


@wire(max_bytes=3 * _LIST_MAX + 10 * MAX_VALIDATORS + _COMMIT_MAX + 512, tag=1)
class NewHeight(Wire):
    """Start height `height`: sent once at start-up and after each committed block is stored.

    `proposers` is the height's validator set with its proposer priorities (genesis:
    `ProposerPriorities.genesis(set(1))`, later the `next_proposers` of the previous CommitBlock, as stored).
    `next_validators` is the set of height+1 (to compute the next priorities at commit); `last_validators`
    the set of height-1 (to verify the last commit carried in proposals); `last_commit` the stored commit of
    height-1 (None at height 1).
    """

    now: Timestamp
    height: Height
    proposers: ProposerPriorities
    next_validators: Annotated[tuple[ValidatorEntry, ...], MaxLen(MAX_VALIDATORS)]
    last_validators: Annotated[tuple[ValidatorEntry, ...], MaxLen(MAX_VALIDATORS)]  # empty at height 1
    last_block_id: Hash32  # ZERO_HASH at height 1
    last_block_time: Timestamp  # genesis time at height 1
    last_commit: Commit | None


@wire(max_bytes=MAX_PROPOSAL_MESSAGE_BYTES + 32, tag=2)
class ProposalReceived(Wire):
    """A signed proposal with its block, from gossip or from this node's own signer."""

    now: Timestamp
    proposal_block: ProposalBlock


@wire(max_bytes=600, tag=3)
class VoteReceived(Wire):
    """A signed vote, from gossip or from this node's own signer."""

    now: Timestamp
    vote: Vote


@wire(max_bytes=600 * MAX_VALIDATORS + 64, tag=4)
class VotesFetched(Wire):
    """Votes a peer sent back to a catch-up query (docs/design.md §4.8)."""

    now: Timestamp
    votes: Annotated[tuple[Vote, ...], MaxLen(MAX_VALIDATORS)]


@wire(max_bytes=64, tag=5)
class TimeoutFired(Wire):
    """A ScheduleTimeout came due; stale ones (another height, round or step) are ignored."""

    now: Timestamp
    height: Height
    round: Round
    step: Step


@wire(max_bytes=MAX_BLOCK_BYTES + 64, tag=6)
class BlockBuilt(Wire):
    """The application's answer to BuildBlock for (height, round)."""

    now: Timestamp
    height: Height
    round: Round
    block: Block


_VERDICT_CODES = {VerdictKind.VALID: 0, VerdictKind.INVALID: 1, VerdictKind.LOCAL_FAULT: 2}
_VERDICT_KINDS = {v: k for k, v in _VERDICT_CODES.items()}


@wire(max_bytes=48 * 1024, tag=7)
class BlockValidated(Wire):
    """The application's answer to ValidateBlock; the verdict is spelled out as wire fields."""

    now: Timestamp
    block_id: Hash32
    kind: U8  # 0 valid, 1 invalid, 2 local fault
    bad_txs: Annotated[tuple[U32, ...], MaxLen(4096)]
    wrong_outputs: Annotated[tuple[U32, ...], MaxLen(4096)]
    reason: Annotated[str, MaxLen(512)]

    def validate_wire(self) -> None:
        if self.kind not in _VERDICT_KINDS:
            raise ValueError(f"unknown verdict kind {self.kind}")

    @classmethod
    def of(cls, now: int, block_id: Hash32, verdict: Verdict) -> BlockValidated:
        reason = verdict.reason.encode()[:512].decode("utf-8", "ignore")
        return cls(Timestamp(now), block_id, _VERDICT_CODES[verdict.kind], tuple(verdict.bad_txs)[:4096],
                   tuple(verdict.wrong_outputs)[:4096], reason)

    @property
    def verdict(self) -> Verdict:
        return Verdict(_VERDICT_KINDS[self.kind], tuple(self.bad_txs), self.reason, tuple(self.wrong_outputs))


@wire(max_bytes=MAX_TX_BYTES + 302 * 1024, tag=8)
class EvidenceReceived(Wire):
    """Evidence from gossip or from storage after a restart.

    For WrongInference the driver first asks `Application.is_valid_evidence` and feeds only what it confirmed;
    the machine checks signatures, structure and age of every kind.
    """

    now: Timestamp
    evidence: Evidence


@wire(max_bytes=MAX_BLOCK_BYTES + _COMMIT_MAX + 64, tag=9)
class CommitFetched(Wire):
    """A block of the current height with a commit for it, fetched from a peer that already committed it."""

    now: Timestamp
    block: Block
    commit: Commit


@wire(max_bytes=32, tag=10)
class Resume(Wire):
    """After WAL replay: re-issue what is outstanding (timeout, build, validation, signing, own messages)."""

    now: Timestamp


Event = (NewHeight | ProposalReceived | VoteReceived | VotesFetched | TimeoutFired | BlockBuilt
         | BlockValidated | EvidenceReceived | CommitFetched | Resume)


@wire(max_bytes=MAX_BLOCK_BYTES + _COMMIT_MAX + 1024)
class WalRecord(Wire):
    """One WAL entry: any event, tagged."""

    event: Event


def encode_event(event: Event) -> bytes:
    return WalRecord(event).encode()


def decode_event(data: bytes) -> Event:
    return WalRecord.decode(data).event
