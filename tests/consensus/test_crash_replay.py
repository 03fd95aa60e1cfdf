"""A crash at every step boundary of a validator, then WAL and sign-state replay: never a second, different
signature for one height/round/step, and the chain goes on.

Boundaries are counted by the sim driver: after each WAL append (before `handle`), after each action it
performs, and inside signing (after the sign state is persisted, before the WAL has the signed message).
The crash may also lose everything the WAL had not fsynced (power loss). The WAL is kept as real bytes here.
"""

from __future__ import annotations

import pytest

from consensus.proposer import ProposerPriorities
from tests.consensus.sim.cluster import Cluster
from tests.consensus.sim.scenario import Behaviour, Scenario

pytestmark = pytest.mark.consensus

POWERS = [1, 1, 1, 1]


def scenario() -> Scenario:
    return Scenario(seed=5, powers=POWERS, behaviours=[Behaviour.HONEST] * 4, heights=3, delay_ms=(2, 20))


def crashing_node() -> int:
    """The proposer of height 1, round 0: its boundaries include building, proposing and voting."""
    cluster = Cluster(scenario())
    first = ProposerPriorities.genesis(cluster.validators).proposer(0)
    return next(n.index for n in cluster.nodes if n.key.address == first)


def count_boundaries() -> int:
    cluster = Cluster(scenario(), encode_wal=True)
    result = cluster.run()
    assert result.ok, result.failures
    return cluster.nodes[crashing_node()].boundaries


NODE = crashing_node()
BOUNDARIES = count_boundaries()


@pytest.mark.parametrize("power_loss", [False, True], ids=["process-crash", "power-loss"])
@pytest.mark.parametrize("boundary", range(1, BOUNDARIES + 1))
def test_crash_at_boundary_never_double_signs(boundary: int, power_loss: bool) -> None:
    cluster = Cluster(scenario(), crash_at_boundary=(NODE, boundary, power_loss), encode_wal=True)
    result = cluster.run()
    node = cluster.nodes[NODE]
    assert node.incarnation == 2, "the crash happened and the node restarted"
    for (who, h, r, step), signed in result.signatures.items():
        assert len(signed) == 1, f"node {who} signed {len(signed)} messages at h={h} r={r} step={step}"
    assert result.ok, f"crash at boundary {boundary}: {result.failures}"
    assert not [a for a in node.alarms if "refusing" in a], node.alarms
    # The WAL is synced before each signature, so a replay asks for exactly what was signed before.
    assert cluster.stored_returns == 0


def test_there_are_many_boundaries() -> None:
    assert BOUNDARIES > 50
