"""After a commit: round 0 of the next height starts as soon as nothing is left to gather (issue 11).

The wait after a commit (`timeout_commit`) exists to gather the last height's late precommits, which carry the
PoI answers the proposer puts in its block's last commit. With every precommit in, only `next_block_delay`
since the last block's time remains; with one missing, the full timeout still applies, and the missing one
counts if it arrives during it. A validator that is not the proposer votes on a round-0 proposal at once.
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.actions import Action, BuildBlock, ScheduleTimeout, ValidateBlock
from consensus.events import NewHeight, ProposalReceived, TimeoutFired, VoteReceived
from consensus.params import Step
from consensus.proposer import ProposerPriorities
from consensus.state import ConsensusState
from core.app import BlockTemplate
from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Height, Round, Timestamp
from core.votes import Commit, Vote, VoteType
from tests.consensus.sim.app import StandInApp, honest_poi
from tests.consensus.sim.cluster import CHAIN_ID, GENESIS_TIME, SIM_PARAMS
from tests.consensus.test_state import World, make_world, signed_proposal, signed_vote

pytestmark = pytest.mark.consensus

PARAMS = dataclasses.replace(SIM_PARAMS, timeout_commit_ms=1000, next_block_delay_ms=300)
BLOCK1 = sha256(b"block 1")
BLOCK1_TIME = GENESIS_TIME + 500


class HeightTwo:
    """A machine entering height 2 with the precommits of height 1 that `signers` sent (a restart reads them
    from the stored commit; a running node carries its own vote set over: both reach the same code)."""

    def __init__(self, *, proposer: bool, signers: int) -> None:
        self.world: World = make_world([1, 1, 1, 1])
        vs = self.world.validators
        self.prio = ProposerPriorities.genesis(vs).advance(vs)
        proposer_key = self.world.key_of(self.prio.proposer(0))
        self.proposer_key = proposer_key
        self.me = proposer_key if proposer else self.world.others(proposer_key)[0]
        # Everyone but `me` may be the missing one; `me` always has its own precommit.
        order = [self.me, *self.world.others(self.me)]
        self.precommits = [signed_vote(k, VoteType.PRECOMMIT, 1, 0, BLOCK1) for k in order]
        self.held = sorted(self.precommits[:signers], key=lambda v: v.validator_address)
        self.state = ConsensusState(CHAIN_ID, self.me.public_key, PARAMS)

    def enter(self, now: int) -> list[Action]:
        vs = self.world.validators
        commit = Commit(Height(1), Round(0), BLOCK1, tuple(self.held))
        return self.state.handle(NewHeight(Timestamp(now), Height(2), self.prio, vs.entries, vs.entries, BLOCK1,
                                           Timestamp(BLOCK1_TIME), commit))

    def late(self, vote: Vote, now: int) -> list[Action]:
        return self.state.handle(VoteReceived(Timestamp(now), vote))


def builds(actions: list[Action]) -> list[BlockTemplate]:
    return [a.template for a in actions if isinstance(a, BuildBlock)]


def commit_waits(actions: list[Action]) -> list[int]:
    return [a.duration_ms for a in actions if isinstance(a, ScheduleTimeout) and a.step == Step.COMMIT]


def test_with_every_precommit_in_the_proposer_builds_at_once() -> None:
    h = HeightTwo(proposer=True, signers=4)
    out = h.enter(BLOCK1_TIME + PARAMS.next_block_delay_ms + 40)  # consensus took longer than the delay
    assert commit_waits(out) == []
    [template] = builds(out)
    assert template.last_commit is not None and len(template.last_commit.precommits) == 4
    assert h.state.round == 0 and h.state.step == Step.PROPOSE


def test_with_every_precommit_in_only_the_rest_of_the_block_delay_is_waited() -> None:
    h = HeightTwo(proposer=True, signers=4)
    out = h.enter(BLOCK1_TIME + 100)
    assert builds(out) == []
    assert commit_waits(out) == [PARAMS.next_block_delay_ms - 100]
    out = h.state.handle(TimeoutFired(Timestamp(BLOCK1_TIME + 300), Height(2), Round(0), Step.COMMIT))
    assert len(builds(out)) == 1


def test_the_block_delay_never_waits_longer_than_timeout_commit() -> None:
    h = HeightTwo(proposer=True, signers=4)
    h.state.params = dataclasses.replace(PARAMS, next_block_delay_ms=5000)
    assert commit_waits(h.enter(BLOCK1_TIME + 1)) == [PARAMS.timeout_commit_ms]


def test_with_one_precommit_missing_the_full_timeout_applies() -> None:
    h = HeightTwo(proposer=True, signers=3)
    out = h.enter(BLOCK1_TIME + PARAMS.next_block_delay_ms + 40)
    assert builds(out) == []
    assert commit_waits(out) == [PARAMS.timeout_commit_ms]
    # Nothing else arrives: round 0 starts when the timeout fires, with the three it holds.
    out = h.state.handle(TimeoutFired(Timestamp(BLOCK1_TIME + 2000), Height(2), Round(0), Step.COMMIT))
    [template] = builds(out)
    assert template.last_commit is not None and len(template.last_commit.precommits) == 3


def test_the_missing_precommit_arriving_during_the_wait_counts_and_ends_it() -> None:
    """A slow validator's precommit that comes after the commit is in the next block's last commit (its PoI
    answer is scored, it is not a miss), and the proposer then builds without waiting out the timeout."""
    h = HeightTwo(proposer=True, signers=3)
    now = BLOCK1_TIME + PARAMS.next_block_delay_ms + 40
    h.enter(now)
    slow = h.precommits[3]
    out = h.late(slow, now + 200)
    [template] = builds(out)
    assert template.last_commit is not None
    assert slow in template.last_commit.precommits
    assert {v.validator_address for v in template.last_commit.precommits} == {k.address for k in h.world.keys}
    assert slow.poi == honest_poi(1, slow.validator_address)
    # The stale timeout changes nothing.
    assert h.state.handle(TimeoutFired(Timestamp(now + 1000), Height(2), Round(0), Step.COMMIT)) == []


def test_the_missing_precommit_arriving_early_waits_only_for_the_block_delay() -> None:
    h = HeightTwo(proposer=True, signers=3)
    h.enter(BLOCK1_TIME + 50)
    out = h.late(h.precommits[3], BLOCK1_TIME + 120)
    assert builds(out) == []
    assert commit_waits(out) == [PARAMS.next_block_delay_ms - 120]


def test_a_duplicate_or_foreign_late_vote_does_not_end_the_wait() -> None:
    h = HeightTwo(proposer=True, signers=3)
    now = BLOCK1_TIME + 1000
    h.enter(now - 500)
    assert h.late(h.held[0], now) == []  # a precommit it already holds
    stranger = PrivateKey.derive("t", "stranger", 0)
    assert h.late(signed_vote(stranger, VoteType.PRECOMMIT, 1, 0, BLOCK1), now) == []
    assert builds(h.late(signed_vote(h.world.keys[0], VoteType.PREVOTE, 1, 0, BLOCK1), now)) == []
    assert h.state.step == Step.COMMIT  # round 0 has not started


def test_a_validator_that_is_not_the_proposer_votes_on_a_round_zero_proposal_at_once() -> None:
    """Only the proposer gathers late precommits; a validator still waiting for one starts round 0 (and
    validates, then prevotes) when the proposal comes instead of after its own timeout."""
    h = HeightTwo(proposer=False, signers=3)
    now = BLOCK1_TIME + 400
    out = h.enter(now)
    assert commit_waits(out) == [PARAMS.timeout_commit_ms]
    vs = h.world.validators
    app = StandInApp(CHAIN_ID, vs, GENESIS_TIME)
    last_commit = Commit(Height(1), Round(0), BLOCK1, tuple(sorted(
        h.precommits, key=lambda v: v.validator_address)))
    block = app.build_block(BlockTemplate(CHAIN_ID, Height(2), Round(0), Timestamp(now), h.proposer_key.address,
                                          BLOCK1, last_commit, ()), ())
    out = h.state.handle(ProposalReceived(Timestamp(now + 10), signed_proposal(h.proposer_key, block, 0)))
    assert [a.block for a in out if isinstance(a, ValidateBlock)] == [block]
    assert h.state.round == 0 and h.state.step == Step.PROPOSE
    assert [a.step for a in out if isinstance(a, ScheduleTimeout)] == [Step.PROPOSE]


def test_height_one_has_nothing_to_gather() -> None:
    world = make_world([1, 1, 1, 1])
    vs = world.validators
    prio = ProposerPriorities.genesis(vs)
    me = world.key_of(prio.proposer(0))
    state = ConsensusState(CHAIN_ID, me.public_key, PARAMS)
    out = state.handle(NewHeight(Timestamp(GENESIS_TIME + PARAMS.next_block_delay_ms), Height(1), prio,
                                 vs.entries, (), sha256(b"none"), Timestamp(GENESIS_TIME), None))
    assert len(builds(out)) == 1 and commit_waits(out) == []
