"""Proposer selection by weighted round robin: CometBFT's proposer priority.

Each step adds every validator's power to its priority, picks the highest (ties: lower address) and takes
the total power off the pick; before each step priorities are rescaled into a window of twice the total
power and centred on zero. Over `total` steps each validator proposes in proportion to its power.

`ProposerPriorities` is the state *before* a height's own step. The proposer of round r is the pick of step
r+1 from there (one step at a time, so a jump over rounds picks the same proposer as walking them), and
`advance` gives the next height's state. Every node computes the same sequence from the same validator sets;
the driver stores the next state with each committed block so a restarted node resumes it.
"""

from __future__ import annotations

from typing import Annotated

from core.codec import I64, MaxLen, Wire, wire
from core.limits import MAX_VALIDATORS
from core.types import Address
from core.validators import ValidatorEntry, ValidatorSet

WINDOW_FACTOR = 2


def _div_trunc(a: int, b: int) -> int:
    """Integer division rounding toward zero, as Go's int64 division does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _rescale_and_centre(prios: list[int], total: int) -> None:
    window = WINDOW_FACTOR * total
    diff = max(prios) - min(prios)
    if diff > window:
        ratio = (diff + window - 1) // window
        for i, p in enumerate(prios):
            prios[i] = _div_trunc(p, ratio)
    avg = sum(prios) // len(prios)
    for i in range(len(prios)):
        prios[i] -= avg


def _step(entries: tuple[ValidatorEntry, ...], addresses: tuple[Address, ...], prios: list[int],
          total: int) -> int:
    """One weighted-round-robin step in place; returns the index picked."""
    _rescale_and_centre(prios, total)
    best = -1
    for i, e in enumerate(entries):
        prios[i] += e.power
        if best < 0 or prios[i] > prios[best] or (prios[i] == prios[best] and addresses[i] < addresses[best]):
            best = i
    prios[best] -= total
    return best


@wire(max_bytes=64 * MAX_VALIDATORS + 10 * MAX_VALIDATORS + 32)
class ProposerPriorities(Wire):
    """A height's validators (address order) with their priorities before the height's own step."""

    validators: Annotated[tuple[ValidatorEntry, ...], MaxLen(MAX_VALIDATORS)]
    priorities: Annotated[tuple[I64, ...], MaxLen(MAX_VALIDATORS)]

    def validate_wire(self) -> None:
        if len(self.validators) != len(self.priorities):
            raise ValueError("one priority per validator")
        ValidatorSet(self.validators)  # raises ValueError on an empty, unordered or duplicate set
        if ValidatorSet(self.validators).entries != self.validators:
            raise ValueError("validators not in address order")

    @classmethod
    def genesis(cls, validators: ValidatorSet) -> ProposerPriorities:
        return cls(validators.entries, tuple(0 for _ in validators.entries))

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(self.validators)

    def proposers(self, rounds: int, addresses: tuple[Address, ...] | None = None) -> list[Address]:
        """Proposers of rounds 0 .. rounds-1 (`addresses`: the validators' addresses, if already known)."""
        entries = self.validators
        addresses = addresses or tuple(e.address for e in entries)
        total = sum(e.power for e in entries)
        prios = list(self.priorities)
        return [addresses[_step(entries, addresses, prios, total)] for _ in range(rounds)]

    def proposer(self, round_: int) -> Address:
        return self.proposers(round_ + 1)[-1]

    def advance(self, next_validators: ValidatorSet) -> ProposerPriorities:
        """The state of the next height: this height's step, then the set change (new ones start last)."""
        entries = self.validators
        addresses = tuple(e.address for e in entries)
        prios = list(self.priorities)
        _step(entries, addresses, prios, sum(e.power for e in entries))
        carried = dict(zip(addresses, prios, strict=True))
        total = next_validators.total_power
        newcomer = -(total + (total >> 3))
        nxt = [carried.get(e.address, newcomer) for e in next_validators.entries]
        _rescale_and_centre(nxt, total)
        return ProposerPriorities(next_validators.entries, tuple(nxt))
