"""Consensus catch-up's peer choice: a peer whose round went unanswered (a silent link) is skipped for a
cool-down that doubles on each failure, is capped, and ends on an answer (node/catchup_peers.py)."""

from __future__ import annotations

import random

import pytest
import trio

from consensus.state import ConsensusState
from core.types import Height
from node.catchup_peers import BASE_COOLDOWN_S, MAX_COOLDOWN_S, CatchUpPeers
from node.sync import ConsensusCatchUp
from tests.p2p.helpers import CHAIN, wait_until
from tests.p2p.silent_link import far_peer_behind_proxy

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


class _FarAhead:
    """Consensus before its first height (no vote queries) at a height no peer reached: each catch-up round
    is one status exchange, answered or not, and feeds nothing."""

    def __init__(self) -> None:
        self.state = ConsensusState(CHAIN, None)
        self.height = Height(10**9)

    async def on_votes_fetched(self, votes: object) -> None:
        raise AssertionError("no votes are asked for")

    async def on_commit_fetched(self, block: object, commit: object) -> None:
        raise AssertionError("no commit is asked for")


class _NoChain:
    height = Height(0)


@pytest.mark.trio
async def test_catch_up_keeps_asking_the_live_peer_after_one_went_silent() -> None:
    # Real hosts: `good` answers; `far` is reached through a proxy that goes silent (no reset).
    with trio.fail_after(90):
        async with far_peer_behind_proxy("catchup") as (client, good, far, proxy), \
                trio.open_nursery() as nursery:
            await wait_until(lambda: {good.peer_id, far.peer_id} <= set(client.peers_serving("votes")), within=30)
            await client.reqresp.status(far.peer_id)  # the link works
            proxy.cut()

            catch_up = ConsensusCatchUp(client, _FarAhead(), _NoChain(), interval_s=0.02)  # type: ignore[arg-type]
            # A cool-down longer than the test, so a loaded machine's slow rounds cannot let it end mid-test.
            catch_up.peer_choice = CatchUpPeers(trio.current_time, base_s=600.0, max_s=600.0)
            nursery.start_soon(catch_up.run)
            await wait_until(lambda: catch_up.rounds_unanswered >= 1, within=30, poll=0.005)
            assert catch_up.peer_choice.cooldown_left(far.peer_id) > 0
            # While `far` cools down every round goes to `good`.
            # Without the cool-down each round picks `far` with odds 1/2, and a pick blocks for 2 s and counts
            # as unanswered: 8 rounds in a row without one is 1 in 256.
            answered, unanswered = catch_up.rounds_answered, catch_up.rounds_unanswered
            await wait_until(lambda: catch_up.rounds_answered >= answered + 8, within=30, poll=0.005)
            assert catch_up.rounds_unanswered == unanswered
            nursery.cancel_scope.cancel()
