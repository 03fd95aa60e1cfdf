"""A third of the stake or more crashed or silent: no commits while it lasts, never conflicting blocks,
commits resume once it heals."""

from __future__ import annotations

import pytest

from tests.consensus.sim.cluster import Cluster
from tests.consensus.sim.scenario import Behaviour, stalled_scenario

pytestmark = pytest.mark.consensus

# Commits whose last messages were in flight when the nodes went down may still land this soon after.
GRACE_MS = 600


@pytest.mark.parametrize("seed", range(60))
def test_a_third_or_more_down_stalls_then_resumes(seed: int) -> None:
    sc = stalled_scenario(seed)
    down = {c.node for c in sc.crashes} | {i for i, b in enumerate(sc.behaviours) if b is Behaviour.SILENT}
    assert 3 * sum(sc.powers[i] for i in down) >= sc.total
    cluster = Cluster(sc)
    result = cluster.run()
    replay = f"replay: python -m tests.consensus.sim.replay --stalled {seed}; {sc.describe()}"
    assert result.ok, f"{replay}: {result.failures}"
    start = min((c.at_ms for c in sc.crashes), default=0)
    for node, times in result.committed.items():
        stalled = [h for h, t in times.items() if start + GRACE_MS <= t < sc.heal_ms]
        assert not stalled, f"node {node} committed {stalled} while a third was down; {replay}"
        assert any(t >= sc.heal_ms for t in times.values()), f"node {node} never resumed; {replay}"
