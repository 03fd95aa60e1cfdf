"""Votes of one (height, round, type): power tallies, conflicts, catch-up bitsets.

Tallies follow the paper's message counting: the power behind block id B counts every validator with a
vote for B once, so an equivocator's two votes count toward two ids (quorum intersection keeps this safe
below a third Byzantine), while "2f+1 of any" counts each validator once. This matters for liveness: if
one honest node locks on a polka that includes one twin of an equivocator's vote, the others must be able
to see that polka too, so the twin has to be countable wherever it arrives (via evidence or catch-up).
"""

from __future__ import annotations

import enum

from core.types import Address, Hash32
from core.validators import ValidatorSet
from core.votes import Vote

# Distinct block ids tallied per validator and set; more twins are refused (bounds a flooding equivocator).
MAX_TWINS = 4


class Added(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # a vote for an id this validator already voted for
    CONFLICT = "conflict"  # a vote for another id than this validator's earlier vote: equivocation
    REFUSED = "refused"  # too many twins


class VoteSet:
    __slots__ = ("by_block", "power", "twins", "validators", "votes")

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self.votes: dict[Address, Vote] = {}  # the first vote of each validator
        self.twins: dict[Address, list[Vote]] = {}  # its later votes for other ids (equivocation)
        self.by_block: dict[Hash32 | None, int] = {}
        self.power = 0

    def add(self, vote: Vote, address: Address, power: int) -> tuple[Added, Vote | None]:
        """Add a vote already checked for membership and signature; on conflict returns the first vote."""
        held = self.votes.get(address)
        if held is None:
            self.votes[address] = vote
            self.by_block[vote.block_id] = self.by_block.get(vote.block_id, 0) + power
            self.power += power
            return Added.NEW, None
        if held.block_id == vote.block_id:
            return Added.DUPLICATE, None
        twins = self.twins.setdefault(address, [])
        if any(t.block_id == vote.block_id for t in twins):
            return Added.DUPLICATE, held
        if len(twins) >= MAX_TWINS:
            return Added.REFUSED, held
        twins.append(vote)
        self.by_block[vote.block_id] = self.by_block.get(vote.block_id, 0) + power
        return Added.CONFLICT, held

    def vote_for(self, address: Address, block_id: Hash32 | None) -> Vote | None:
        held = self.votes.get(address)
        if held is not None and held.block_id == block_id:
            return held
        return next((t for t in self.twins.get(address, ()) if t.block_id == block_id), None)

    def has_quorum_any(self) -> bool:
        return self.power >= self.validators.quorum()

    def has_quorum_for(self, block_id: Hash32 | None) -> bool:
        return self.by_block.get(block_id, 0) >= self.validators.quorum()

    def quorum_blocks(self) -> list[Hash32 | None]:
        """Ids (None: nil) with more than two thirds of the power (two only with a third Byzantine)."""
        q = self.validators.quorum()
        return [b for b, p in self.by_block.items() if p >= q]

    def bits(self) -> bytes:
        out = bytearray((len(self.validators) + 7) // 8)
        for address in self.votes:
            i = self.validators.index_of(address)
            if i is not None:
                out[i // 8] |= 1 << (i % 8)
        return bytes(out)

    def missing_from(self, have: bytes) -> tuple[Vote, ...]:
        """For a peer's query: votes whose validator's bit is unset, plus the votes behind any +2/3
        majority for a block held here (the peer may hold their twins instead; CometBFT's VoteSetMaj23)."""
        out: list[Vote] = []
        for address, vote in self.votes.items():
            i = self.validators.index_of(address)
            if i is None:
                continue
            byte = i // 8
            if not (byte < len(have) and have[byte] >> (i % 8) & 1):
                out.append(vote)
        sent = {v.validator for v in out}
        for block_id in self.quorum_blocks():
            if block_id is None:
                continue
            for address in self.votes:
                v = self.vote_for(address, block_id)
                if v is not None and v.validator not in sent:
                    out.append(v)
        return tuple(out)

    def commit_votes(self, block_id: Hash32) -> tuple[Vote, ...]:
        """One precommit per validator, in address order, preferring its vote for `block_id`."""
        out = []
        for address in sorted(self.votes):
            v = self.vote_for(address, block_id)
            out.append(v if v is not None else self.votes[address])
        return tuple(out)
