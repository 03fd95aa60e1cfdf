"""The simulator on the real file-backed WAL and sign state (tmp_path): crashes close the files, power
losses also tear the WAL's unsynced tail at a random byte, and restarts reopen them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.consensus.sim.cluster import Cluster
from tests.consensus.sim.scenario import scenario_from_seed
from tests.consensus.test_crash_replay import BOUNDARIES, NODE, scenario

pytestmark = pytest.mark.consensus

CRASHING_SEEDS = [s for s in range(400) if scenario_from_seed(s).crashes][:30]


@pytest.mark.parametrize("seed", CRASHING_SEEDS)
def test_seeded_run_on_files(seed: int, tmp_path: Path) -> None:
    cluster = Cluster(scenario_from_seed(seed), disk=tmp_path)
    result = cluster.run()
    assert result.ok, f"seed {seed} on files: {result.failures}"


def test_some_power_losses_tore_a_record(tmp_path: Path) -> None:
    torn = 0
    for seed in CRASHING_SEEDS[:15]:
        cluster = Cluster(scenario_from_seed(seed), disk=tmp_path / str(seed))
        assert cluster.run().ok
        torn += sum(getattr(n.wal, "torn", 0) for n in cluster.nodes)
    assert torn > 0


@pytest.mark.parametrize("boundary", range(1, BOUNDARIES + 1, 3))
def test_crash_at_boundary_on_files_never_double_signs(boundary: int, tmp_path: Path) -> None:
    cluster = Cluster(scenario(), crash_at_boundary=(NODE, boundary, True), disk=tmp_path)
    result = cluster.run()
    assert cluster.nodes[NODE].incarnation == 2
    assert all(len(s) == 1 for s in result.signatures.values())
    assert result.ok, result.failures
    assert cluster.stored_returns == 0
