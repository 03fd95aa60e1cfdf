"""Simulated consensus throughput: heights per second for 4, 16 and 64 validators, in one run.

Run: `python -m bench.consensus`. Each figure is a fault-free simulated network (5-20 ms delays) driving the
real state machine, signer, WAL (kept as objects) and stand-in application; wall-clock heights per second
is what a machine of N validators costs to simulate, single-threaded. The baseline is the raw Ed25519 work
of one height (every validator signs a prevote and a precommit, each verified once, as the shared signature
cache does in the simulator), timed with libsodium in the same run: the ratio says how far the rest of
the machinery (codec, hashing, vote tallies, driver) sits above the crypto floor.
"""

from __future__ import annotations

import time

from bench._util import rate
from core.hashing import ZERO_HASH
from core.keys import PrivateKey, verify
from core.types import Height, Round, SignatureBytes, Timestamp
from core.votes import Vote, VoteType
from tests.consensus.sim.cluster import CHAIN_ID, Cluster
from tests.consensus.sim.scenario import Behaviour, Scenario


def crypto_floor_heights_per_s(n: int) -> float:
    key = PrivateKey.derive("bench", "validator", 0)
    vote = Vote(VoteType.PRECOMMIT, Height(10), Round(0), ZERO_HASH, Timestamp(1), key.public_key, ZERO_HASH,
                SignatureBytes(b"\0" * 64))
    msg = vote.sign_bytes(CHAIN_ID)
    sig = key.sign(msg)
    pk = bytes(key.public_key)
    per_sign = 1 / rate(lambda: key.sign(msg), min_seconds=0.3)
    per_verify = 1 / rate(lambda: verify(pk, msg, sig), min_seconds=0.3)
    return 1 / (2 * n * (per_sign + per_verify))


def simulate(n: int, heights: int) -> tuple[float, float, int]:
    sc = Scenario(seed=1, powers=[1] * n, behaviours=[Behaviour.HONEST] * n, heights=heights, delay_ms=(5, 20))
    cluster = Cluster(sc)
    start = time.perf_counter()
    result = cluster.run()
    wall = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"bench run failed: {result.failures}")
    done = min(len(t) for t in result.committed.values())
    return done / wall, result.end_ms / done, result.messages // done


def main() -> None:
    print("simulated consensus, fault-free, 5-20 ms links (wall-clock heights/s, single thread)")
    print(f"  {'validators':>10} {'heights/s':>10} {'sim ms/height':>14} {'msgs/height':>12} "
          f"{'crypto floor':>13} {'ratio':>6}")
    for n, heights in ((4, 40), (16, 15), (64, 4)):
        hps, sim_ms, msgs = simulate(n, heights)
        floor = crypto_floor_heights_per_s(n)
        print(f"  {n:>10} {hps:>10.1f} {sim_ms:>14.0f} {msgs:>12} {floor:>11.0f}/s {hps / floor:>6.3f}")


if __name__ == "__main__":
    main()
