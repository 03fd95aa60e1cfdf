"""ONNX sandbox costs: time to refuse each attack model, to check the real models, and what the worker pool
adds per inference over a raw `session.run` on the same model and input, measured in the same run.

The hand-off part compares the shared-memory hand-off (the node's; single jobs as flat messages, and as pickled
batches) with the old pipe hand-off, one job and many jobs per hand-off, in CPU time of both processes (the pool's, and the worker's from /proc/PID/schedstat):
on a shared machine wall time mostly measures the scheduler.

Run: `make bench` or `python -m bench.vm_sandbox [--batch N] [--handoff-only]`. Goal: every refusal under 1 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.synth import Synth
from core.errors import InvalidModel
from tools.attacks import ATTACKS
from vm.models import load_model, model_names
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.meter import meter
from vm.sandbox.session import create_session
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

REFUSAL_GOAL_S = 1.0


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _refuse(model_bytes: bytes, spec: object) -> None:
    try:
        validate_model(model_bytes, spec)  # type: ignore[arg-type]
    except InvalidModel:
        return
    raise AssertionError("attack model was accepted")


def bench_attacks() -> bool:
    print(f"refusal time per attack model (best of 5; goal < {REFUSAL_GOAL_S:.0f} s)")
    worst = 0.0
    for attack in ATTACKS:
        model_bytes, spec = attack.build()
        elapsed = best_of(lambda b=model_bytes, s=spec: _refuse(b, s), 5)
        worst = max(worst, elapsed)
        flag = "" if elapsed < REFUSAL_GOAL_S else "   OVER GOAL"
        print(f"  {attack.name:<28}{elapsed * 1e3:>9.3f} ms  {len(model_bytes):>10,} B{flag}")
    print(f"  {'slowest':<28}{worst * 1e3:>9.3f} ms  ({len(ATTACKS)} attacks)")
    return worst < REFUSAL_GOAL_S


def bench_checks() -> None:
    print("\nreal models: validate_model / canonicalize (fixed point) / meter, best of 5")
    for name in model_names():
        m = load_model(name)
        check = best_of(lambda m=m: validate_model(m.model_bytes, m.spec), 5)
        canon = best_of(lambda m=m: canonicalize(m.model_bytes, m.spec.input_shapes), 5)
        price = best_of(lambda m=m: meter(m.model_bytes), 5)
        print(
            f"  {name:<14}{len(m.model_bytes):>8,} B  check {check * 1e3:7.2f} ms  canonicalize {canon * 1e3:7.2f} ms"
            f"  meter {price * 1e3:6.2f} ms  gas {m.gas_per_call:,}"
        )


def bench_execution(batch: int) -> None:
    print(f"\nexecution: {batch} small inferences in one hand-off vs raw session.run (same model, same input)")
    print(f"  {'model':<14}{'raw run':>10}{'local exec':>12}{'pool':>10}{'pool overhead':>16}{'ratio':>8}")
    pool = WorkerPool(size=1)
    try:
        pool.start()
        for name in model_names():
            m = load_model(name)
            inputs = dict(m.golden.cases[0].inputs)
            session = create_session(m.model_bytes)
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
            for _ in range(50):
                session.run(None, feeds)
            raw = best_of(lambda s=session, f=feeds: [s.run(None, f) for _ in range(batch)], 3) / batch
            pkg = ModelPackage(name.encode(), m.model_bytes, m.spec, m.golden)
            jobs = [InferJob(pkg, inputs) for _ in range(batch)]
            local_exec = LocalExecutor()
            local_exec.run_batch(jobs[:10])
            local = best_of(lambda e=local_exec, j=jobs: e.run_batch(j), 3) / batch
            pool.run_batch(jobs[:10])  # load and golden-check the model in the worker first
            pooled = best_of(lambda j=jobs: pool.run_batch(j), 3) / batch
            print(
                f"  {name:<14}{raw * 1e6:>8.1f}µs{local * 1e6:>10.1f}µs{pooled * 1e6:>8.1f}µs"
                f"{(pooled - raw) * 1e6:>12.1f} µs/inf{pooled / raw:>8.2f}"
            )
    finally:
        pool.close()


def _cpu_s(pid: int) -> float:
    """Seconds the process has run on a CPU, to the nanosecond (/proc/PID/schedstat; /proc/PID/stat counts
    10 ms ticks, ±200 µs per call over a conv row's 48 hand-offs)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def bench_handoff() -> None:
    from bench.synth import conv

    print("\nhand-off: CPU per inference of pool + worker, shared memory vs pipe, against raw session.run CPU")
    print("  (shm: the node's pool, single jobs as flat messages; shm pickled: single jobs as pickled batches)")
    print(f"  {'model':<22}{'jobs/hand-off':>14}{'raw':>10}{'shm':>22}{'shm pickled':>22}{'pipe':>22}")
    pools = {"shm": WorkerPool(1), "shm pickled": WorkerPool(1, flat_jobs=False),
             "pipe": WorkerPool(1, shared_memory=False)}
    try:
        pids = {name: pool.describe()[0]["pid"] for name, pool in pools.items()}
        tiny = load_model("digits_int8")
        big = conv(32, 32, 64)  # float32[1,32,64,64] input: 512 KiB
        cases = [("digits_int8", ModelPackage(b"tiny", tiny.model_bytes, tiny.spec, tiny.golden),
                  dict(tiny.golden.cases[0].inputs), 3000),
                 ("conv 512 KiB input", ModelPackage(b"conv", big.model_bytes, _spec(big)),
                  {big.input_name: big.sample()}, 48)]
        for name, pkg, inputs, calls in cases:
            session = create_session(pkg.model_bytes)
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
            start = time.process_time()
            for _ in range(calls):
                session.run(None, feeds)
            raw = (time.process_time() - start) / calls
            for per in (1, 16 if calls < 100 else 400):
                # Distinct arrays per job, as in a block (pickle would send one array shared by all jobs once).
                jobs = [InferJob(pkg, {k: v.copy() for k, v in inputs.items()}) for _ in range(per)]
                row = {}
                for label, pool in pools.items():
                    pool.run_batch(jobs)
                    start, worker = time.process_time(), _cpu_s(pids[label])
                    for _ in range(calls // per):
                        pool.run_batch(jobs)
                    row[label] = (time.process_time() - start + _cpu_s(pids[label]) - worker) / (calls // per * per)
                print(f"  {name:<22}{per:>14}{raw * 1e6:>8.1f}µs" + "".join(
                    f"{row[k] * 1e6:>9.1f}µs {row[k] / raw:5.2f}x +{(row[k] - raw) * 1e6:4.0f}" for k in pools))
    finally:
        for pool in pools.values():
            pool.close()


def _spec(s: Synth) -> ModelSpec:
    return ModelSpec((ArraySpec(s.input_name, s.input_dtype, s.input_shape),), CompareMode.TOLERANT, 16,
                     Tolerance(1 << 16, 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1000, help="inferences per hand-off")
    parser.add_argument("--handoff-only", action="store_true")
    args = parser.parse_args()
    if args.handoff_only:
        bench_handoff()
        return
    ok = bench_attacks()
    bench_checks()
    bench_execution(args.batch)
    bench_handoff()
    if not ok:
        raise SystemExit("some refusal took longer than the goal")


if __name__ == "__main__":
    main()
