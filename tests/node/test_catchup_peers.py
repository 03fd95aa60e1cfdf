"""Consensus catch-up's peer choice: a peer whose round went unanswered (a silent link) is skipped for a
cool-down that doubles on each failure, is capped, and ends on an answer (node/catchup_peers.py)."""

from __future__ import annotations

import random

import pytest

from node.catchup_peers import BASE_COOLDOWN_S, MAX_COOLDOWN_S, CatchUpPeers

pytestmark = [pytest.mark.node]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[CatchUpPeers[str], FakeClock]:
    clock = FakeClock()
    return CatchUpPeers(clock, rng=random.Random(7)), clock


def test_an_unanswered_peer_is_not_chosen_while_it_cools_down() -> None:
    peers, clock = make()
    peers.record_unanswered("dead")
    chosen = {peers.choose(["dead", "a", "b"]) for _ in range(200)}
    assert chosen == {"a", "b"}
    clock.now += BASE_COOLDOWN_S
    assert "dead" in {peers.choose(["dead", "a", "b"]) for _ in range(200)}


def test_the_cool_down_doubles_on_each_failure_up_to_the_cap() -> None:
    peers, clock = make()
    lengths = []
    for _ in range(8):
        peers.record_unanswered("dead")
        lengths.append(peers.cooldown_left("dead"))
        clock.now += 1000.0
    expected = [min(MAX_COOLDOWN_S, BASE_COOLDOWN_S * 2**i) for i in range(8)]
    assert lengths == expected
    assert lengths[-1] == MAX_COOLDOWN_S


def test_an_answer_resets_the_cool_down() -> None:
    peers, _clock = make()
    for _ in range(4):
        peers.record_unanswered("p")
    assert peers.cooldown_left("p") == BASE_COOLDOWN_S * 8
    peers.record_answered("p")
    assert peers.cooldown_left("p") == 0.0
    peers.record_unanswered("p")
    assert peers.cooldown_left("p") == BASE_COOLDOWN_S


def test_when_all_cool_down_the_one_ending_first_is_asked() -> None:
    peers, clock = make()
    peers.record_unanswered("x")
    peers.record_unanswered("x")  # 4 s
    peers.record_unanswered("y")  # 2 s
    clock.now += 0.5
    peers.record_unanswered("z")  # 2 s, ends 0.5 s after y's
    assert {peers.choose(["x", "y", "z"]) for _ in range(50)} == {"y"}


def test_no_peers_gives_none_and_peers_that_left_are_forgotten() -> None:
    peers, _clock = make()
    assert peers.choose([]) is None
    peers.record_unanswered("gone")
    peers.record_unanswered("gone")
    assert peers.choose(["other"]) == "other"
    # It left the serving set (its link was dropped); back after a redial, it starts afresh.
    assert peers.cooldown_left("gone") == 0.0
