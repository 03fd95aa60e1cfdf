"""Issue 12's hand-off figures measured the way the issue measured them: over the onnx backend corpus.

Every model of the installed onnx package's backend test data that registers through the client's path
(tools/backend_corpus.py: upgraded, canonicalized, shapes pinned from its test inputs, tolerant, k = 16)
runs as a single job through a real worker pool (`WorkerPool.run_batch([job])`, the node's pool: spin-waits
on) against raw `session.run` of the same canonical model (the pinned session options) on the same inputs,
in alternating pairs (which side goes first alternates too). Per model: the medians of each side's wall time.
Then the issue's two rows:

- models whose raw run takes >= 1 ms: the median of VM/raw over them, with its range (goal <= 1.10x);
- tiny models (raw < 1 ms): the median of VM - raw over them, with its range (goal <= +100 us);

Each model gets `--pairs` pairs, fewer for slow ones (about `--budget-s` per model). A row per model with
`--rows`. `bench/vm.py --part goal` measures the same on three synthetic models, with intervals and verdicts.

Run: python -m bench.corpus_handoff [--pairs 200] [--budget-s 2] [--only light/] [--rows]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

import numpy as np

from tools.backend_corpus import Registered, case_names, load_case, register
from vm.engine import golden_vectors, model_spec
from vm.sandbox.executor import InferJob, ModelPackage
from vm.sandbox.limits import DEFAULT_LIMITS
from vm.sandbox.session import create_session
from vm.sandbox.worker import WorkerPool
from vm.txs import split_model

SLOW_S = 1e-3  # the line between "models >= 1 ms" (ratio goal) and tiny ones (difference goal)
RATIO_GOAL = 1.10
DIFF_GOAL_S = 100e-6


def measure(pool: WorkerPool, reg: Registered, inputs: dict[str, np.ndarray], pairs: int,
            budget_s: float) -> tuple[float, float, int] | str:
    """Medians of raw and VM wall seconds over alternating pairs, and the pairs run; or why it could not run."""
    meta = reg.meta
    model_id = split_model(reg.canonical, meta)[0].model_id
    package = ModelPackage(bytes(model_id), reg.canonical, model_spec(meta, DEFAULT_LIMITS), golden_vectors(meta))
    feeds = {s.name: np.asarray(inputs[s.name], dtype=s.dtype.numpy) for s in meta.inputs}
    job = InferJob(package, feeds)
    session = create_session(reg.canonical)
    names = [o.name for o in session.get_outputs()]
    [result] = pool.run_batch([job])  # the cold load and first run, untimed
    if result.outputs is None:
        return f"no outputs: {result.error}"
    start = time.perf_counter()
    for _ in range(3):
        session.run(names, feeds)
        pool.run_batch([job])
    per_pair = (time.perf_counter() - start) / 3
    n = max(5, min(pairs, int(budget_s / max(per_pair, 1e-9))))
    raw: list[float] = []
    vm: list[float] = []
    for i in range(n):
        for side in ((0, 1) if i % 2 else (1, 0)):
            start = time.perf_counter()
            if side:
                pool.run_batch([job])
            else:
                session.run(names, feeds)
            (vm if side else raw).append(time.perf_counter() - start)
    return statistics.median(raw), statistics.median(vm), n


def summary(label: str, rows: list[tuple[str, float, float, int]]) -> None:
    slow = [(vm / raw) for _, raw, vm, _ in rows if raw >= SLOW_S]
    tiny = [(vm - raw) for _, raw, vm, _ in rows if raw < SLOW_S]
    print(f"  {label}:")
    if slow:
        print(f"    models >= 1 ms ({len(slow)}): VM/raw median {statistics.median(slow):.3f}x "
              f"(range {min(slow):.3f}-{max(slow):.3f}x; {sum(r <= RATIO_GOAL for r in slow)} of {len(slow)} "
              f"<= {RATIO_GOAL:.2f}x); goal: median <= {RATIO_GOAL:.2f}x")
    if tiny:
        print(f"    tiny models, raw < 1 ms ({len(tiny)}): VM - raw median {statistics.median(tiny) * 1e6:+.1f} us "
              f"(range {min(tiny) * 1e6:+.1f} to {max(tiny) * 1e6:+.1f} us; "
              f"{sum(d <= DIFF_GOAL_S for d in tiny)} of {len(tiny)} <= +{DIFF_GOAL_S * 1e6:.0f} us); "
              f"goal: median <= +{DIFF_GOAL_S * 1e6:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="raw/VM pairs per model (fewer for slow models)")
    parser.add_argument("--budget-s", type=float, default=2.0, help="at most about this much time per model")
    parser.add_argument("--only", default="", help="only the corpus models whose names contain this")
    parser.add_argument("--rows", action="store_true", help="a row per model")
    args = parser.parse_args()
    print(f"Issue 12's figures over the onnx backend corpus: single jobs through the node's pool vs raw "
          f"session.run (load average {os.getloadavg()[0]:.2f})")
    measured: list[tuple[str, float, float, int]] = []
    skipped: Counter[str] = Counter()
    with WorkerPool(1) as pool:
        for name in case_names():
            if args.only not in name:
                continue
            case = load_case(name)
            outcome = register(case)
            if isinstance(outcome, str):
                skipped["refused at registration (tests/vm/backend_refusals.json)"] += 1
                continue
            got = measure(pool, outcome, case.inputs, args.pairs, args.budget_s)
            if isinstance(got, str):
                skipped[got.split(":")[0]] += 1
                continue
            raw, vm, n = got
            measured.append((name, raw, vm, n))
            if args.rows:
                print(f"    {name[-48:]:<48} raw {raw * 1e6:10.1f} us  VM {vm * 1e6:10.1f} us  "
                      f"{vm / raw:6.2f}x  {(vm - raw) * 1e6:+9.1f} us  ({n} pairs)", flush=True)
    print(f"  {len(measured)} models measured; not measured: "
          + (", ".join(f"{count} {why}" for why, count in skipped.items()) or "none"))
    summary("the corpus", measured)
    print(f"  load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
