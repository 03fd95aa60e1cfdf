"""Benchmark of the VM inside blocks against raw baselines measured in the same run; asserts nothing.

1. Per-inference cost inside blocks: build_block (proposer) and validate_block (validator) with K inference
   transactions, minus an empty block, divided by K, against a raw `session.run` of the same model on the
   same input with the pinned session options. Goals: <= 1.10x for a model of >= 1 ms; <= +100 us per
   inference for tiny models when a block carries many. The node's real sandbox (worker processes) is used.
   The sandbox alone is also timed for one job per hand-off and for the whole block's jobs in one hand-off,
   through the shared-memory arena (the node's) and through the pipe (the old hand-off, the baseline), both
   in the same run; `--handoff pipe` makes the nodes themselves use the pipe.
2. Transfers applied per second: finalize_block of a block of transfers on a node that did not see it before
   (pure apply_block with signature checks + state root + staging), and after validate_block (the usual
   path: signatures cached, execution reused), against the raw Ed25519 verification rate of the same txs.

0. Issue 12's goal, one job per hand-off: per model, raw `session.run` and `WorkerPool.run_batch([job])` in
   alternating pairs, medians of each: VM/raw (goal <= 1.10x for models of >= 1 ms) and VM - raw (goal
   <= +100 us for tiny models). The node's pool (bounded spin-waits, off while a core is contended) and the
   baseline without spin-waits in the same run; `--spin forced` adds a pool that spins whatever the load
   (what a node on an idle machine gets); `--gap-ms` idles before each pair (a job that arrives on its own,
   as a validator's lone single job does: without it a tiny model's VM jobs, at most two raw runs apart,
   always find the worker still spinning, which flatters them; docs/performance-sandbox.md, "Single jobs: cold
   caches");
   a pool that sends single jobs as pickled batches (`pickled`, the baseline of the flat messages) runs too
   unless `--no-pickled`; `--wake` adds the node's pool with the wake-up before a lone job
   (`wake`; off in the node until an idle machine shows it pays). Each figure comes with a 90 % interval (a two-level bootstrap over `--rounds`
   rounds and the pairs in them) and the goal's verdict reads it: met, NOT met, or cannot tell (at this load):
   bench/verdict.py. `--runs N` repeats the table with new workers and gives the verdict over all runs.
   Pools take turns by rounds; before each pool's round the bench pauses `--settle-ms` (6 ms), so the worker
   of the pool before it, spinning for a next job that is not coming, does not take a core from this one's
   first pairs (with no pause, that contention turned the node pool's spin-waits off for most of a run:
   docs/performance-sandbox.md, "The goal table's pools").

3. (`--part rows` only) A block's rows in CPU time: per row, the node thread's CPU in `run_batch` and its
   parts, and the worker's CPU, against raw `session.run`'s CPU per call (`rows_cpu`).

Run: python -m bench.vm [--quick] [--handoff shm|pipe] [--part all|goal|blocks|transfers|rows] [--pairs N]
     [--rounds R] [--runs N] [--models digits,conv] [--spin on|off|both|forced] [--[no-]pickled] [--[no-]wake] [--gap-ms MS]
     [--k-tiny K] [--k-conv K]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bench.synth import conv
from bench.verdict import compute_intervals, compute_run_intervals, compute_verdict
from core.app import BlockTemplate
from core.hashing import ZERO_HASH, sha256
from core.tensor import Tensor
from core.types import Amount, Height, Round, Timestamp
from node.leveldb import LevelDBStore
from tools.genesis import account_key, make_genesis
from vm.app import VMApplication
from vm.engine import sandbox_limits
from vm.execute import infer_gas
from vm.genesis import Genesis, parse_genesis
from vm.models import load_model
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage, Runner
from vm.sandbox.golden import make_golden, save_golden
from vm.sandbox.protocol import InferRows
from vm.sandbox.session import create_session
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import NEXT_JOB_SPIN_S, WorkerPool, _serve_rows
from vm.txs import (
    GoldenVector,
    Infer,
    ModelClass,
    ModelMeta,
    TensorSpec,
    Transfer,
    build_tx,
    compute_model_id,
)

CONV_INPUT = (1, 4, 32, 32)


def conv_model() -> bytes:
    """A float conv net of ~80 M MACs (a few ms): 4->64->64->64 channels, 3x3, on 32x32, mean-pooled."""
    rng = np.random.default_rng(1)
    inits = []
    nodes = []
    src, cin = "x", 4
    for i in range(3):
        w = numpy_helper.from_array((rng.standard_normal((64, cin, 3, 3)) * 0.05).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [src, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        src, cin = f"r{i}", 64
    nodes.append(helper.make_node("ReduceMean", [src], ["y"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, CONV_INPUT)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return canonicalize(model.SerializeToString(), {"x": CONV_INPUT})


def bench_genesis(tmp: Path) -> tuple[Genesis, bytes]:
    """The devnet genesis with roomy block limits, plus the conv model."""
    model_bytes = conv_model()
    x = np.random.default_rng(2).random(CONV_INPUT, dtype=np.float32)
    spec = ModelSpec((ArraySpec("x", "float32", CONV_INPUT),), CompareMode.TOLERANT, 16, Tolerance(64, 200))
    out = LocalExecutor().run_batch([InferJob(ModelPackage(b"g", model_bytes, spec, None), {"x": x})])[0]
    assert out.outputs is not None
    (tmp / "conv.onnx").write_bytes(model_bytes)
    save_golden(tmp / "conv.golden.npz", make_golden([({"x": x}, dict(out.outputs))]))
    inputs = (TensorSpec("x", Tensor.from_numpy(x).dtype, CONV_INPUT),)
    outputs = (TensorSpec("y", Tensor.from_numpy(x).dtype, (1, 64)),)
    meta = ModelMeta("conv", inputs, outputs, ModelClass.TOLERANT, 16, 64, 200, Amount(0),
                     (GoldenVector((Tensor.from_numpy(x),), tuple(Tensor.from_numpy(v) for v in out.outputs.values())),))
    doc = make_genesis(4, accounts=20, overrides={
        "consensus": {"max_block_gas": 10**12}, "vm": {"max_tx_gas": 10**11}})
    doc["models"].append({
        "name": "conv", "id": compute_model_id(sha256(model_bytes), meta).hex(), "poi": False,
        "owner": doc["accounts"][0]["address"], "file": "conv.onnx", "golden": "conv.golden.npz",
        "class": "tolerant", "grid_k": 16, "t_abs": 64, "t_rel_ppm": 200, "fee_per_call": 0,
        "inputs": [{"name": "x", "dtype": "float32", "shape": list(CONV_INPUT)}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 64]}],
    })
    return parse_genesis(json.loads(json.dumps(doc)), base_dir=tmp), model_bytes


class Node:
    def __init__(self, tmp: Path, genesis: Genesis, name: str, shared_memory: bool = True, spin: bool = True) -> None:
        self.pool = WorkerPool(1, shared_memory=shared_memory, spin=spin)
        self.pool.start()
        self.app = VMApplication(LevelDBStore(tmp / name), genesis, executor=self.pool)

    def close(self) -> None:
        self.app.close()
        self.app.store.close()


def template(genesis: Genesis, app: VMApplication, later_ms: int = 0) -> BlockTemplate:
    """Height 1's template; `later_ms` moves its time (another block id: an app executes a block id once)."""
    vset = app.validator_set(Height(1))
    return BlockTemplate(genesis.chain_id, Height(1), Round(0), Timestamp(genesis.genesis_time + 1000 + later_ms),
                         vset.entries[1].address, ZERO_HASH, None, ())


def inference_rows(genesis: Genesis, proposer: Node, validator: Node, name: str, k: int,
                   make_input: Callable[[int], np.ndarray], rounds: int, pipe: WorkerPool) -> None:
    model = next(m for m in genesis.models if m.name == name)
    seed = genesis.seed_phrase or ""
    inputs = [make_input(i) for i in range(k)]
    record = proposer.app.view().model(model.model_id)
    assert record is not None
    txs = []
    for i in range(k):
        key = account_key(seed, 4 + i % 16)
        x = (Tensor.from_numpy(inputs[i]),)
        gas_limit = infer_gas(genesis.params, record, x)  # with the model's load: any of them may come first
        txs.append(build_tx(key, Infer(model.model_id, x, Amount(0)),
                            chain_id=genesis.chain_id, nonce=i // 16, gas_limit=gas_limit, fee=gas_limit))
    tpl = template(genesis, proposer.app)
    proposer.app.build_block(tpl, txs)  # warm: sessions cached in the workers, signatures cached
    block = proposer.app.build_block(tpl, txs)
    assert len(block.txs) == k, f"only {len(block.txs)} of {k} inferences fit"
    assert all(r.status.name == "OK" for r in block.results), {r.log for r in block.results}
    proposer.app.build_block(tpl, [])  # warm the empty block's path too
    assert validator.app.validate_block(block).is_valid
    input_name = model.meta.inputs[0].name
    session = create_session(model.model_bytes)
    names = [o.name for o in session.get_outputs()]
    feeds = {input_name: inputs[0]}
    calls = 300 if k > 50 else 20
    session.run(names, feeds)
    jobs = [InferJob(proposer.app.engine.package(model.model_id, model.meta, sandbox_limits(genesis.params)),
                     {input_name: x}) for x in inputs]
    pipe.run_batch(jobs)
    singles = min(k, 50)

    def one_by_one(pool: WorkerPool) -> None:
        for job in jobs[:singles]:
            pool.run_batch([job])

    # The validator remembers each block id it executed (vm/app.py `_executed`) and answers it again at once,
    # so each round validates blocks it has not seen (the same transactions, another time).
    fresh = [(proposer.app.build_block(template(genesis, proposer.app, r + 1), txs),
              proposer.app.build_block(template(genesis, proposer.app, r + 1), [])) for r in range(rounds)]
    # Every quantity is measured once per round, interleaved, and each one's median over the rounds is kept:
    # other load on a shared machine then disturbs raw and VM figures alike.
    samples: dict[str, list[float]] = {}
    # CPU of this (the node's) thread, from the same calls: the hand-off's and the VM's own Python, without the
    # worker's run; on a loaded machine the wall figures measure the scheduler as much.
    cpu: dict[str, list[float]] = {}

    def timed(key: str, fn: Callable[[], Any]) -> float:
        start_cpu = time.thread_time()
        wall = _timed(fn)
        cpu.setdefault(key, []).append(time.thread_time() - start_cpu)
        return wall

    for full, none in fresh:
        sample = {
            "raw": _timed(lambda: [session.run(names, feeds) for _ in range(calls)]) / calls,
            "sandbox": timed("sandbox", lambda: proposer.pool.run_batch(jobs)) / k,
            "pipe": _timed(lambda: pipe.run_batch(jobs)) / k,
            "single": _timed(lambda: one_by_one(proposer.pool)) / singles,
            "single_pipe": _timed(lambda: one_by_one(pipe)) / singles,
            "build": _timed(lambda: proposer.app.build_block(tpl, txs)),
            "build0": _timed(lambda: proposer.app.build_block(tpl, [])),
            "validate": timed("validate", lambda: validator.app.validate_block(full)),  # noqa: B023
            "validate0": timed("validate0", lambda: validator.app.validate_block(none)),  # noqa: B023
        }
        for quantity, value in sample.items():
            samples.setdefault(quantity, []).append(value)
    best = {key: statistics.median(values) for key, values in samples.items()}
    raw, sandbox = best["raw"], best["sandbox"]
    per_build = (best["build"] - best["build0"]) / k
    per_val = (best["validate"] - best["validate0"]) / k
    print(f"  {name:<12} K={k:<4} raw session.run {raw * 1e6:8.1f} us")
    for label, which in (("sandbox, K jobs per hand-off, shm", "sandbox"), ("sandbox, K jobs per hand-off, pipe", "pipe"),
                         ("sandbox, 1 job per hand-off, shm", "single"), ("sandbox, 1 job per hand-off, pipe", "single_pipe")):
        t = best[which]
        print(f"  {'':<19}{label:<35}{t * 1e6:9.1f} us = {t / raw:5.2f}x raw, +{(t - raw) * 1e6:7.1f} us")
    for label, t in (("build_block", per_build), ("validate_block", per_val)):
        print(f"  {'':<19}in {label:<15}{t * 1e6:9.1f} us = {t / raw:5.2f}x raw, +{(t - raw) * 1e6:7.1f} us "
              f"(VM's own share beyond the sandbox: {(t - sandbox) * 1e6:+7.1f} us)")
    med = {key: statistics.median(values) for key, values in cpu.items()}
    print(f"  {'':<19}node thread CPU per inference (median of {rounds}): K jobs per hand-off "
          f"{med['sandbox'] / k * 1e6:6.1f} us; validate_block {(med['validate'] - med['validate0']) / k * 1e6:6.1f} us "
          f"(load average {os.getloadavg()[0]:.2f})")


def handoff_cases(genesis: Genesis) -> list[tuple[str, ModelPackage, dict[str, np.ndarray]]]:
    """The models of the goal table: the two tiny committed ones, and float convs of ~1 ms and more (one with
    an ImageNet-sized 1x3x224x224 input, 588 KiB)."""
    cases = []
    for name in ("digits_int8", "digits_mlp"):
        m = load_model(name)
        cases.append((name, ModelPackage(name.encode(), m.model_bytes, m.spec, m.golden),
                      {k: np.array(v) for k, v in m.golden.cases[0].inputs.items()}))
    conv_meta = next(m for m in genesis.models if m.name == "conv")
    spec = ModelSpec((ArraySpec("x", "float32", CONV_INPUT),), CompareMode.TOLERANT, 16, Tolerance(64, 200))
    cases.append(("conv 80M MAC", ModelPackage(b"conv", conv_meta.model_bytes, spec),
                  {"x": np.random.default_rng(3).random(CONV_INPUT, dtype=np.float32)}))
    for synth in (conv(3, 16, 224), conv(16, 64, 56)):
        shape = synth.input_shape
        spec = ModelSpec((ArraySpec(synth.input_name, synth.input_dtype, shape),), CompareMode.TOLERANT, 16,
                         Tolerance(1 << 16, 1000))
        cases.append((synth.name, ModelPackage(synth.name.encode(), synth.model_bytes, spec),
                      {synth.input_name: synth.sample()}))
    return cases


POOL_SETTLE_S = 3 * NEXT_JOB_SPIN_S  # the goal table's pause between two pools' rounds (`handoff_rows`)


def handoff_rows(genesis: Genesis, pools: dict[str, WorkerPool], pairs: int, blocks: int = 8,
                 gap_s: float = 0.0, only: tuple[str, ...] = (),
                 settle_s: float = POOL_SETTLE_S) -> dict[tuple[str, str], _PairStats]:
    """The goal table: one job per hand-off through the pool against raw `session.run` (pinned options, same
    input), measured in alternating pairs (which goes first alternates too); medians of each side's wall time,
    with a 90 % two-level bootstrap interval and the goal's verdict from it (bench/verdict.py).
    Each model's pairs are cut into `blocks` rounds that visit the pools in turn, so a change in the machine's
    load reaches every pool alike, and the interval covers the drift between rounds.
    Also CPU per call (raw: this process; VM: this process + the worker, from /proc/PID/schedstat) with the
    range of the rounds' figures, the worker's wait in the run queue per job (on a loaded machine the wall
    figures measure the scheduler), and the mean wall time of the runtime's own `run` inside the worker (the
    rest of the VM time is the hand-off).
    `gap_s` > 0 sleeps that long before each pair: every job then finds both processes idle (their spin-waits
    over, their vCPUs halted or given to others), as a single job does that arrives on its own.
    Returns each (model, pool)'s pairs, for the verdict over several runs (`runs_rows`)."""
    measured: dict[tuple[str, str], _PairStats] = {}
    workers = {label: int(pool.describe()[0]["pid"]) for label, pool in pools.items()}
    print(f"  load average at start: {os.getloadavg()[0]:.2f}; "
          + (f"{gap_s * 1e3:g} ms idle before each pair" if gap_s else "pairs back to back")
          + f"; {blocks} rounds per model and pool; [90 % interval]; CPU (min..max over rounds)")
    print(f"  {'model':<16}{'pool':<9}{'raw':>9} {'VM':>9}  {'VM - raw [interval]':<26} {'VM/raw [interval]':<23}"
          f"{'CPU raw':>8}{'CPU VM':>9}  {'CPU VM - raw':<22}{'queued':>8}{'in worker':>10}  goal (wall)")
    for name, package, inputs in handoff_cases(genesis):
        if only and not any(part in name for part in only):
            continue
        session = create_session(package.model_bytes)
        names = [o.name for o in session.get_outputs()]
        job = InferJob(package, inputs)
        for pool in pools.values():
            for _ in range(3):
                session.run(names, inputs)
                pool.run_batch([job])
        n = pairs if "digits" in name else max(20, pairs // 10)
        per_block = max(1, n // blocks)
        stats = {label: _PairStats() for label in pools}
        for _ in range(blocks):
            for label, pool in pools.items():
                # The pool measured before this one leaves its worker spinning for a next job (up to
                # NEXT_JOB_SPIN_S) that is not coming: let that spin end first, or on two vCPUs it takes a core
                # from this pool's first pairs, and this pool's spin rule counts the contention as a busy
                # machine's (a node runs one pool: no other pool's worker spins beside it).
                time.sleep(settle_s)
                stats[label].measure(pool, workers[label], session, names, inputs, job, per_block, gap_s)
        for label, st in stats.items():
            print(_goal_row(name, label, st))
            measured[(name, label)] = st
    for label, pool in pools.items():
        (info,) = pool.describe()
        print(f"  spin-waits, {label}: pool {pool.spin.hits}/{pool.spin.spins} saw the reply "
              f"({pool.spin.contended} contended, {pool.spin.trips} trips, {pool.spin.gated} blocked by the rule); "
              f"worker {info.get('spin_hits', 0)}/{info.get('spins', 0)} saw the next job "
              f"({info.get('spins_contended', 0)} contended, {info.get('spin_trips', 0)} trips, "
              f"{info.get('spin_gated', 0)} blocked by the rule); "
              f"{getattr(pool, 'rehearsals', 0)} rereads of the last reply before a reply; "
              f"{getattr(pool, 'wakes', 0)} wake-ups before a lone job, {info.get('rehearsals', 0)} rehearsed")
    print(f"  load average at end: {os.getloadavg()[0]:.2f}")
    return measured


def runs_rows(runs: list[dict[tuple[str, str], _PairStats]]) -> None:
    """Each model's and pool's figure over all runs, with a three-level bootstrap interval (runs, rounds,
    pairs: bench/verdict.py) and the verdict from it, and how the single runs' verdicts fell."""
    print(f"  over {len(runs)} runs (each its own workers): [90 % interval over runs, rounds and pairs]")
    for key in runs[0]:
        name, label = key
        stats = [run[key] for run in runs if key in run]
        diff, ratio = compute_run_intervals([st.rounds for st in stats])
        raw = statistics.median(t for st in stats for raw_times, _ in st.rounds for t in raw_times)
        queued = sum(st.worker_queued for st in stats) / sum(len(r) for st in stats for r, _ in st.rounds)
        singles = [_verdict(name, st) for st in stats]
        overall = (compute_verdict(ratio, 1.10, 0.10 * raw, queued) if raw >= 1e-3 else
                   compute_verdict(diff, 100e-6, 100e-6, queued) if "digits" in name else "(between)")
        tally = ", ".join(f"{singles.count(v)} {v}" for v in dict.fromkeys(singles))
        print(f"  {name:<16}{label:<9}VM - raw {diff.value * 1e6:+.1f}us [{diff.low * 1e6:+.0f}, "
              f"{diff.high * 1e6:+.0f}]  VM/raw {ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]  "
              f"goal: {overall}  (single runs: {tally})")


def _verdict(name: str, st: _PairStats) -> str:
    """One run's goal verdict for a model and pool."""
    diff, ratio = compute_intervals(st.rounds)
    raw = statistics.median(t for raw_times, _ in st.rounds for t in raw_times)
    queued = st.worker_queued / sum(len(r) for r, _ in st.rounds)
    if raw >= 1e-3:
        return compute_verdict(ratio, 1.10, 0.10 * raw, queued)
    return compute_verdict(diff, 100e-6, 100e-6, queued) if "digits" in name else "(between)"


def _goal_row(name: str, label: str, st: _PairStats) -> str:
    """One model's and pool's line of the goal table."""
    diff, ratio = compute_intervals(st.rounds)
    raw = statistics.median(t for raw_times, _ in st.rounds for t in raw_times)
    vm = raw + diff.value
    count = sum(len(raw_times) for raw_times, _ in st.rounds)
    raw_cpu = [c[0] / c[3] for c in st.cpu]
    vm_cpu = [(c[1] + c[2]) / c[3] for c in st.cpu]
    cpu_diff = [v - r for v, r in zip(vm_cpu, raw_cpu, strict=True)]
    queued = st.worker_queued / count
    in_worker = st.run_seconds / max(1, st.runs)
    goal = f"{'<= 1.10x' if raw >= 1e-3 else '<= +100 us'}: {_verdict(name, st)}" if raw >= 1e-3 or "digits" in name \
        else "(between)"
    us = 1e6
    return (f"  {name:<16}{label:<9}{raw * us:>7.1f}us {vm * us:>7.1f}us  "
            f"{f'{diff.value * us:+.1f}us [{diff.low * us:+.0f}, {diff.high * us:+.0f}]':<26} "
            f"{f'{ratio.value:.2f}x [{ratio.low:.2f}, {ratio.high:.2f}]':<23}"
            f"{statistics.median(raw_cpu) * us:>6.1f}us{statistics.median(vm_cpu) * us:>7.1f}us  "
            f"{f'{statistics.median(cpu_diff) * us:+.1f}us ({min(cpu_diff) * us:+.0f}..{max(cpu_diff) * us:+.0f})':<22}"
            f"{queued * us:>6.1f}us{in_worker * us:>8.1f}us  {goal}")


def _pool_with_wake_up(shm: bool) -> WorkerPool:
    """The node's pool with the wake-up before a lone job (a sandbox from before it has none: the node's)."""
    try:
        return WorkerPool(1, shared_memory=shm, wake_up=True)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return WorkerPool(1, shared_memory=shm)


class _PairStats:
    """One pool's raw/VM pairs of one model, by round: wall times, and per round the CPU of this process per
    side and of the worker over the VM calls; the worker's run-queue wait and runtime `run` time."""

    def __init__(self) -> None:
        self.rounds: list[tuple[list[float], list[float]]] = []
        self.cpu: list[tuple[float, float, float, int]] = []  # raw, VM (this process), worker, pairs
        self.worker_queued = self.run_seconds = 0.0
        self.runs = 0

    def measure(self, pool: WorkerPool, worker: int, session: Any, names: list[str],
                inputs: dict[str, np.ndarray], job: InferJob, n: int, gap_s: float) -> None:
        raw_times: list[float] = []
        vm_times: list[float] = []
        cpu = [0.0, 0.0]
        ran0, queued0 = _schedstat(worker)
        (before,) = pool.describe()
        for i in range(n):
            if gap_s:
                time.sleep(gap_s)
            for side in ((0, 1) if (i + len(self.rounds)) % 2 else (1, 0)):
                start, start_cpu = time.perf_counter(), time.process_time()
                if side:
                    pool.run_batch([job])
                else:
                    session.run(names, inputs)
                (vm_times if side else raw_times).append(time.perf_counter() - start)
                cpu[side] += time.process_time() - start_cpu
        ran1, queued1 = _schedstat(worker)
        (after,) = pool.describe()
        self.rounds.append((raw_times, vm_times))
        self.cpu.append((cpu[0], cpu[1], ran1 - ran0, n))
        self.worker_queued += queued1 - queued0
        # (A pool without these diagnostics, an older one being compared, shows nan.)
        self.run_seconds += after.get("run_seconds", math.nan) - before.get("run_seconds", math.nan)
        self.runs += after.get("runs", 0) - before.get("runs", 0)


def _schedstat(pid: int) -> tuple[float, float]:
    """Seconds a process has run on a CPU and waited in a run queue (Linux /proc/PID/schedstat)."""
    ran, queued, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(ran) / 1e9, int(queued) / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def transfer_rows(genesis: Genesis, tmp: Path, n: int, rounds: int) -> None:
    seed = genesis.seed_phrase or ""
    senders = [account_key(seed, i) for i in range(4, 20)]
    txs = [build_tx(senders[i % 16], Transfer(senders[(i + 1) % 16].address, Amount(1)), chain_id=genesis.chain_id,
                    nonce=i // 16, gas_limit=1000, fee=1000) for i in range(n)]
    builder = VMApplication(LevelDBStore(tmp / "tb"), genesis, executor=LocalExecutor())
    block = builder.build_block(template(genesis, builder), txs)
    n = len(block.txs)

    def finalize(app: VMApplication) -> None:
        with contextlib.suppress(_Rollback), app.store.write_batch() as batch:
            app.finalize_block(block, batch)
            raise _Rollback  # discard the batch: the node stays at height 0, each round applies the same block

    best: dict[str, float] = {}
    for r in range(rounds):
        app = VMApplication(LevelDBStore(tmp / f"cold{r}"), genesis, executor=LocalExecutor())
        sample = {"raw": _timed(lambda: [tx.verify_signature() for tx in block.txs])}
        sample["cold"] = _timed(lambda: finalize(app))  # noqa: B023
        sample["validate"] = _timed(lambda: app.validate_block(block))  # noqa: B023
        sample["finalize"] = _timed(lambda: finalize(app))  # noqa: B023
        for key, value in sample.items():
            best[key] = min(best.get(key, value), value)
        app.close()
        app.store.close()
    raw_rate = n / best["raw"]
    print(f"  raw Ed25519 verify of the same txs       {raw_rate:12,.0f} tx/s")
    for label, key, note in (
        ("apply (finalize, not seen before)", "cold", "signatures verified, apply_block, state root, staging"),
        ("validate_block (signatures cached)", "validate", "re-execution, state root"),
    ):
        rate = n / best[key]
        print(f"  {label:<40} {rate:12,.0f} tx/s   {rate / raw_rate:5.2f}x raw verify ({note})")
    print(f"  finalize after validate_block: {best['finalize'] * 1e3:.2f} ms per block (execution reused: staging)")
    print(f"  block: {n} transfers, {len(block.encode()):,} bytes")
    builder.close()
    builder.store.close()


class _Rollback(Exception):
    pass


def goal_run(genesis: Genesis, args: argparse.Namespace, shm: bool) -> dict[tuple[str, str], _PairStats]:
    """One run of the goal table: new pools (new workers), each model's pairs."""
    with (WorkerPool(1, shared_memory=shm) as pool, WorkerPool(1, shared_memory=shm, spin=False) as still,
          WorkerPool(1, shared_memory=shm, spin_min_share=0.0) as forced,
          WorkerPool(1, shared_memory=shm, flat_jobs=False) as pickled,
          _pool_with_wake_up(shm) as woken):
        choice = {"on": {"node": pool}, "off": {"no spin": still}, "both": {"node": pool, "no spin": still},
                  "forced": {"node": pool, "forced": forced, "no spin": still}}
        pools = choice[args.spin]
        if args.pickled:
            pools["pickled"] = pickled
        if args.wake:
            pools["wake"] = woken
        return handoff_rows(genesis, pools, args.pairs or (300 if args.quick else 2000), args.rounds,
                            args.gap_ms / 1e3, tuple(m for m in args.models.split(",") if m), args.settle_ms / 1e3)


def rows_cpu(genesis: Genesis, rounds: int, k_tiny: int, k_conv: int, only: tuple[str, ...] = ()) -> None:
    """A block's inferences of one model in one hand-off (rows), in CPU time: per row, the node thread's CPU
    in `run_batch` (and in its parts: writing the rows, waiting and reading the reply, splitting the results),
    the worker's CPU (/proc/PID/schedstat) and the runtime's own wall time in it, against raw `session.run`'s
    CPU per call on the same inputs (this thread, one call each); and `serve`: the worker's serving of the
    same rows job (`_serve_rows`) run in this thread, without the pipe or another process's caches. Rounds
    alternate raw, serve and pool; medians.
    CPU time, unlike wall time, does not count the waits a loaded machine adds."""
    print(f"3. A block's rows, CPU per row (medians of {rounds} rounds, raw and pool alternating; load average "
          f"{os.getloadavg()[0]:.2f})")
    print(f"  {'model':<14}{'K':>5}{'raw':>9}{'worker':>9}{'(run)':>8}{'node':>8}{'(wire':>8}{'reply':>7}"
          f"{'split)':>8}{'worker/raw':>11}{'(w+n)/raw':>10}{'serve':>9}{'serve/raw':>10}   us of CPU per row")
    cases = [(name, package, inputs) for name, package, inputs in handoff_cases(genesis)
             if name in ("digits_int8", "conv 80M MAC") and (not only or any(p in name for p in only))]
    rng = np.random.default_rng(5)
    for name, package, inputs in cases:
        ((input_name, sample),) = inputs.items()
        k = k_tiny if "digits" in name else k_conv
        rows = [(rng.integers(0, 256, sample.shape).astype(sample.dtype) if sample.dtype.kind in "iu"
                 else rng.random(sample.shape, dtype=sample.dtype)) for _ in range(k)]
        jobs = [InferJob(package, {input_name: x}) for x in rows]
        session = create_session(package.model_bytes)
        names = [o.name for o in session.get_outputs()]
        # The worker's own serving of the rows, in this process (no pipe, no other process's caches).
        runner = Runner(1 << 30)
        rows_job = InferRows(tuple(range(k)), package.model_id, package, {input_name: np.stack(rows)})
        _serve_rows(runner, rows_job, None, None, frozenset())
        with WorkerPool(1) as pool:
            pid = int(pool.describe()[0]["pid"])
            parts = {"wire": 0.0, "collect": 0.0, "unrows": 0.0}
            for part in parts:
                method = getattr(pool, f"_{part}")

                def stamped(*args: Any, _method: Any = method, _part: str = part,
                            _parts: dict[str, float] = parts) -> Any:
                    start = time.thread_time()
                    try:
                        return _method(*args)
                    finally:
                        _parts[_part] += time.thread_time() - start
                setattr(pool, f"_{part}", stamped)
            pool.run_batch(jobs)
            for x in rows[:3]:
                session.run(names, {input_name: x})
            samples: dict[str, list[float]] = {}
            for _ in range(rounds):
                start = time.thread_time()
                for x in rows:
                    session.run(names, {input_name: x})
                raw = time.thread_time() - start
                start = time.thread_time()
                _serve_rows(runner, rows_job, None, None, frozenset())
                serve = time.thread_time() - start
                for part in parts:
                    parts[part] = 0.0
                (before,) = pool.describe()
                ran0, _ = _schedstat(pid)
                start = time.thread_time()
                pool.run_batch(jobs)
                node = time.thread_time() - start
                ran1, _ = _schedstat(pid)
                (after,) = pool.describe()
                for key, value in (("raw", raw), ("worker", ran1 - ran0), ("node", node), ("serve", serve),
                                   ("run", after.get("run_seconds", math.nan) - before.get("run_seconds", math.nan)),
                                   ("wire", parts["wire"]), ("reply", parts["collect"] - parts["unrows"]),
                                   ("split", parts["unrows"])):
                    samples.setdefault(key, []).append(value / k * 1e6)
        med = {key: statistics.median(values) for key, values in samples.items()}
        print(f"  {name:<14}{k:>5}{med['raw']:9.1f}{med['worker']:9.1f}{med['run']:8.1f}{med['node']:8.1f}"
              f"{med['wire']:8.1f}{med['reply']:7.1f}{med['split']:8.1f}{med['worker'] / med['raw']:10.3f}x"
              f"{(med['worker'] + med['node']) / med['raw']:9.3f}x{med['serve']:9.1f}{med['serve'] / med['raw']:9.3f}x")
    print(f"  load average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--handoff", choices=("shm", "pipe"), default="shm", help="the nodes' hand-off")
    parser.add_argument("--part", choices=("all", "goal", "blocks", "transfers", "rows"), default="all",
                        help="rows (not in all): a block's rows in CPU time per row, node and worker")
    parser.add_argument("--k-conv", type=int, default=8, help="rows: inferences per block of the conv")
    parser.add_argument("--pairs", type=int, default=0, help="raw/VM pairs per tiny model in the goal table")
    parser.add_argument("--spin", choices=("on", "off", "both", "forced"), default="both",
                        help="goal table: the node's pool (spin-waits on), the baseline without them, both, or "
                             "both and a pool that spins even on a contended core (what an idle machine would give); "
                             "blocks: 'off' gives the nodes pools without spin-waits")
    parser.add_argument("--wake", action=argparse.BooleanOptionalAction, default=False,
                        help="goal table: also the node's pool with the wake-up before a lone job (`wake`)")
    parser.add_argument("--pickled", action=argparse.BooleanOptionalAction, default=True,
                        help="goal table: also a pool that sends single jobs as pickled batches (the node's spin "
                             "settings; the baseline of the flat messages)")
    parser.add_argument("--settle-ms", type=float, default=POOL_SETTLE_S * 1e3,
                        help="goal table: pause before each pool's round, so the last pool's worker stops spinning")
    parser.add_argument("--rounds", type=int, default=8, help="goal table: rounds per model and pool")
    parser.add_argument("--runs", type=int, default=1,
                        help="goal table: runs, each with new workers, and the verdict over all of them")
    parser.add_argument("--models", default="",
                        help="goal table and blocks: only the models whose names contain one of these "
                             "(comma-separated)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="goal table: idle time before each raw/VM pair (jobs that arrive on their own)")
    parser.add_argument("--k-tiny", type=int, default=0,
                        help="blocks: inferences per block of the tiny models (default 100 quick, 400 else)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    tmp = Path(tempfile.mkdtemp(prefix="bench-vm-"))
    try:
        genesis, _ = bench_genesis(tmp)
        if args.part in ("all", "goal"):
            print("0. Issue 12's goal: one job per hand-off through the pool vs raw session.run (medians of pairs)")
            shm = args.handoff == "shm"
            runs = [goal_run(genesis, args, shm) for _ in range(args.runs)]
            if args.runs > 1:
                runs_rows(runs)
        if args.part in ("all", "blocks"):
            shm = args.handoff == "shm"
            spin = args.spin != "off"
            proposer, validator = Node(tmp, genesis, "p", shm, spin), Node(tmp, genesis, "v", shm, spin)
            print(f"  nodes' pools: {'spin-waits on' if spin else 'no spin-waits'}; load average "
                  f"{os.getloadavg()[0]:.2f}")
            pipe = WorkerPool(1, shared_memory=False)
            rng = np.random.default_rng(0)
            print("1. Per-inference cost inside blocks (worker-process sandbox) vs raw session.run, same model and input")
            k_tiny = args.k_tiny or (100 if args.quick else 400)
            only = [m for m in args.models.split(",") if m]
            cases: list[tuple[str, int, Callable[[int], np.ndarray]]] = [
                ("digits_int8", k_tiny, lambda i: rng.integers(0, 256, (1, 64)).astype(np.uint8)),
                ("digits_mlp", k_tiny, lambda i: rng.random((1, 64), dtype=np.float32)),
                ("conv", 8 if args.quick else 32, lambda i: rng.random(CONV_INPUT, dtype=np.float32))]
            for name, k, make_input in cases:
                if not only or any(part in name for part in only):
                    inference_rows(genesis, proposer, validator, name, k, make_input, rounds, pipe)
            proposer.close()
            validator.close()
            pipe.close()
        if args.part == "rows":
            rows_cpu(genesis, 5 if args.quick else 9, args.k_tiny or 2500, args.k_conv,
                     tuple(m for m in args.models.split(",") if m))
        if args.part in ("all", "transfers"):
            print("2. Transfers per second vs raw signature verification (same transactions)")
            transfer_rows(genesis, tmp, 2000 if args.quick else 4000, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
