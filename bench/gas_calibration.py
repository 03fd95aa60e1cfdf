"""Gas calibrated to time: ns per unit of work on this machine, per cost class of the schedule, against the
gas the schedule charges for that unit.

The reference rate is the one the block limits promise: `max_block_gas` gas must validate within a third of
`timeout_propose` (docs/vm.md, "Gas"), i.e. R = max_block_gas / (timeout_propose / 3) gas per ns. For each
class the bench prints the measured ns per unit, the gas a unit needs at R (ns x R) and the gas the schedule
charges; `margin` = charged / needed must be >= 1 for the class to be safe (the worst block then validates
in time). Every run goes through ONNX Runtime with the chain's pinned session options (one thread), timed
in CPU time (best of N), so a machine shared with other jobs measures what a dedicated core would; the worker
round trip spans two processes and is timed as the CPU time of both (the pool's and the worker's, from /proc); so is the
registration check per file byte through a worker (the chain's path, hand-off of the bytes included), beside
the in-process figure the price was derived from.

The schedule (vm/sandbox/limits.py GasSchedule, the op weights in vm/sandbox/ops.py) is derived from these
figures with a safety factor of 2: every class should show a margin >= 2 (docs/sandbox.md, "Gas"). The last
part checks the goal on a real network: a ResNet-50 inference (onnx's `light_resnet50`, upgraded to opset
17) is metered, timed and compared with max_tx_gas and max_block_gas.

The "ml:" rows time the `ai.onnx.ml` kernel machines and LabelEncoder (bench/synth_ml.py), one unit each:
an RBF support-vector element (ORT's scalar distance loop, with the exp per support vector), a dual-sum
coefficient (a scalar loop), a classes^2 unit of libsvm's probability coupling, a LabelEncoder lookup.

Run: `python -m bench.gas_calibration [--genesis genesis.json] [--repeat N] [--skip-resnet] [--only-ml]
[--only-cold-load] [--cold-load-sizes 8,32,64,100]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.synth import (
    Synth,
    conv,
    conv_weights,
    elementwise,
    expand,
    lookup,
    matmul,
    node_chain,
    resnet50,
    weights,
)
from bench.synth_ml import label_encoder, svm_classifier, svm_regressor
from vm.engine import sandbox_limits
from vm.genesis import REPO_ROOT, load_genesis
from vm.params import Params
from vm.sandbox.check import validate_model
from vm.sandbox.executor import CheckJob, InferJob, ModelPackage
from vm.sandbox.golden import GoldenVectors
from vm.sandbox.limits import GasSchedule, SandboxLimits
from vm.sandbox.meter import load_gas, meter
from vm.sandbox.session import create_session
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool


def best_of(fn: Callable[[], object], repeat: int, clock: Callable[[], int] = time.process_time_ns) -> float:
    """Best time of `repeat` calls, in ns (best: the machine is shared, noise only adds). The default clock
    is this process's CPU time: what the work costs a core of its own (sessions run on one thread)."""
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def _cpu_ns(pid: int) -> int:
    """CPU time of another process so far (utime + stime, in clock ticks of 10 ms: time long runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def run_ns(s: Synth, repeat: int) -> float:
    session = create_session(s.model_bytes)
    feeds = {s.input_name: s.sample()}
    session.run(None, feeds)
    return best_of(lambda: session.run(None, feeds), repeat)


def load_ns(s: Synth, repeat: int) -> float:
    return best_of(lambda: create_session(s.model_bytes), repeat)


def cold_path_parts(s: Synth, limits: SandboxLimits, repeat: int) -> list[tuple[int, int, int]]:
    """CPU of a model's first use on a fresh validator, as a node pays it, `repeat` times (a new worker each
    time, its start not counted): (node: the blob file read and SHA-256 checked by node.blobstore; node: the
    hand-off, pickling and pipe; worker: unpickling, session, index scan and one run), in ns."""
    return first_call_parts(s.model_bytes, spec_of(s, limits), {s.input_name: s.sample()}, None, repeat)


def first_call_parts(model_bytes: bytes, spec: ModelSpec, inputs: dict[str, np.ndarray],
                     golden: GoldenVectors | None, repeat: int) -> list[tuple[int, int, int]]:
    """The first call of a model on a fresh validator, `repeat` times on a fresh worker each (its start not
    counted): (node: the blob file read and SHA-256 checked by node.blobstore; node: the hand-off; worker:
    session, the `golden` vectors' runs, the call), CPU ns. The one sampler of the cold path
    (`cold_path_parts` here, `bench.model_gas` on real models)."""
    import hashlib
    import tempfile

    from core.types import Hash32
    from node.blobstore import FileBlobStore

    digest = Hash32(hashlib.sha256(model_bytes).digest())
    samples: list[tuple[int, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="cold-path-") as tmp:
        store = FileBlobStore(tmp)
        store.put_blobs({digest: model_bytes})
        for _ in range(repeat):
            with WorkerPool(1) as pool:
                (info,) = pool.describe()
                start, worker_start = time.process_time_ns(), _cpu_ns(info["pid"])
                stored = store.get_blob(digest)
                assert stored is not None
                read = time.process_time_ns()
                [result] = pool.run_batch([InferJob(ModelPackage(bytes(digest), stored, spec, golden), inputs)])
                samples.append((read - start, time.process_time_ns() - read, _cpu_ns(info["pid"]) - worker_start))
                assert result.outputs is not None
                del stored
    return samples


def cold_path_ns(s: Synth, limits: SandboxLimits, repeat: int) -> float:
    """Best total CPU (node and worker) of `cold_path_parts`."""
    return float(min(sum(p) for p in cold_path_parts(s, limits, repeat)))


def cold_load_row(table: Table, g: GasSchedule, wide: SandboxLimits, repeat: int) -> None:
    """The cold path a validator pays per file byte (state read, hashing, hand-off, session: `load_per_kib` is
    priced for it, not for the session alone), 1 -> 48 MB (about the largest first call max_tx_gas allows)."""
    small, big = weights(1 << 20, limits=wide), weights(48 << 20, limits=wide)
    cold = (cold_path_ns(big, wide, max(3, repeat // 2)) - cold_path_ns(small, wide, max(3, repeat // 2))) / (
        len(big.model_bytes) - len(small.model_bytes))
    table.row("load: cold path per file byte (file, worker)", cold, g.load_per_kib / 1024)


def cold_load_sizes(g: GasSchedule, wide: SandboxLimits, rate: float, max_tx_gas: int, repeat: int,
                    sizes_mb: tuple[int, ...], make: Callable[..., Synth] = weights) -> None:
    """The whole cold path of weight-heavy models of several sizes, median of `repeat` (each on a fresh
    worker), by part, against what `load_gas` charges for it (at the reference rate: margin = charged time /
    measured CPU; the schedule aims at >= 2), and the slope per file byte between the smallest and largest.
    `make`: `weights` (a MatMul's, which ONNX Runtime prepacks: the dearest bytes) or `conv_weights` (a CNN's)."""
    print(f"cold load by size, {make.__name__} models (CPU medians of {repeat}, a fresh worker each; load average "
          f"{os.getloadavg()[0]:.1f}):")
    print(f"  {'MiB':>5}{'read+hash ms':>14}{'hand-off ms':>13}{'worker ms':>11}{'total ms':>10}{'ns/byte':>9}"
          f"{'load gas':>14}{'= ms':>8}{'margin':>8}  vs max_tx_gas")
    totals: dict[int, tuple[int, float]] = {}
    for mb in sizes_mb:
        s = make(mb << 20, limits=wide)
        parts = cold_path_parts(s, wide, repeat)
        read, hand, worker = (statistics.median(p[i] for p in parts) for i in range(3))
        total = statistics.median(sum(p) for p in parts)
        n = len(s.model_bytes)
        totals[mb] = (n, total)
        # The synthetic models have 2 nodes; one golden run of either is negligible (256 MACs per weight).
        charged = load_gas(g, model_bytes=n, nodes=2, golden_runs=0, gas_per_call=0)
        print(f"  {n / (1 << 20):>5.0f}{read / 1e6:>14.1f}{hand / 1e6:>13.1f}{worker / 1e6:>11.1f}{total / 1e6:>10.1f}"
              f"{total / n:>9.2f}{charged:>14,}{charged / rate / 1e6:>8.0f}{charged / (total * rate):>8.2f}  "
              f"{charged / max_tx_gas:.2f}")
    (n0, t0), (n1, t1) = totals[min(sizes_mb)], totals[max(sizes_mb)]
    slope = (t1 - t0) / (n1 - n0)
    print(f"  slope {min(sizes_mb)} -> {max(sizes_mb)} MB: {slope:.2f} ns per file byte; load_per_kib "
          f"{g.load_per_kib} = {g.load_per_kib / 1024:.2f} gas per byte (margin {g.load_per_kib / 1024 / (slope * rate):.2f}); "
          f"at a margin of 2 it would be {math.ceil(2 * slope * rate * 1024):,} per KiB")


def spec_of(s: Synth, limits: SandboxLimits) -> ModelSpec:
    inputs = (ArraySpec(s.input_name, s.input_dtype, s.input_shape),)
    if s.exact:
        return ModelSpec(inputs, CompareMode.EXACT, limits=limits)
    return ModelSpec(inputs, CompareMode.TOLERANT, 16, Tolerance(1 << 16, 1000), limits)


class Table:
    def __init__(self, rate: float) -> None:
        self.rate = rate  # gas per ns
        self.worst = float("inf")
        print(f"  {'class':<44}{'ns/unit':>12}{'gas needed':>13}{'gas charged':>13}{'margin':>9}")

    def row(self, label: str, ns_per_unit: float, charged: float) -> None:
        needed = ns_per_unit * self.rate
        margin = charged / needed if needed > 0 else float("inf")
        self.worst = min(self.worst, margin)
        flag = "" if margin >= 1 else "   UNDERPRICED"
        print(f"  {label:<44}{ns_per_unit:>12.3f}{needed:>13.3f}{charged:>13.3f}{margin:>9.2f}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genesis", type=Path, default=REPO_ROOT / "genesis.json")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--only-ml", action="store_true", help="only the ai.onnx.ml rows")
    parser.add_argument("--only-cold-load", action="store_true", help="only the cold load per file byte")
    parser.add_argument("--cold-load-sizes", default="",
                        help="only the cold load of weight models of these sizes in MB, e.g. 8,32,64,100")
    args = parser.parse_args()
    genesis = load_genesis(args.genesis)
    params = genesis.params
    limits = sandbox_limits(params)
    g = limits.gas
    budget_ns = params.consensus.timeout_propose_ms * 1e6 / 3
    rate = params.consensus.max_block_gas / budget_ns
    print(f"reference rate: max_block_gas {params.consensus.max_block_gas:,} in timeout_propose/3 = "
          f"{budget_ns / 1e6:.0f} ms -> {rate:.4f} gas/ns; best of {args.repeat}")
    table = Table(rate)
    r = args.repeat
    wide = SandboxLimits(max_model_bytes=128 << 20, max_parameter_bytes=128 << 20, max_tensor_bytes=128 << 20,
                         max_tensor_elements=1 << 26)
    if args.cold_load_sizes:
        for make in (weights, conv_weights):
            cold_load_sizes(g, wide, rate, params.vm.max_tx_gas, r,
                            tuple(int(mb) for mb in args.cold_load_sizes.split(",")), make)
        return
    if args.only_cold_load:
        cold_load_row(table, g, wide, r)
        return
    ml_rows(table, r)
    if args.only_ml:
        print(f"worst margin: {table.worst:.2f}")
        return

    tiny_model = node_chain(1)
    # Run time: per node (a chain of [1,1] Adds), per element, per activation byte, per MAC.
    small, big = node_chain(256), node_chain(4096)
    per_node = (run_ns(big, r * 3) - run_ns(small, r * 3)) / (4096 - 256)
    table.row("run: per node (int32[1,1] Add chain)", per_node,
              (meter(big.model_bytes).gas - meter(small.model_bytes).gas) / (4096 - 256))
    for op in ("Add", "Exp", "Div", "Sqrt"):
        a, b = elementwise(op, 1 << 18), elementwise(op, 1 << 21)
        units = (1 << 21) - (1 << 18)
        table.row(f"run: {op} per float32 element", (run_ns(b, r) - run_ns(a, r)) / units,
                  (meter(b.model_bytes).gas - meter(a.model_bytes).gas) / units)
    a, b = expand(1 << 18), expand(1 << 22)
    units = (1 << 22) - (1 << 18)
    table.row("run: Expand+Add per int64 element", (run_ns(b, r) - run_ns(a, r)) / units,
              (meter(b.model_bytes).gas - meter(a.model_bytes).gas) / units)
    for label, lo, hi in (
        ("run: MatMul float per MAC", matmul(64, 256, 256), matmul(64, 1024, 1024)),
        ("run: MatMul float per MAC, M=1 (matrix-vector)", matmul(1, 256, 256), matmul(1, 2048, 2048)),
        ("run: MatMulInteger uint8 per MAC", matmul(64, 256, 256, True), matmul(64, 1024, 1024, True)),
        ("run: Conv 3x3 float per MAC", conv(8, 8, 32), conv(32, 32, 64)),
    ):
        ra, rb = meter(lo.model_bytes), meter(hi.model_bytes)
        units = rb.macs - ra.macs
        table.row(label, (run_ns(hi, r) - run_ns(lo, r)) / units, (rb.gas - ra.gas) / units)

    # Loading (session creation): per node, per file byte, and the fixed part.
    base_ns = load_ns(node_chain(1), r * 3)
    table.row("load: fixed part (1-node model)", base_ns, g.load_base + g.load_per_node)
    load_node = (load_ns(big, r) - load_ns(small, r)) / (4096 - 256)
    table.row("load: per node", load_node, g.load_per_node)
    w_small, w_big = weights(1 << 20, limits=wide), weights(100 << 20, limits=wide)
    per_byte = (load_ns(w_big, max(3, r // 2)) - load_ns(w_small, r)) / (len(w_big.model_bytes) - len(w_small.model_bytes))
    table.row("load: per file byte (weights, 1 -> 100 MB)", per_byte, g.load_per_kib / 1024)
    cold_load_row(table, g, wide, r)
    priced = load_gas(g, model_bytes=len(w_big.model_bytes), nodes=2, golden_runs=0, gas_per_call=0)
    print(f"  a 100 MB weights model: load {load_ns(w_big, 3) / 1e6:.0f} ms, priced {priced:,} gas "
          f"(= {priced / rate / 1e6:.0f} ms at the reference rate)")

    # Registration: the graph check (canonical re-check, onnx checker, shape inference, metering, a session).
    def check_ns(s: Synth, lim: SandboxLimits, repeat: int) -> float:
        spec = spec_of(s, lim)
        return best_of(lambda: validate_model(s.model_bytes, spec), repeat)

    per_node_check = (check_ns(big, limits, 3) - check_ns(small, limits, 3)) / (4096 - 256)
    vm = params.vm
    table.row("register: check per node", per_node_check, vm.gas_register_per_node)
    c_small, c_big = weights(1 << 20, limits=wide), weights(32 << 20, limits=wide)
    per_byte_check = (check_ns(c_big, wide, 3) - check_ns(c_small, wide, 3)) / (
        len(c_big.model_bytes) - len(c_small.model_bytes))
    table.row("register: check per file byte (weights, 1 -> 32 MB)", per_byte_check, vm.gas_register_per_byte)
    # The chain runs the check in a worker: the hand-off of the bytes is part of its time (CPU of both sides).
    with WorkerPool(1) as pool:
        (info,) = pool.describe()

        def pool_check_ns(s: Synth) -> float:
            job, best = CheckJob(s.model_bytes, spec_of(s, wide)), float("inf")
            for _ in range(3):
                start, worker_start = time.process_time_ns(), _cpu_ns(info["pid"])
                pool.run_batch([job])
                best = min(best, time.process_time_ns() - start + _cpu_ns(info["pid"]) - worker_start)
            return best

        per_byte_pool = (pool_check_ns(c_big) - pool_check_ns(c_small)) / (len(c_big.model_bytes) - len(c_small.model_bytes))
    table.row("register: check per file byte, through a worker", per_byte_pool, vm.gas_register_per_byte)
    table.row("register: check of a 1-node model", check_ns(tiny_model, limits, r),
              vm.gas_register_base + vm.gas_register_per_node)
    # 1-D integer constants: ONNX's data propagation reads each element (int32: the most elements per byte).
    l_small, l_big = lookup(1 << 16), lookup(1 << 21)
    per_element = (check_ns(l_big, limits, 3) - check_ns(l_small, limits, 3)) / ((1 << 21) - (1 << 16))
    table.row("register: check per propagated element (1-D int32)", per_element,
              vm.gas_register_per_propagated_element + vm.gas_register_per_byte * 4)

    # One inference through a real worker (pipe, pickling, input checks, grid): the fixed cost per call.
    tiny = node_chain(1)
    pkg = ModelPackage(b"calibration", tiny.model_bytes, spec_of(tiny, limits))
    with WorkerPool(1) as pool:
        (info,) = pool.describe()
        job = InferJob(pkg, {tiny.input_name: tiny.sample()})
        pool.run_batch([job])
        batch = [job] * 2000
        start, worker_start = time.process_time_ns(), _cpu_ns(info["pid"])
        for _ in range(r):
            pool.run_batch(batch)
        per_call = (time.process_time_ns() - start + _cpu_ns(info["pid"]) - worker_start) / (r * len(batch))
    table.row("call: worker round trip per inference (1 node)", per_call, g.per_call + vm.gas_infer_base)
    print(f"worst margin: {table.worst:.2f} (>= 1: every class validates within the budget at its price; "
          f"the schedule aims at >= 2)")
    if not args.skip_resnet:
        resnet_rows(params, limits, rate, r)


def ml_rows(table: Table, r: int) -> None:
    """The ai.onnx.ml ops with work of their own (meter._svm_work, LabelEncoder): per unit, small against
    large instances of one synthetic model, so the fixed costs cancel."""
    def row(label: str, lo: Synth, hi: Synth, units: int) -> None:
        table.row(label, (run_ns(hi, r) - run_ns(lo, r)) / units,
                  (meter(hi.model_bytes).gas - meter(lo.model_bytes).gas) / units)

    rows, features = 64, 64
    row("ml: SVM RBF per support-vector element", svm_regressor(rows, 64, features),
        svm_regressor(rows, 1024, features), rows * (1024 - 64) * features)
    row("ml: SVM POLY per support vector (GEMM + pow)", svm_regressor(rows, 64, features, "POLY"),
        svm_regressor(rows, 1024, features, "POLY"), rows * (1024 - 64))
    # One feature and a linear kernel: the classifier's dual sums ((classes - 1) x vectors) dominate.
    row("ml: SVM dual sum per coefficient", svm_classifier(rows, 8, 8, 1, False),
        svm_classifier(rows, 8, 256, 1, False), rows * 7 * 8 * (256 - 8))
    row("ml: SVM probability coupling per classes^2", svm_classifier(rows, 4, 1, 1, True),
        svm_classifier(rows, 32, 1, 1, True), rows * (32 * 32 - 4 * 4))
    row("ml: LabelEncoder per element (1024 keys)", label_encoder(1 << 12), label_encoder(1 << 18),
        (1 << 18) - (1 << 12))


def resnet_rows(params: Params, limits: SandboxLimits, rate: float, repeat: int) -> None:
    """ResNet-50: metered gas against its measured time, and how many fit a transaction and a block."""
    wide = dataclasses.replace(limits, max_model_bytes=128 << 20, max_parameter_bytes=128 << 20)
    net = resnet50(wide)
    report = meter(net.model_bytes, limits=wide)
    ns = run_ns(net, max(3, repeat // 2))
    vm = params.vm
    call = vm.gas_infer_base + vm.gas_infer_per_io_byte * 4 * 3 * 224 * 224 + report.gas
    first = call + load_gas(limits.gas, model_bytes=len(net.model_bytes), nodes=len(report.nodes), golden_runs=1,
                            gas_per_call=report.gas)
    load = load_ns(net, 3)
    print(f"ResNet-50 ({len(report.nodes)} nodes, {report.macs / 1e9:.2f} G MACs, {len(net.model_bytes) / 1e6:.1f} MB): "
          f"run {ns / 1e6:.1f} ms, load {load / 1e6:.1f} ms (CPU)")
    print(f"  gas per call {report.gas:,} (= {report.gas / rate / 1e6:.0f} ms at the reference rate: margin "
          f"{report.gas / (ns * rate):.2f}); an inference tx {call:,} gas, its first use with load and one golden "
          f"run {first:,} gas; max_tx_gas {vm.max_tx_gas:,} ({'fits' if first <= vm.max_tx_gas else 'DOES NOT FIT'})")
    print(f"  a block (max_block_gas {params.consensus.max_block_gas:,}) holds {params.consensus.max_block_gas // call} "
          f"hot inferences ({params.consensus.max_block_gas // call * ns / 1e6:.0f} ms of CPU)")


if __name__ == "__main__":
    main()
