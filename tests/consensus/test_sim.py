"""1,000 seeded simulated runs under less than a third faulty stake: safety, liveness after heal, evidence.

Each seed draws 4-7 stake-weighted validators, Byzantine behaviours (equivocating proposer, double voter,
silent, lazy PoI, wrong inference outputs) and honest crash-restarts within the fault budget, and network
drops, duplicates, delays (reordering), a partition, all healing at a seeded time. A failing seed is printed
with its replay command: `python -m tests.consensus.sim.replay SEED`.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from consensus.proposer import ProposerPriorities
from tests.consensus.sim.cluster import Cluster, run_scenario
from tests.consensus.sim.scenario import Behaviour, Scenario, scenario_from_seed

pytestmark = pytest.mark.consensus

RUNS = int(os.environ.get("INFERCHAIN_SIM_RUNS", "1000"))


def explain(seed: int, failures: list[str], scenario: Scenario) -> str:
    return (f"seed {seed} failed; replay with `python -m tests.consensus.sim.replay {seed}`\n"
            f"  {scenario.describe()}\n  " + "\n  ".join(failures))


@pytest.mark.parametrize("seed", range(RUNS))
def test_seeded_run_is_safe_live_and_commits_evidence(seed: int) -> None:
    """Agreement at every height, commits resume after heal, every equivocation that reached an honest
    validator is committed as evidence, no honest validator double-signs or gets punished."""
    result = run_scenario(scenario_from_seed(seed))
    assert result.ok, explain(seed, result.failures, result.scenario)
    assert result.reached <= result.committed_evidence


def test_the_seeds_cover_every_fault() -> None:
    """The 1,000 seeds exercise each Byzantine behaviour, crashes with and without power loss, partitions,
    drops and duplicates; and never exceed the fault budget."""
    behaviours: Counter[Behaviour] = Counter()
    features: Counter[str] = Counter()
    for seed in range(RUNS):
        sc = scenario_from_seed(seed)
        assert 3 * sc.faulty_power() < sc.total, sc.describe()
        behaviours.update(b for b in sc.behaviours if b is not Behaviour.HONEST)
        features.update({"partition": bool(sc.partitions), "drops": sc.drop > 0, "duplicates": sc.duplicate > 0,
                         "crash": bool(sc.crashes), "power loss": any(c.power_loss for c in sc.crashes),
                         "two byzantine": sum(b is not Behaviour.HONEST for b in sc.behaviours) >= 2})
    for b in Behaviour:
        if b is not Behaviour.HONEST:
            assert behaviours[b] >= RUNS // 20, (b, behaviours)
    for f in ("partition", "drops", "duplicates", "crash", "power loss", "two byzantine"):
        assert features[f] >= RUNS // 20, (f, features)


def test_equivocations_are_punished_by_the_application() -> None:
    sc = Scenario(seed=11, powers=[3, 3, 3, 2, 1], behaviours=[Behaviour.HONEST] * 3 + [
        Behaviour.DOUBLE_VOTE, Behaviour.EQUIVOCATE_PROPOSAL], heights=8)
    cluster = Cluster(sc)
    result = cluster.run()
    assert result.ok, result.failures
    assert result.reached, "the witnesses saw both twins"
    offenders = {bytes(cluster.nodes[i].key.public_key) for i in (3, 4)}
    for node in cluster.honest:
        assert node.app.punished.tombstoned & offenders


def test_wrong_outputs_and_lazy_poi_are_caught() -> None:
    sc = Scenario(seed=12, powers=[3, 3, 3, 1, 1], behaviours=[Behaviour.HONEST] * 3 + [
        Behaviour.BAD_OUTPUTS, Behaviour.LAZY_POI], heights=12)
    cluster = Cluster(sc)
    result = cluster.run()
    assert result.ok, result.failures
    liar, lazy = cluster.nodes[3], cluster.nodes[4]
    for node in cluster.honest:
        assert bytes(liar.key.public_key) in node.app.punished.wrong_inference
        assert node.app.punished.wrong_poi.get(bytes(lazy.key.address), 0) > 0
    # The liar's blocks never commit: every committed block is honest-built.
    assert all(b.header.proposer != liar.key.address for b in cluster.chain.values())


def test_runs_are_deterministic_per_seed() -> None:
    a, b = run_scenario(scenario_from_seed(7)), run_scenario(scenario_from_seed(7))
    assert (a.end_ms, a.committed, a.messages) == (b.end_ms, b.committed, b.messages)


def scheduled_proposer(cluster: Cluster, height: int, round_: int) -> bytes:
    """The proposer consensus schedules for (height, round), from the priorities stored with height - 1."""
    node = cluster.honest[0]
    priorities = (ProposerPriorities.genesis(cluster.validators) if height == 1
                  else node.store[height - 1].next_proposers)
    return bytes(priorities.proposer(round_))


def test_a_proposer_naming_others_in_its_header_is_refused() -> None:
    """Issue 9.5: a Byzantine proposer puts another validator in its header (a different one each time),
    half of its blocks with a result the others do not reproduce. Honest validators refuse the proposals
    before re-executing them: no transaction collects disagreements under the named proposers (the mempool
    evicts at three), no such block commits, every committed header names its build round's proposer."""
    sc = Scenario(seed=13, powers=[3, 3, 3, 3], behaviours=[Behaviour.HONEST] * 3 + [Behaviour.FOREIGN_HEADER],
                  heights=16)
    cluster = Cluster(sc)
    result = cluster.run()
    assert result.ok, result.failures
    byzantine = cluster.nodes[3]
    named = {bytes(b.header.proposer) for b in byzantine.foreign_built.values()}
    assert len(named) >= 3, "the attack named three distinct proposers"
    for node in cluster.honest:
        assert node.disagreements == {}, node.disagreements
    for h, block in cluster.chain.items():
        assert bytes(block.id) not in byzantine.foreign_built
        assert bytes(block.header.proposer) == scheduled_proposer(cluster, h, int(block.header.round))
