"""A validator that sees its height decided before it precommitted precommits the decided block (issue 11).

Committing needs no verdict of this node's own (a quorum re-executed the block), so a validator still
validating a block when the others' precommits arrive commits it without ever precommitting. Before this
rule its precommit never came: the next proposer waited the whole `timeout_commit` for it, and the
validator was scored a PoI miss at every height it was the slowest (16 in 32 jail). Now it precommits the
decided block before committing, with its PoI answer, unless it already voted in that round, judged the
block invalid, or the decision came in an earlier round than its own.
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.actions import Action, Broadcast, CommitBlock, Sign, ValidateBlock
from consensus.events import BlockValidated, ProposalReceived, TimeoutFired
from consensus.params import Step
from core.app import Verdict
from core.types import Height, Round, Timestamp
from core.votes import Vote, VoteType
from tests.consensus.sim.app import honest_poi
from tests.consensus.sim.cluster import CHAIN_ID, SIM_PARAMS, Cluster, SimNode
from tests.consensus.sim.scenario import Behaviour, Scenario, scenario_from_seed
from tests.consensus.test_state import T0, Harness, only, signed_votes

pytestmark = pytest.mark.consensus


def still_validating() -> tuple[Harness, list[Action]]:
    """A validator that got round 0's proposal and is validating it when the others' votes decide it."""
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    assert only(h.feed(ProposalReceived(Timestamp(T0), pb)), ValidateBlock)
    others = h.world.others(h.me)
    h.votes(VoteType.PREVOTE, 0, pb.block.id, others)
    return h, h.votes(VoteType.PRECOMMIT, 0, pb.block.id, others)


def test_a_validator_decided_while_validating_precommits_the_block_before_committing() -> None:
    h, out = still_validating()
    block = h.state._decided
    assert block is not None
    mine = [v for v in signed_votes(out, VoteType.PRECOMMIT) if v.validator == h.me.public_key]
    assert [v.block_id for v in mine] == [block.id]  # signed and broadcast
    assert mine[0].poi == honest_poi(1, h.me.address)  # with its PoI answer
    assert mine[0].round == 0 and mine[0].verify_signature(CHAIN_ID)
    kinds = [type(a) for a in out if isinstance(a, Broadcast | CommitBlock)]
    assert kinds.index(Broadcast) < kinds.index(CommitBlock)  # out before the node moves on
    # The next height's last commit (the node carries its vote set over) holds all four.
    assert h.state._precommits[0].power == 4


def test_the_late_verdict_changes_nothing_after_the_decision() -> None:
    h, _ = still_validating()
    block = h.state._decided
    assert block is not None
    assert h.sign_and_feed(h.feed(BlockValidated.of(T0, block.id, Verdict.valid()))) == []


def test_no_second_precommit_in_a_round_where_it_already_precommitted_nil() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PROPOSE)))  # prevote nil
    others = h.world.others(h.me)
    out = h.votes(VoteType.PREVOTE, 0, pb.block.id, others)
    assert not signed_votes(out, VoteType.PRECOMMIT)  # not judged yet: no precommit for it
    out = h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PREVOTE)))
    assert [v.block_id for v in signed_votes(out, VoteType.PRECOMMIT)] == [None]
    out = h.votes(VoteType.PRECOMMIT, 0, pb.block.id, others)
    assert len(only(out, CommitBlock)) == 1
    assert not only(out, Sign) and not signed_votes(out, VoteType.PRECOMMIT)


def test_no_precommit_for_a_block_this_node_judged_invalid() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, Verdict.invalid("bad tx", [0]))))
    others = h.world.others(h.me)
    h.votes(VoteType.PREVOTE, 0, pb.block.id, others)
    out = h.votes(VoteType.PRECOMMIT, 0, pb.block.id, others)
    assert len(only(out, CommitBlock)) == 1
    assert not signed_votes(out, VoteType.PRECOMMIT)


def test_no_precommit_for_a_decision_in_an_earlier_round_than_its_own() -> None:
    """The signer refuses a lower height/round/step, so a node already in round 1 signs nothing for round 0."""
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PROPOSE)))
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PREVOTE)))
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PRECOMMIT)))
    assert h.state.round == 1
    others = h.world.others(h.me)
    out = h.votes(VoteType.PRECOMMIT, 0, pb.block.id, others)
    assert len(only(out, CommitBlock)) == 1
    assert not only(out, Sign) and not signed_votes(out, VoteType.PRECOMMIT)


SLOW_MS = 300  # one validator's validation: far longer than the others' votes take to decide


def test_a_slow_honest_validator_misses_no_poi_answer_and_costs_no_commit_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator, fault-free, with validator 3 validating every block in 300 ms (the others in 5-30 ms):
    every block from height 2 on carries all four precommits in its last commit, and no proposer waited out
    `timeout_commit` (before the rule: validator 3 was missing from every last commit it did not propose,
    and the proposer waited the full timeout at each of those heights)."""
    perform = SimNode.perform

    def slow_validation(self: SimNode, action: Action) -> None:
        if self.index == 3 and isinstance(action, ValidateBlock):
            verdict = self.app.validate_block(action.block)
            bid = action.block.id
            self.cluster.after(self, SLOW_MS, lambda: self.feed(BlockValidated.of(self.ts, bid, verdict)))
            return
        perform(self, action)

    monkeypatch.setattr(SimNode, "perform", slow_validation)
    params = dataclasses.replace(SIM_PARAMS, timeout_commit_ms=1000, next_block_delay_ms=0)
    sc = Scenario(seed=1, powers=[1, 1, 1, 1], behaviours=[Behaviour.HONEST] * 4, heights=12,
                  delay_ms=(5, 20))
    cluster = Cluster(sc, params=params)
    result = cluster.run()
    assert result.ok, result.failures
    store = cluster.nodes[0].store
    heights = sorted(store)
    assert len(heights) >= 12
    absent = {h: 4 - len(store[h].block.last_commit.precommits)  # type: ignore[union-attr]
              for h in heights[1:]}
    assert set(absent.values()) == {0}, absent
    times = result.committed[0]
    gaps = [times[h] - times[h - 1] for h in heights[1:]]
    assert max(gaps) < params.timeout_commit_ms, gaps  # no height paid the full wait
    slow_precommits = [v for h in heights[1:] for v in store[h].block.last_commit.precommits  # type: ignore[union-attr]
                       if v.validator == cluster.nodes[3].key.public_key]
    assert all(isinstance(v, Vote) and v.poi == honest_poi(int(v.height), v.validator_address)
               for v in slow_precommits)


@pytest.mark.parametrize("seed", range(20))
def test_with_a_slow_honest_validator_the_seeded_runs_stay_safe_and_live(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's seeded scenarios (Byzantine validators, crashes, drops, partitions) with one honest
    validator that never crashes validating every block in 300 ms, so it is often decided before it has
    voted and precommits at the decision: the suite's checks hold (one block per height, liveness after
    heal, no honest double-sign, no honest node punished or flagged for its PoI answers). The rule fired in
    28 of the first 30 seeds when this was written (some node precommitted at a decision)."""
    sc = scenario_from_seed(seed)
    crashing = {c.node for c in sc.crashes}
    slow = next(i for i, b in enumerate(sc.behaviours) if b is Behaviour.HONEST and i not in crashing)
    perform = SimNode.perform

    def slow_validation(self: SimNode, action: Action) -> None:
        if self.index == slow and isinstance(action, ValidateBlock):
            verdict = self.app.validate_block(action.block)
            bid = action.block.id
            self.cluster.after(self, SLOW_MS, lambda: self.feed(BlockValidated.of(self.ts, bid, verdict)))
            return
        perform(self, action)

    monkeypatch.setattr(SimNode, "perform", slow_validation)
    result = Cluster(sc).run()
    assert result.ok, f"seed {seed} (slow node {slow}): {sc.describe()}: {result.failures}"
    assert result.reached <= result.committed_evidence
