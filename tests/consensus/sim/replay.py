"""Replay one simulated run verbosely: `python -m tests.consensus.sim.replay [--stalled] [--quiet] SEED`."""

from __future__ import annotations

import argparse

from tests.consensus.sim.cluster import Cluster
from tests.consensus.sim.scenario import scenario_from_seed, stalled_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("seed", type=int)
    parser.add_argument("--stalled", action="store_true", help="a third or more of the stake down")
    parser.add_argument("--quiet", action="store_true", help="no per-event trace")
    args = parser.parse_args()
    sc = stalled_scenario(args.seed) if args.stalled else scenario_from_seed(args.seed)
    print(sc.describe())
    cluster = Cluster(sc, trace=not args.quiet)
    result = cluster.run()
    for node in cluster.nodes:
        times = result.committed[node.index]
        print(f"node {node.index} ({node.behaviour.value}, power {sc.powers[node.index]}): "
              f"{len(times)} blocks, last at {max(times.values(), default=-1)}ms, alarms {len(node.alarms)}")
    print(f"equivocations reached: {len(result.reached)}, committed evidence: {len(result.committed_evidence)}")
    print("OK" if result.ok else "FAILED:\n  " + "\n  ".join(result.failures))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
