"""The validator's signer with the double-sign guard (docs/design.md §4.6).

Height/round/step (HRS) only ever move forward. Before a signed message leaves the signer it is persisted,
atomically and durably, together with its HRS. Asked again for the same HRS, whatever the new request's
bytes, the signer returns the stored message; asked for a lower HRS it refuses. So a crash at any point,
followed by any replay, can never produce two different signatures for one HRS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Protocol

from consensus.params import Step
from core.block import ProposalBlock
from core.codec import MaxLen, Wire, wire
from core.errors import DecodeError, DoubleSignError, StorageError
from core.fsio import write_atomic
from core.keys import PrivateKey
from core.limits import MAX_PROPOSAL_MESSAGE_BYTES
from core.types import Address, Hash32, Height, Round
from core.votes import Vote, VoteType

PoiSource = Callable[[Height, Address], Hash32 | None]


@wire(max_bytes=MAX_PROPOSAL_MESSAGE_BYTES + 64)
class SignRecord(Wire):
    """The last signed message and its HRS: a ProposalBlock (step PROPOSE) or a Vote (PREVOTE/PRECOMMIT)."""

    height: Height
    round: Round
    step: Step
    signed: Annotated[bytes, MaxLen(MAX_PROPOSAL_MESSAGE_BYTES)]

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (int(self.height), int(self.round), int(self.step))

    def message(self) -> Vote | ProposalBlock:
        return ProposalBlock.decode(self.signed) if self.step == Step.PROPOSE else Vote.decode(self.signed)


class SignState(Protocol):
    """Where the last SignRecord lives; `save` must be atomic and durable before it returns."""

    def load(self) -> SignRecord | None: ...

    def save(self, record: SignRecord) -> None: ...


class MemorySignState:
    """For the simulator: survives a simulated crash because the test keeps the object."""

    def __init__(self) -> None:
        self.record: SignRecord | None = None
        self.saves = 0

    def load(self) -> SignRecord | None:
        return self.record

    def save(self, record: SignRecord) -> None:
        self.record = record
        self.saves += 1


class FileSignState:
    """One file, replaced atomically: write a temp file, fsync it, rename over, fsync the directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def load(self) -> SignRecord | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read sign state {self.path}: {exc}") from exc
        try:
            return SignRecord.decode(data)
        except DecodeError as exc:
            raise StorageError(f"sign state {self.path} is corrupt: {exc}") from exc

    def save(self, record: SignRecord) -> None:
        try:
            write_atomic(self.path, record.encode(), mode=0o600)
        except OSError as exc:
            raise StorageError(f"cannot write sign state {self.path}: {exc}") from exc


def _vote_step(vote: Vote) -> Step:
    return Step.PREVOTE if vote.type == VoteType.PREVOTE else Step.PRECOMMIT


class Signer:
    """Signs this validator's votes and proposals, never twice for one height/round/step."""

    def __init__(self, key: PrivateKey, chain_id: str, state: SignState, poi: PoiSource) -> None:
        self._key = key
        self._chain_id = chain_id
        self._state = state
        self._poi = poi
        self._last = state.load()

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.public_key)

    @property
    def last(self) -> SignRecord | None:
        return self._last

    def sign(self, message: Vote | ProposalBlock) -> Vote | ProposalBlock:
        if isinstance(message, Vote):
            return self.sign_vote(message)
        return self.sign_proposal(message)

    def sign_vote(self, vote: Vote) -> Vote:
        """Sign a prevote or precommit (adding the PoI commitment to a precommit). Raises DoubleSignError."""
        if vote.validator != self._key.public_key:
            raise DoubleSignError("asked to sign a vote of another validator")
        hrs = (int(vote.height), int(vote.round), int(_vote_step(vote)))
        stored = self._check(hrs)
        if stored is not None:
            if not isinstance(stored, Vote):
                raise DoubleSignError("stored message at this height/round/step is not a vote")
            return stored
        if vote.type == VoteType.PRECOMMIT:
            vote = vote.replace(poi=self._poi(vote.height, self._key.address))
        else:
            vote = vote.replace(poi=None)
        signed = vote.signed(self._key, self._chain_id)
        self._persist(SignRecord(vote.height, vote.round, _vote_step(vote), signed.encode()))
        return signed

    def sign_proposal(self, proposal_block: ProposalBlock) -> ProposalBlock:
        """Sign a proposal; the record keeps its block, so a re-request returns the very same block."""
        proposal = proposal_block.proposal
        if proposal.proposer != self._key.public_key:
            raise DoubleSignError("asked to sign a proposal of another validator")
        hrs = (int(proposal.height), int(proposal.round), int(Step.PROPOSE))
        stored = self._check(hrs)
        if stored is not None:
            if not isinstance(stored, ProposalBlock):
                raise DoubleSignError("stored message at this height/round/step is not a proposal")
            return stored
        signed = ProposalBlock(proposal.signed(self._key, self._chain_id), proposal_block.block)
        self._persist(SignRecord(proposal.height, proposal.round, Step.PROPOSE, signed.encode()))
        return signed

    def _check(self, hrs: tuple[int, int, int]) -> Vote | ProposalBlock | None:
        last = self._last
        if last is None or hrs > last.hrs:
            return None
        if hrs == last.hrs:
            return last.message()
        raise DoubleSignError(f"refusing to sign at height/round/step {hrs}: already signed at {last.hrs}")

    def _persist(self, record: SignRecord) -> None:
        self._state.save(record)
        self._last = record
