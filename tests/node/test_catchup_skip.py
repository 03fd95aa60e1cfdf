"""Consensus catch-up asks peers only when consensus stops moving by itself (docs/performance-cpu.md, "Fixed
costs"): a round of requests costs both hosts a stream per request, and a devnet making heights several
times a second had every node asking twice a second for votes it already had."""

from __future__ import annotations

import pytest
import trio

from consensus.state import ConsensusState
from core.types import Height
from core.validators import ValidatorSet
from node.sync import STILL_LOOKS, ConsensusCatchUp
from tests.consensus.test_commit_wait import BLOCK1_TIME, PARAMS, HeightTwo
from tests.p2p.helpers import CHAIN, running_nodes, wait_until
from tests.p2p.test_p2p_reqresp import serve

pytestmark = [pytest.mark.node]


class _Consensus:
    """Consensus before its first height (no vote queries; each catch-up round is one status exchange)
    whose height moves on at every look while `moving` is set."""

    def __init__(self) -> None:
        self.state = ConsensusState(CHAIN, None)
        self.moving = True
        self._height = 10**9

    @property
    def height(self) -> Height:
        if self.moving:
            self._height += 1
        return Height(self._height)

    async def on_votes_fetched(self, votes: object) -> None:
        raise AssertionError("no votes are asked for")

    async def on_commit_fetched(self, block: object, commit: object) -> None:
        raise AssertionError("no commit is asked for")


class _App:
    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators

    def validator_set(self, height: Height) -> ValidatorSet:
        return self._validators


class _Chain:
    def __init__(self, validators: ValidatorSet | None = None) -> None:
        self.height = Height(0)
        self.app = _App(validators) if validators is not None else None


class _HeightTwoDriver:
    def __init__(self, h: HeightTwo) -> None:
        self.state = h.state

    @property
    def height(self) -> Height:
        return self.state.height


@pytest.mark.trio
async def test_catch_up_asks_no_peer_while_consensus_moves_and_asks_once_it_stops() -> None:
    with trio.fail_after(60):
        async with running_nodes(2, seed="catchup-skip", configure=lambda i, s: serve(s)) as (client, peer), \
                trio.open_nursery() as nursery:
            await wait_until(lambda: peer.peer_id in client.peers_serving("votes"), within=30)
            consensus = _Consensus()
            catch_up = ConsensusCatchUp(client, consensus, _Chain(), interval_s=0.01)  # type: ignore[arg-type]
            nursery.start_soon(catch_up.run)
            await wait_until(lambda: catch_up.rounds_skipped >= 20, within=30, poll=0.005)
            assert catch_up.rounds_answered == catch_up.rounds_unanswered == 0
            consensus.moving = False  # stuck: the next look asks
            await wait_until(lambda: catch_up.rounds_answered >= 2, within=30, poll=0.005)
            nursery.cancel_scope.cancel()


def test_a_moving_consensus_still_asks_while_it_lacks_a_precommit_of_the_last_height() -> None:
    # Height 2 entered with 3 of height 1's 4 precommits: round 0 waits for the missing one (its PoI answer).
    h = HeightTwo(proposer=False, signers=3)
    h.enter(BLOCK1_TIME + 10)
    catch_up = ConsensusCatchUp(None, _HeightTwoDriver(h), _Chain(h.world.validators))  # type: ignore[arg-type]
    assert not catch_up.is_moving()  # a new height, but the last one's precommits are incomplete
    # With all 4 in and round 0 still waiting for the block delay, a new height is consensus moving by itself.
    full = HeightTwo(proposer=False, signers=4)
    full.enter(BLOCK1_TIME + 10)
    assert PARAMS.next_block_delay_ms > 10  # round 0 not started yet
    assert any(int(q.height) == 1 for q in full.state.catch_up_queries())  # it still lists height 1's set
    catch_up = ConsensusCatchUp(None, _HeightTwoDriver(full), _Chain(full.world.validators))  # type: ignore[arg-type]
    assert all(catch_up.is_moving() for _ in range(STILL_LOOKS))  # a change, then looks without one
    assert not catch_up.is_moving()  # nothing changed for STILL_LOOKS looks: it asks
