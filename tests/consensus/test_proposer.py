"""Weighted round robin (CometBFT's proposer priority): fairness, determinism, set changes."""

from __future__ import annotations

from collections import Counter

import pytest

from consensus.proposer import ProposerPriorities
from core.keys import PrivateKey
from core.validators import ValidatorEntry, ValidatorSet

pytestmark = pytest.mark.consensus


def vset(powers: list[int], offset: int = 0) -> ValidatorSet:
    return ValidatorSet([ValidatorEntry(PrivateKey.derive("t", "v", i + offset).public_key, p)
                         for i, p in enumerate(powers)])


def test_each_validator_proposes_in_proportion_to_its_power() -> None:
    vs = vset([1, 2, 3, 4])
    picks = Counter(ProposerPriorities.genesis(vs).proposers(1000))
    by_power = {e.address: e.power for e in vs}
    for address, count in picks.items():
        assert count == 100 * by_power[address]


def test_proposer_sequence_across_heights_is_fair_and_round_jumps_match_walking() -> None:
    vs = vset([5, 1, 1, 3])
    state = ProposerPriorities.genesis(vs)
    seen: Counter[bytes] = Counter()
    for _ in range(100):
        seen[state.proposer(0)] += 1
        walked = state.proposers(4)
        assert [state.proposer(r) for r in range(4)] == walked
        state = state.advance(vs)
    assert seen == Counter({e.address: 10 * e.power for e in vs})


def test_equal_powers_rotate() -> None:
    vs = vset([1, 1, 1, 1])
    state = ProposerPriorities.genesis(vs)
    firsts = []
    for _ in range(8):
        firsts.append(state.proposer(0))
        state = state.advance(vs)
    assert firsts[:4] == firsts[4:] and len(set(firsts[:4])) == 4


def test_newcomer_starts_behind_and_removed_validator_disappears() -> None:
    vs = vset([3, 3, 3])
    state = ProposerPriorities.genesis(vs).advance(vs).advance(vs)
    bigger = ValidatorSet([*vs.entries[1:], *vset([3], offset=10).entries])
    nxt = state.advance(bigger)
    newcomer = vset([3], offset=10).entries[0].address
    assert vs.entries[0].address not in [e.address for e in nxt.validators]
    assert min(nxt.priorities) == nxt.priorities[[e.address for e in nxt.validators].index(newcomer)]
    assert nxt.proposer(0) != newcomer


def test_priorities_round_trip_on_the_wire() -> None:
    state = ProposerPriorities.genesis(vset([7, 2, 9])).advance(vset([7, 2, 9]))
    assert ProposerPriorities.decode(state.encode()) == state


def test_priorities_stay_bounded_with_extreme_powers() -> None:
    vs = vset([1, 10**15, 3])
    state = ProposerPriorities.genesis(vs)
    for _ in range(50):
        state = state.advance(vs)
        assert max(state.priorities) - min(state.priorities) <= 2 * vs.total_power
