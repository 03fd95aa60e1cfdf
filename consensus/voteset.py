"""Votes of one (height, round, type): power tallies, first-vote-wins, conflicts, catch-up bitsets."""

from __future__ import annotations

import enum

from core.evidence import DuplicateVote
from core.types import Address, Hash32
from core.validators import ValidatorSet
from core.votes import Vote


class Added(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the same vote again
    CONFLICT = "conflict"  # a second, different vote of the same validator: equivocation


def duplicate_vote(a: Vote, b: Vote) -> DuplicateVote:
    """Evidence in canonical order (by encoding), so one offence has one evidence hash."""
    ea, eb = a.encode(), b.encode()
    return DuplicateVote(a, b) if ea < eb else DuplicateVote(b, a)


class VoteSet:
    """Counts the first vote of each validator; a later different vote is reported, never counted."""

    __slots__ = ("by_block", "power", "validators", "votes")

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self.votes: dict[Address, Vote] = {}
        self.by_block: dict[Hash32 | None, int] = {}
        self.power = 0

    def add(self, vote: Vote, address: Address, power: int) -> tuple[Added, Vote | None]:
        """Add a vote already checked for membership and signature; on conflict returns the held vote."""
        held = self.votes.get(address)
        if held is not None:
            if held == vote:
                return Added.DUPLICATE, None
            if held.block_id == vote.block_id:
                return Added.DUPLICATE, None  # same choice, other bytes (timestamp): not an equivocation
            return Added.CONFLICT, held
        self.votes[address] = vote
        self.by_block[vote.block_id] = self.by_block.get(vote.block_id, 0) + power
        self.power += power
        return Added.NEW, None

    def has_quorum_any(self) -> bool:
        return self.power >= self.validators.quorum()

    def has_quorum_for(self, block_id: Hash32 | None) -> bool:
        return self.by_block.get(block_id, 0) >= self.validators.quorum()

    def quorum_block(self) -> tuple[bool, Hash32 | None]:
        """(True, id) when some block id (or None: nil) holds more than two thirds of the power."""
        q = self.validators.quorum()
        for block_id, power in self.by_block.items():
            if power >= q:
                return True, block_id
        return False, None

    def bits(self) -> bytes:
        out = bytearray((len(self.validators) + 7) // 8)
        for address in self.votes:
            i = self.validators.index_of(address)
            if i is not None:
                out[i // 8] |= 1 << (i % 8)
        return bytes(out)

    def missing_from(self, have: bytes) -> tuple[Vote, ...]:
        """Held votes whose validator's bit is not set in `have`."""
        out = []
        for address, vote in self.votes.items():
            i = self.validators.index_of(address)
            if i is None:
                continue
            byte = i // 8
            if byte < len(have) and have[byte] >> (i % 8) & 1:
                continue
            out.append(vote)
        return tuple(out)

    def sorted_votes(self) -> tuple[Vote, ...]:
        """In validator address order: a commit built from this set is the same bytes on every node."""
        return tuple(self.votes[a] for a in sorted(self.votes))
