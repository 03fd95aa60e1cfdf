"""Where a single job's time goes: CLOCK_MONOTONIC stamps on both sides of the hand-off; asserts nothing.

Each stamp is (monotonic ns, this thread's CPU ns), so a segment inside one process shows its wall and its CPU
time (wall beyond CPU: waiting for a core), and a segment from one process to the other shows a wake-up. The
bench wraps, in this process and in the workers it starts, the channel's send and read, the pool's wait and
`run_batch`, and the worker's flat-job service and the runtime's run (the sandbox's own code is unchanged; a
traced worker is started through `_worker_main`, by reference, so the spawned interpreter wraps itself).

`--gap-ms` idles before each job (and before the raw run it is compared with): both processes then meet the job
as a validator meets a lone one, their spin-waits over and their caches holding whatever ran meanwhile.
`--steps` times instead, in this process, the steps the sixth round changed, the old and the new way
alternating (docs/performance-sandbox.md, "The hand-off goals, sixth round").
Run: python -m bench.vm_stamps [--model digits_int8|digits_mlp|conv] [--steps] [--gap-ms 20] [--jobs 200] [--spin on|off|forced] [--wake]
(docs/performance-sandbox.md, "Single jobs: the verdict and the lone job").
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vm.models import load_model
from vm.sandbox import channel, executor, worker
from vm.sandbox.channel import SpinWait
from vm.sandbox.executor import InferJob, ModelPackage, _loaded
from vm.sandbox.session import create_session
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

STAMPS: list[tuple[str, int, int]] = []
_clock, _cpu = time.monotonic_ns, time.thread_time_ns


def stamp(tag: str) -> None:
    STAMPS.append((tag, _clock(), _cpu()))


def _wrap(owner: Any, name: str, before: str, after: str) -> None:
    inner: Callable[..., Any] = getattr(owner, name)

    def traced(*args: Any, **kwargs: Any) -> Any:
        stamp(before)
        try:
            return inner(*args, **kwargs)
        finally:
            stamp(after)

    setattr(owner, name, traced)


def _trace_channel() -> None:
    _wrap(channel.Channel, "_fill", "read0", "read1")  # read1: the first bytes are in (a blocked reader's wake-up)
    _wrap(channel.Channel, "send_parts", "send0", "send1")


def _traced_worker_main(*args: Any, **kwargs: Any) -> None:
    """A worker's entry point with stamps; `Describe` hands them over (and forgets them)."""
    _trace_channel()
    _wrap(executor.Runner, "run_raw", "run0", "run1")
    _wrap(worker, "_serve_flat", "serve0", "serve1")
    if hasattr(worker, "_Rehearsal"):  # (absent from a sandbox before the wake-up, when comparing with one)
        _wrap(worker._Rehearsal, "rehearse", "warm0", "warm1")
    describe = worker._describe

    def described(*args: Any) -> dict[str, Any]:
        info = describe(*args)
        info["stamps"] = list(STAMPS)
        STAMPS.clear()
        return info

    worker._describe = described  # type: ignore[assignment]
    worker._worker_main(*args, **kwargs)


def trace_this_process() -> None:
    """Stamps in this process's pool, and traced workers for every pool started from now on."""
    _trace_channel()
    _wrap(channel.Channel, "poll", "poll0", "poll1")
    _wrap(worker.WorkerPool, "run_batch", "batch0", "batch1")
    worker._worker_main = _traced_worker_main


# The path of one flat job, in order: (process, stamp) pairs; consecutive ones make the segments. A stamp is the
# last of its tag in the job (the job's send after a wake-up message's, the reply's wait after the pool's check
# of its worker, the job's read after the wake-up's).
_PATH = (("P", "batch0"), ("P", "send0"), ("P", "send1"), ("P", "poll0"), ("W", "read1"), ("W", "serve0"),
         ("W", "run0"), ("W", "run1"), ("W", "send0"), ("W", "send1"), ("P", "poll1"), ("P", "batch1"))

_Stamps = dict[str, tuple[int, int]]


def _cut(stamps: list[tuple[str, int, int]], end: str, after: str) -> list[tuple[_Stamps, _Stamps]]:
    """The stamps cut into jobs, each ending at the first `end` after an `after`: per job the first and the
    last stamp of each tag."""
    jobs: list[tuple[_Stamps, _Stamps]] = []
    first: _Stamps = {}
    last: _Stamps = {}
    for tag, at, cpu in stamps:
        first.setdefault(tag, (at, cpu))
        last[tag] = (at, cpu)
        if tag == end and after in last:
            jobs.append((first, last))
            first, last = {}, {}
    return jobs


def segments(pool_stamps: list[tuple[str, int, int]],
             worker_stamps: list[tuple[str, int, int]]) -> dict[str, list[tuple[float, float]]]:
    """Each segment's (wall µs, CPU µs) per job; CPU is nan across processes."""
    pool_jobs = _cut(pool_stamps, "batch1", "batch0")
    worker_jobs = _cut(worker_stamps, "send1", "serve1")
    out: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, a: tuple[int, int], b: tuple[int, int], same: bool) -> None:
        out.setdefault(name, []).append(((b[0] - a[0]) / 1e3, (b[1] - a[1]) / 1e3 if same else float("nan")))

    for (pool_first, pool_last), (worker_first, worker_last) in zip(
            pool_jobs[-len(worker_jobs):], worker_jobs, strict=False):
        sides = {"P": pool_last, "W": worker_last}
        path = [(side, tag, sides[side][tag]) for side, tag in _PATH]
        for (side_a, tag_a, a), (side_b, tag_b, b) in itertools.pairwise(path):
            add(f"{side_a} {tag_a} -> {side_b} {tag_b}", a, b, side_a == side_b)
        if "warm0" in worker_last:  # the wake-up message and the worker's rehearsal
            add("  wake-up: P sent -> W read", pool_first["send1"], worker_first["read1"], False)
            add("  W rehearsal", worker_last["warm0"], worker_last["warm1"], True)
        add("pool: run_batch in all", pool_last["batch0"], pool_last["batch1"], True)
        add("worker: job read to reply sent", worker_last["read1"], worker_last["send1"], True)
    return out


def _case(name: str) -> tuple[ModelPackage, dict[str, np.ndarray]]:
    """A committed model by name (its first golden input), or `conv`: bench/vm.py's float conv of ~80 M MACs
    (a 16 KiB input, in the arena; the goal table's >= 1 ms model), on a random input."""
    if name == "conv":
        from bench.vm import CONV_INPUT, conv_model

        spec = ModelSpec((ArraySpec("x", "float32", CONV_INPUT),), CompareMode.TOLERANT, 16, Tolerance(64, 200))
        return (ModelPackage(b"conv", conv_model(), spec),
                {"x": np.random.default_rng(3).random(CONV_INPUT, dtype=np.float32)})
    model = load_model(name)
    return (ModelPackage(name.encode(), model.model_bytes, model.spec, model.golden),
            {k: np.array(v) for k, v in model.golden.cases[0].inputs.items()})


def steps(model: str, reps: int) -> None:
    """The per-job steps this round changed, old and new way alternating in one process, each timed right after
    a run of the model (cold: what a job meets after the raw run or its own) and again at once (warm); medians of
    thread CPU. Pool: the job's buffers (`job_parts` with a Writer, or the model's template); worker: the
    job's header and input views (`read_job` + `job_inputs`, or `JobReader`); the grid in the pool (`on_grid`:
    by dtype name with the float32 path of `quantize` as it was, or as now) and in the worker
    (`canonical_outputs`: the same two `quantize`s); the pool's read of a raw reply (plan read + `on_grid`, or
    `ReplyReader.canonical`, which grids a few float32 values from the reply's bytes)."""
    from vm.sandbox import flat, numeric
    from vm.sandbox.handoff import Arena, Writer
    from vm.sandbox.spec import FLOAT_DTYPES

    package, inputs = _case(model)
    session = create_session(package.model_bytes)
    names = [o.name for o in session.get_outputs()]
    layout = flat.Layout.of(package.spec.inputs)
    arrays = layout.arrays(inputs)
    assert arrays is not None
    arena = Arena(4 << 20)
    template = flat.job_template(package.model_id, layout, 60, True, arena.size)
    assert template is not None
    reader = flat.JobReader()
    raw = dict(zip(names, session.run(names, inputs), strict=True))
    grid_k = package.spec.grid_k
    specs = _loaded(session, package, 0).outputs

    def quantize_before(y: np.ndarray) -> np.ndarray:  # numeric.quantize's float32 path before this round
        grid: np.ndarray = np.rint(np.multiply(y, np.float64(2.0**grid_k), dtype=np.float64))
        assert float(np.abs(grid).max()) < 2.0**63
        return grid.astype(np.int64)

    def old_grid() -> Any:
        return {name: quantize_before(value) if value.dtype.name in FLOAT_DTYPES else value
                for name, value in raw.items()}

    def new_grid() -> Any:
        return numeric.on_grid(raw, grid_k)

    body = bytearray(b"".join(bytes(memoryview(p)) for p in flat.job_parts(
        package.model_id, layout, arrays, 60, Writer(arena), True)))
    reply_parts = flat.outputs_parts(raw, None, grid_k + 1)
    assert reply_parts is not None
    reply = bytearray(b"".join(bytes(memoryview(p)) for p in reply_parts))
    reply_reader = flat.ReplyReader()
    reply_reader.canonical(reply, None)  # its plan
    cases: dict[str, Callable[[], Any]] = {
        "pool, job buffers: job_parts + Writer": lambda: flat.job_parts(
            package.model_id, layout, arrays, 60, Writer(arena), True),
        "pool, job buffers: template": lambda: flat.templated_parts(template, arrays, arena),
        "worker, header + inputs: read_job + job_inputs": lambda: flat.job_inputs(
            flat.read_job(body), layout, body, arena),
        "worker, header + inputs: JobReader": lambda: reader.inputs(reader.read(body), layout, body, arena),
        "pool, grid: by dtype name, quantize before": old_grid,
        "pool, grid: numeric.on_grid": new_grid,
        "worker, grid: canonical_outputs, quantize before": lambda: {
            spec.name: quantize_before(raw[spec.name]) if spec.is_float else raw[spec.name] for spec in specs},
        "worker, grid: canonical_outputs": lambda: numeric.canonical_outputs(raw, specs, grid_k),
        # The pool's read of a raw reply: a numpy view by the reader's plan, then on_grid (as before the mlpjob
        # round), against `ReplyReader.canonical`, which for a few float32 values grids the reply's bytes.
        "pool, raw reply: plan read + on_grid": lambda: numeric.on_grid(reply_reader.read(reply, None), grid_k),
        "pool, raw reply: ReplyReader.canonical": lambda: reply_reader.canonical(reply, None),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    load = os.getloadavg()[0]
    for _ in range(reps):
        for name, fn in cases.items():
            session.run(names, inputs)
            for warm in (0, 1):
                start = _cpu()
                fn()
                times[name][warm].append((_cpu() - start) / 1e3)
    arena.close()
    print(f"{model}: {reps} of each, old and new alternating; thread CPU medians; load average {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    for name, (cold, warm) in times.items():
        print(f"  {name:<50}{statistics.median(cold):>8.1f}us cold{statistics.median(warm):>8.1f}us warm")


def _spin_counts(spin: SpinWait) -> dict[str, Any]:
    return {"spins": spin.spins, "spin_hits": spin.hits, "spins_contended": spin.contended, "spin_trips": spin.trips,
            "spin_gated": spin.gated, "spin_contended_shares": list(spin.contended_shares)}


def spin_census(jobs: int, pool_before: dict[str, Any], pool_after: dict[str, Any], worker_before: dict[str, Any],
                worker_after: dict[str, Any]) -> str:
    """How many of `jobs` single jobs each side waited for spinning and blocked (the rule had turned spinning
    off), how often the rule tripped and the CPU shares of the contended spins behind it; the worker's
    collections per job by generation. From two describe() counts around the jobs."""
    def delta(before: dict[str, Any], after: dict[str, Any], key: str) -> int:
        return int(after.get(key, 0)) - int(before.get(key, 0))

    parts = []
    for side, before, after in (("pool", pool_before, pool_after), ("worker", worker_before, worker_after)):
        shares = after.get("spin_contended_shares", [])
        low = f", contended shares {min(shares):.2f}..{max(shares):.2f}" if shares else ""
        parts.append(f"{side} spun {delta(before, after, 'spins')} (saw it {delta(before, after, 'spin_hits')}), "
                     f"blocked by the rule {delta(before, after, 'spin_gated')}, contended "
                     f"{delta(before, after, 'spins_contended')}, tripped {delta(before, after, 'spin_trips')}{low}")
    collected = [a - b for a, b in zip(worker_after.get("gc_collections", []), worker_before.get("gc_collections", []),
                                       strict=True)]
    gc_us = 1e6 * (sum(worker_after.get("gc_seconds", [])) - sum(worker_before.get("gc_seconds", [])))
    parts.append("worker collections per 1000 jobs " + "/".join(f"{1000 * c / jobs:.1f}" for c in collected)
                 + f", {gc_us / jobs:.2f} us per job (the stamps this bench keeps in the worker included)")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="digits_int8")
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--spin", choices=("on", "off", "forced"), default="on",
                        help="the pool's spin-waits: the node's, none, or on even on a contended core")
    parser.add_argument("--wake", action="store_true", help="the pool wakes its worker before a lone job")
    parser.add_argument("--rule", choices=("new", "old"), default="new",
                        help="the spin's contention rule: several spins judged (new) or one contended spin (old)")
    parser.add_argument("--steps", action="store_true",
                        help="instead: the steps this round changed, old and new way, in this process (`steps`)")
    args = parser.parse_args()
    if args.steps:
        steps(args.model, args.jobs)
        return
    trace_this_process()
    package, inputs = _case(args.model)
    session = create_session(package.model_bytes)
    names = [o.name for o in session.get_outputs()]
    job = InferJob(package, inputs)
    gap = args.gap_ms / 1e3
    options: dict[str, Any] = {"spin": args.spin != "off", "spin_min_share": 0.0 if args.spin == "forced" else 0.8}
    if args.wake:
        options["wake_up"] = True
    options["spin_rule"] = SpinWait.OLD_RULE if args.rule == "old" else (SpinWait.WINDOW, SpinWait.TRIP_AFTER)
    with worker.WorkerPool(1, **options) as pool:
        for _ in range(5):
            pool.run_batch([job])
        (before,) = pool.describe()
        pool_before = _spin_counts(pool.spin)
        STAMPS.clear()
        raw: list[float] = []
        raw_cpu: list[float] = []
        load = os.getloadavg()[0]
        for _ in range(args.jobs):
            time.sleep(gap)
            start, start_cpu = time.perf_counter(), _cpu()
            session.run(names, inputs)
            raw_cpu.append((_cpu() - start_cpu) / 1e9)
            raw.append(time.perf_counter() - start)
            time.sleep(gap)
            pool.run_batch([job])
        pool_stamps = list(STAMPS)
        (info,) = pool.describe()
        wakes = getattr(pool, "wakes", 0)
        census = spin_census(args.jobs, pool_before, _spin_counts(pool.spin), before, info)
    table = segments(pool_stamps, info["stamps"])
    print(f"{args.model}: {args.jobs} single jobs, {args.gap_ms:g} ms idle before each, spin-waits {args.spin}; "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}; raw session.run alone, same gap: median "
          f"{statistics.median(raw) * 1e6:.1f} us (CPU {statistics.median(raw_cpu) * 1e6:.1f} us); wake-up messages {wakes}, rehearsals {info.get('rehearsals')}")
    print(f"  rule {args.rule}: {census}")
    print(f"  {'segment (P: pool, W: worker)':<36}{'wall median':>12}{'IQR':>18}{'CPU median':>12}")
    for name, values in table.items():
        walls = [w for w, _ in values]
        q1, _, q3 = statistics.quantiles(walls, n=4)
        cpu = statistics.median(c for _, c in values)
        print(f"  {name:<36}{statistics.median(walls):>10.1f}us{f'{q1:.1f}..{q3:.1f}':>18}"
              f"{'' if cpu != cpu else f'{cpu:.1f}us':>12}")


if __name__ == "__main__":
    main()
