"""The spin-wait's contention rule in the goal table: bench.vm's goal part (`--part goal`, its other options
as given) with every pool's spin-waits judged by the rule named first (`--rule old|new`, vm/sandbox/channel.py
`SpinWait`: `old` stops spinning after one contended spin, `new` after TRIP_AFTER in the last WINDOW). bench.vm
prints, per pool, the spins each side began, those judged contended, the rule's trips and the waits it made
block; run `old` and `new` back to back (or alternating) to compare them at the same load.

`--gc N` instead: N single jobs, then N/16 blocks of 16 jobs, of each tiny committed model through a pool,
and the worker's collections (by generation) and the wall time spent in them (its describe(): gc.get_stats
and a gc callback), with its collector's settings.

Run: python -m bench.spin_census --rule old|new [bench.vm options, e.g. --models digits --runs 2]
     python -m bench.spin_census --gc 5000
"""

from __future__ import annotations

import os
import sys

from bench import vm as bench_vm
from vm.models import load_model
from vm.sandbox import worker
from vm.sandbox.channel import SpinWait
from vm.sandbox.executor import InferJob, ModelPackage

RULES = {"old": SpinWait.OLD_RULE, "new": (SpinWait.WINDOW, SpinWait.TRIP_AFTER)}


def gc_census(jobs: int) -> None:
    """The worker's collections over `jobs` single jobs and jobs/16 blocks of 16, per tiny model."""
    import numpy as np

    rng = np.random.default_rng(3)
    for name in ("digits_int8", "digits_mlp"):
        model = load_model(name)
        package = ModelPackage(name.encode(), model.model_bytes, model.spec, model.golden)
        spec = model.spec.inputs[0]
        shape = spec.shape
        dtype = np.dtype(spec.dtype)
        value = rng.integers(0, 100, shape).astype(dtype) if dtype.kind in "iu" else rng.random(shape).astype(dtype)
        job = InferJob(package, {spec.name: value})
        with worker.WorkerPool(1) as pool:
            for _ in range(5):
                pool.run_batch([job])
            for label, batch, count in (("single jobs", [job], jobs), ("blocks of 16", [job] * 16, jobs // 16)):
                (before,) = pool.describe()
                for _ in range(count):
                    pool.run_batch(batch)
                (after,) = pool.describe()
                collected = [b - a for a, b in zip(before["gc_collections"], after["gc_collections"], strict=True)]
                spent = 1e6 * (sum(after["gc_seconds"]) - sum(before["gc_seconds"]))
                print(f"{name}: {count} {label}, load {os.getloadavg()[0]:.2f}: worker collections by generation "
                      f"{collected}, {spent:.0f} us in them; threshold {after['gc_threshold']}, "
                      f"{after['gc_frozen']} objects frozen")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--gc"]:
        gc_census(int(args[1]))
        return
    rule = "new"
    if "--rule" in args:
        at = args.index("--rule")
        rule = args[at + 1]
        del args[at:at + 2]
    if rule not in RULES:
        raise SystemExit(f"--rule must be one of {sorted(RULES)}")
    defaults = worker.WorkerPool.__init__.__kwdefaults__
    assert defaults is not None
    defaults["spin_rule"] = RULES[rule]  # every pool the goal part builds (and so its workers) gets this rule
    print(f"spin rule {rule}: window {RULES[rule][0]}, trips after {RULES[rule][1]} contended spins")
    sys.argv = [sys.argv[0], "--part", "goal", *args]
    bench_vm.main()


if __name__ == "__main__":
    main()
