"""The seeded simulator with the fastest pipeline: next_block_delay_ms = 0, so round 0 starts the moment the
last height's precommits are all in (issue 11). Safety, liveness after heal, evidence and the PoI rules must
hold as with the plain wait, and no proposer starts round 0 (and so fixes its block's last commit, with the
PoI answers in it) before `timeout_commit` has passed unless it holds every precommit of the last height."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.actions import Action
from consensus.events import Event, NewHeight
from consensus.state import ConsensusState
from tests.consensus.sim.cluster import SIM_PARAMS, Cluster
from tests.consensus.sim.scenario import Behaviour, scenario_from_seed

pytestmark = pytest.mark.consensus

FAST = dataclasses.replace(SIM_PARAMS, next_block_delay_ms=0)


@pytest.mark.parametrize("seed", range(40))
def test_fast_pipeline_is_safe_live_and_never_cuts_the_wait_short_of_a_precommit(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    entered: dict[int, int] = {}  # id(machine) -> `now` of its current NewHeight
    starts = {"early": 0, "waited": 0}
    handle, start_round = ConsensusState.handle, ConsensusState._start_round

    def watched_handle(self: ConsensusState, event: Event) -> list[Action]:
        if isinstance(event, NewHeight):
            entered[id(self)] = int(event.now)
        return handle(self, event)

    def watched_start(self: ConsensusState, r: int, now: int, out: list[Action]) -> None:
        me = self._me_address
        if r == 0 and int(self.height) > 1 and me is not None and self.proposer(0) == me:
            if now - entered[id(self)] < self.params.timeout_commit_ms:
                starts["early"] += 1
                held = self._last_precommits  # every validator of the last height has a precommit here
                assert held is not None and held.power == held.validators.total_power, \
                    f"seed {seed}: h={self.height} started round 0 early without every precommit"
            else:
                starts["waited"] += 1
        start_round(self, r, now, out)

    monkeypatch.setattr(ConsensusState, "handle", watched_handle)
    monkeypatch.setattr(ConsensusState, "_start_round", watched_start)
    sc = scenario_from_seed(seed)
    result = Cluster(sc, params=FAST).run()
    assert result.ok, f"seed {seed}: {sc.describe()}: {result.failures}"
    assert result.reached <= result.committed_evidence
    if all(b is Behaviour.HONEST for b in sc.behaviours) and not sc.crashes:
        assert starts["early"] > 0, starts  # the fast path was taken (a silent validator rules it out)
