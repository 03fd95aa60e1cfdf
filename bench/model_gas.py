"""Where a real model's registration gas and first-call gas go, part by part, against the measured time of
each part on this machine (docs/sandbox.md, "DenseNet-121: what bounds it").

A model from onnx's backend test data (`light/<name>.onnx`) is prepared as `inferchain model register`
does (node/modelprep.py's upgrade, then the CLI's canonicalization with the input shape pinned, tolerant,
k = 16, onnx's own dummy input as the one golden input). Then:

1. Gas, from the default genesis: the registration (the check: base, per canonical byte, per node, per
   propagated element; its golden runs on the check's session: base, per node, golden runs x gas per call)
   and the first inference in a block (base, input bytes, the call, the cold load: base, per node, per KiB,
   golden runs), each part with its share.
2. Time (CPU, best of N): each phase of the registration check (`check.validate_model`, phase by phase as
   `_validate_model` runs them), a session, one run; then through a real worker pool the registration job
   (hand-off of the bytes, check, golden runs on the check's session) and a cold golden job (a first use:
   hand-off, session, run), CPU of the pool's process and its worker; and the registration job's cost per
   file byte on weight-heavy models (1 -> 32 MB), the part only `gas_register_per_byte` pays for. Each timed
   part is set against the gas that pays for it at the reference rate (max_block_gas in timeout_propose / 3):
   margin = priced time / measured time (the schedule aims at >= 2).

Run: `python -m bench.model_gas [--model light_densenet121] [--repeat 3] [--random-weights SEED]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from bench.gas_calibration import _cpu_ns, best_of, first_call_parts, spec_of
from bench.synth import Synth, weights
from node.cli.model_cmd import prepare_model
from node.modelprep import upgrade
from vm.engine import feeds, golden_vectors, model_spec, sandbox_limits
from vm.genesis import REPO_ROOT, load_genesis
from vm.sandbox import check
from vm.sandbox.executor import CheckJob, InferJob, ModelPackage
from vm.sandbox.graph import infer_types, parse_model
from vm.sandbox.limits import SandboxLimits, load_gas, registration_load_gas
from vm.sandbox.meter import check_facts, meter, meter_graph
from vm.sandbox.session import create_session
from vm.sandbox.spec import ModelSpec
from vm.sandbox.worker import WorkerPool
from vm.txs import ModelMeta

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def prepare(name: str, seed: int | None = None) -> tuple[bytes, ModelMeta]:
    """The client's registration of onnx's `light/<name>.onnx` (as tools/backend_corpus.py does); with a
    `seed`, of the same architecture with seeded random weights (tools/random_weights.py: nothing to fold)."""
    from onnx.backend.test.runner import Runner

    from tools.random_weights import randomize_weights

    raw = (DATA / f"{name}.onnx").read_bytes()
    if seed is not None:
        raw = randomize_weights(raw, seed)
    model = onnx.load_from_string(raw)
    inits = {i.name for i in model.graph.initializer}
    inputs = {v.name: Runner.generate_dummy_data(v, seed=0, name=name) for v in model.graph.input
              if v.name not in inits}
    up = upgrade(raw)
    canonical, meta = prepare_model(
        up.model_bytes, name=name, model_class="tolerant", grid_k=16, tol_abs=32, tol_rel_ppm=200, fee_per_call=0,
        input_shapes={k: list(v.shape) for k, v in inputs.items()}, golden_inputs=[inputs])
    return canonical, meta


def fresh_cold_path(canonical: bytes, meta: ModelMeta, spec: ModelSpec, inputs: dict[str, np.ndarray],
                    repeat: int) -> list[tuple[int, int, int]]:
    """The first call on a fresh validator with the model's golden runs: what `load_gas` plus one call's gas
    pay for (`bench.gas_calibration.first_call_parts`)."""
    return first_call_parts(canonical, spec, inputs, golden_vectors(meta), repeat)


def parts(title: str, items: dict[str, int], cap: int) -> None:
    total = sum(items.values())
    print(f"{title}: {total:,} gas ({'fits' if total <= cap else f'OVER max_tx_gas {cap:,} by {total - cap:,}'})")
    for label, gas in items.items():
        print(f"  {label:<44}{gas:>14,}{100 * gas / total:>7.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="light_densenet121")
    parser.add_argument("--genesis", type=Path, default=REPO_ROOT / "genesis.json")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-cold-path", action="store_true", help="only the first call on fresh workers")
    parser.add_argument("--random-weights", type=int, metavar="SEED", help="the architecture with seeded random "
                        "weights (ResNet-50: 100 MB canonical) instead of the shipped constant ones")
    args = parser.parse_args()
    params = load_genesis(args.genesis).params
    limits = sandbox_limits(params)
    g, vm = limits.gas, params.vm
    rate = params.consensus.max_block_gas / (params.consensus.timeout_propose_ms * 1e6 / 3)  # gas per ns
    print(f"load average {os.getloadavg()[0]:.1f}; reference rate {rate:.3f} gas/ns; best of {args.repeat}")

    canonical, meta = prepare(args.model, args.random_weights)
    spec = model_spec(meta, limits)
    nodes, elements = check_facts(canonical)
    report = meter(canonical, limits=limits)
    kib = -(-len(canonical) // 1024)
    io_bytes = sum(len(t.data) for t in meta.golden[0].inputs)
    print(f"{args.model}: {len(canonical):,} canonical bytes, {nodes} nodes, {elements} propagated elements, "
          f"{report.macs / 1e9:.2f} G MACs, {report.activation_bytes / 1e6:.0f} MB of activations, "
          f"{len(meta.golden)} golden run(s)")
    check_parts = {
        "check: base": vm.gas_register_base,
        "check: per canonical byte": vm.gas_register_per_byte * len(canonical),
        "check: per node": vm.gas_register_per_node * nodes,
        "check: per propagated element": vm.gas_register_per_propagated_element * elements,
    }
    runs_parts = {
        "golden runs: base": g.load_base,
        "golden runs: per node": g.load_per_node * nodes,
        "golden runs: x gas per call": len(meta.golden) * report.gas,
    }
    assert sum(runs_parts.values()) == registration_load_gas(g, nodes=nodes, golden_runs=len(meta.golden),
                                                             gas_per_call=report.gas)
    load_parts = {
        "load: base": g.load_base,
        "load: per node": g.load_per_node * nodes,
        "load: per KiB (the cold path)": g.load_per_kib * kib,
        "load: golden runs x gas per call": len(meta.golden) * report.gas,
    }
    assert sum(load_parts.values()) == load_gas(g, model_bytes=len(canonical), nodes=nodes,
                                                golden_runs=len(meta.golden), gas_per_call=report.gas)
    call = report.gas
    call_parts = {
        "call: per call + per node": g.per_call + g.per_node * len(report.nodes),
        "call: MACs": -(-report.macs * g.per_mac // g.work_units_per_gas),
        "call: element-wise work": -(-report.elementwise // g.work_units_per_gas),
        "call: activation bytes": -(-report.activation_bytes * g.per_activation_byte // g.work_units_per_gas),
    }
    print(f"  gas per call {call:,} (the parts below round per node, so they sum to about it)")
    parts("registration (last chunk)", {**check_parts, **runs_parts}, vm.max_tx_gas)
    parts("first inference in a block", {"infer: base + input bytes": vm.gas_infer_base + vm.gas_infer_per_io_byte
                                         * io_bytes, **call_parts, **load_parts}, vm.max_tx_gas)

    print("time (CPU, ms) against the gas that pays for it:")
    r = args.repeat
    first_gas = sum(load_parts.values()) + call
    cold = fresh_cold_path(canonical, meta, spec, feeds(meta, meta.golden[0].inputs), r)
    read, hand, worker = (statistics.median(p[i] for p in cold) for i in range(3))
    total = statistics.median(sum(p) for p in cold)
    print(f"  first call on a fresh worker (median of {r}): read+hash {read / 1e6:.1f} ms, hand-off {hand / 1e6:.1f} "
          f"ms, worker (session, golden run, call) {worker / 1e6:.1f} ms = {total / 1e6:.1f} ms; priced (load + "
          f"call) {first_gas:,} gas = {first_gas / rate / 1e6:.1f} ms: margin {first_gas / (total * rate):.2f}")
    if args.only_cold_path:
        return

    def row(label: str, ns: float, gas: int) -> None:
        print(f"  {label:<44}{ns / 1e6:>9.1f} ms{gas:>14,} gas = {gas / rate / 1e6:>7.1f} ms  margin "
              f"{gas / (ns * rate):5.2f}")

    model = parse_model(canonical, limits)
    types = infer_types(model)
    phases: dict[str, Callable[[], object]] = {
        "check phase: parse": lambda: parse_model(canonical, limits),
        "check phase: structure, initializers, io": lambda: (check._validate_structure(model, limits),
                                                             check._validate_initializers(model, limits),
                                                             check._validate_io(model, spec)),
        "check phase: onnx checker": lambda: onnx.checker.check_model(canonical),
        "check phase: shape inference": lambda: infer_types(model),
        "check phase: canonical form re-run": lambda: check._validate_canonical(canonical, model, types, spec),
        "check phase: node rules, class, meter": lambda: (check._validate_node_rules(model, types, limits),
                                                          check._validate_class(model, types, spec.model_class),
                                                          meter_graph(model, types, g)),
        "check phase: a session (runtime accepts)": lambda: check._validate_runtime_accepts(canonical),
        "check phase: info (sha256, facts)": lambda: check._info(canonical, model, types, spec, report),
    }
    phase_total = 0.0
    for label, fn in phases.items():
        ns = best_of(fn, r)
        phase_total += ns
        print(f"  {label:<44}{ns / 1e6:>9.1f} ms")
    row("check (sum of phases)", phase_total, sum(check_parts.values()))
    row("check (validate_model)", best_of(lambda: check.validate_model(canonical, spec), r),
        sum(check_parts.values()))
    row("session creation", best_of(lambda: create_session(canonical), r),
        g.load_base + g.load_per_node * nodes + g.load_per_kib * kib)
    session = create_session(canonical)
    inputs = feeds(meta, meta.golden[0].inputs)
    session.run(None, inputs)
    row("one run (session.run)", best_of(lambda: session.run(None, inputs), r), call)
    golden_inputs = tuple(feeds(meta, v.inputs) for v in meta.golden)
    with WorkerPool(1) as pool:
        (info,) = pool.describe()
        best_check = best_register = best_golden = float("inf")
        for n in range(r):
            c0, w0 = time.process_time_ns(), _cpu_ns(info["pid"])
            [checked] = pool.run_batch([CheckJob(canonical, spec)])
            c1, w1 = time.process_time_ns(), _cpu_ns(info["pid"])
            [registered] = pool.run_batch([CheckJob(canonical, spec, golden_inputs, 1 << 62)])
            c2, w2 = time.process_time_ns(), _cpu_ns(info["pid"])
            pkg = ModelPackage(b"registration:%d" % n, canonical, spec, None)  # a fresh id: a cold load
            [ran] = pool.run_batch([InferJob(pkg, inputs)])
            c3, w3 = time.process_time_ns(), _cpu_ns(info["pid"])
            assert checked.info is not None and registered.golden is not None and ran.outputs is not None
            best_check = min(best_check, c1 - c0 + w1 - w0)
            best_register = min(best_register, c2 - c1 + w2 - w1)
            best_golden = min(best_golden, c3 - c2 + w3 - w2)
    row("pool: check alone (pipe + check)", best_check, sum(check_parts.values()))
    row("pool: registration job (+ golden runs)", best_register, sum(check_parts.values()) + sum(runs_parts.values()))
    row("pool: cold golden job (first use's load)", best_golden, sum(load_parts.values()))
    # Per file byte: only gas_register_per_byte pays for the bytes of a registration now.
    wide = SandboxLimits(max_model_bytes=128 << 20, max_parameter_bytes=128 << 20, max_tensor_bytes=128 << 20,
                         max_tensor_elements=1 << 26)
    small, big = weights(1 << 20, limits=wide), weights(32 << 20, limits=wide)
    with WorkerPool(1) as pool:
        (info,) = pool.describe()

        def register_ns(s: Synth) -> float:
            job = CheckJob(s.model_bytes, spec_of(s, wide), ({s.input_name: s.sample()},), 1 << 62)
            best = float("inf")
            for _ in range(max(3, r)):
                start, worker_start = time.process_time_ns(), _cpu_ns(info["pid"])
                [result] = pool.run_batch([job])
                assert result.golden is not None
                best = min(best, time.process_time_ns() - start + _cpu_ns(info["pid"]) - worker_start)
            return best

        per_byte = (register_ns(big) - register_ns(small)) / (len(big.model_bytes) - len(small.model_bytes))
    print(f"  registration job per file byte (weights 1 -> 32 MB, through a worker): {per_byte:.2f} ns, priced "
          f"{vm.gas_register_per_byte} gas = {vm.gas_register_per_byte / rate:.2f} ns: margin "
          f"{vm.gas_register_per_byte / (per_byte * rate):.2f}")
    assert ran.outputs is not None
    out = np.asarray(ran.outputs[next(iter(ran.outputs))])
    print(f"load average {os.getloadavg()[0]:.1f}; output {out.shape}")


if __name__ == "__main__":
    main()
