"""Devnet bench, inference load: committed tiny exact-class inferences per second on a real N-validator
devnet (`python -m bench.devnet --kind infer`; the transfer load is the default mode, bench/devnet.py).

    python -m bench.devnet --kind infer [--duration 15] [--loads 200,500,1000,2000,max]

Each step pre-signs `Infer` transactions on the genesis's tiny exact-class model (digits_int8: uint8[1,64] in,
int32[1,10] out; the first exact model genesis lists whose input is under 4 KiB, so its arrays travel inside
the sandbox hand-off message) from senders used by no other step, each with its own random input and a gas
limit of exactly the safe quote (`vm.execute.infer_gas` with the block's first-use load, as a wallet must
quote it: the sender cannot know whether its call is its block's first on the model). Sending, draining and the
commit observer are bench/devnet.py's (open loop at the offered rates, `max` as fast as the endpoints answer).

Per step it prints bench/devnet.py's columns (committed/s over the send window shifted by the median finality,
finality p50/p99, block interval, txs per block, byte fill, refusals, pending, CPU per committed tx of all
node processes with their workers, PoI misses and jails, the driver's CPU per sent tx), then `gas%` (the
blocks' used gas against max_block_gas) and the CPU per committed inference split per node into the
node process and its sandbox workers. With `--kind infer` (not `infer-only`) a closed-loop transfer step
runs last on the same devnet (its backlog would fill the mempool for the steps after it), once node 0's
mempool has emptied (at most BASELINE_SETTLE_S): the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.devnet import (
    TICK,
    Observer,
    Sent,
    Signed,
    drain,
    driver_cpu_seconds,
    group_pids,
    pct,
    plan_senders,
    poi_totals,
    presign,
    print_run_end,
    rounds_line,
    run_step,
    started_devnet,
)
from bench.devnet_fate import Fates, classify
from bench.devnet_gc import GcReading, gc_line, read_gc
from core.keys import PrivateKey
from core.limits import MAX_BLOCK_TXS, MAX_COMPACT_PROPOSAL_BYTES
from core.tensor import Tensor
from core.types import Amount, Hash32
from node.client import Client
from tests.realnet import RealNet
from vm.blockbytes import compute_infer_result_bound
from vm.build import HASH_ENTRY_BYTES
from vm.execute import infer_gas
from vm.genesis import parse_genesis
from vm.params import Params
from vm.state import ModelRecord
from vm.txs import Infer, build_tx

TINY_INPUT_BYTES = 4096  # under the sandbox's in-message threshold: the hand-off carries the arrays itself
BASELINE_SETTLE_S = 90.0  # how long the inference backlog may take to commit before the transfer baseline
TRANSFER_BASELINE_RATE = 4000  # tx/s pre-signed for the transfer baseline step (closed loop, ends early if sent)


@dataclass(frozen=True, slots=True)
class TinyModel:
    name: str
    model_id: Hash32
    record: ModelRecord
    gas_limit: int  # the safe quote: first use in the block included
    call_gas: int  # what each call but the block's first uses (the first adds record.gas_load)


def find_tiny_exact(client: Client, genesis_doc: dict[str, object], params: Params) -> TinyModel:
    """The genesis's first non-PoI exact-class model with inputs under TINY_INPUT_BYTES, as registered."""
    models = genesis_doc.get("models")
    assert isinstance(models, list)
    for m in models:
        if m.get("class") != "exact" or m.get("poi"):
            continue
        record = ModelRecord.decode(client.model(m["id"]).raw)
        sizes = [int(np.prod(t.shape)) * t.dtype.itemsize for t in record.meta.inputs]
        if sum(sizes) >= TINY_INPUT_BYTES:
            continue
        probe = _inputs(record, np.random.default_rng(0))
        return TinyModel(m["name"], Hash32.from_hex(m["id"]), record, infer_gas(params, record, probe),
                         infer_gas(params, record, probe, first_use=False))
    raise SystemExit("genesis has no tiny exact-class model to load the devnet with")


def _inputs(record: ModelRecord, rng: np.random.Generator) -> tuple[Tensor, ...]:
    out = []
    for spec in record.meta.inputs:
        dtype = spec.dtype.numpy
        info = np.iinfo(dtype.name)  # exact-class models take integers
        out.append(Tensor.from_numpy(rng.integers(info.min, int(info.max) + 1, size=tuple(spec.shape), dtype=dtype)))
    return tuple(out)


def block_caps(params: Params, model: TinyModel, tx_size: int) -> dict[str, int]:
    """How many of the model's inferences (each `tx_size` bytes) one block can hold under each of its limits:
    gas (max_block_gas), bytes (max_block_bytes over the transaction and the result the builder counts for
    it, `vm.blockbytes.compute_infer_result_bound`), the compact proposal (its hash entry and that result
    under MAX_COMPACT_PROPOSAL_BYTES), and the count cap. The block's fixed reserves (header, commit) are
    left out: a few transactions' worth."""
    result = compute_infer_result_bound(model.gas_limit, model.record.meta.outputs)
    gas = params.consensus.max_block_gas
    return {
        "gas": 1 + (int(gas) - model.gas_limit) // model.call_gas,
        "bytes": int(params.consensus.max_block_bytes) // (tx_size + result),
        "compact proposal": MAX_COMPACT_PROPOSAL_BYTES // (HASH_ENTRY_BYTES + result),
        "count": MAX_BLOCK_TXS,
    }


def presign_infer(net: RealNet, senders: list[PrivateKey], count: int, model: TinyModel, gas_price: int,
                  seed: int) -> list[list[Signed]]:
    """`count` inferences with distinct random inputs, spread round-robin over `senders`; one list per
    endpoint (sender i pinned to endpoint i mod E, so one sender's nonces reach one node in order)."""
    rng = np.random.default_rng(seed)
    endpoints = len(net.indices)
    per_endpoint: list[list[Signed]] = [[] for _ in range(endpoints)]
    nonces = [0] * len(senders)
    for k in range(count):
        s = k % len(senders)
        payload = Infer(model.model_id, _inputs(model.record, rng), Amount(0))
        tx = build_tx(senders[s], payload, chain_id=net.chain_id, nonce=nonces[s], gas_limit=model.gas_limit,
                      fee=model.gas_limit * gas_price)
        nonces[s] += 1
        raw = tx.encode()
        per_endpoint[s % endpoints].append(Signed(bytes(tx.hash), raw.hex(), len(raw)))
    return per_endpoint


def split_cpu_seconds(leaders: list[int]) -> list[tuple[float, float]]:
    """(node process, its sandbox workers) CPU seconds, user + system, per node. Workers that exited since
    the last reading take their CPU with them: a step with a worker restart under-counts the workers."""
    out = []
    for leader in leaders:
        own = workers = 0
        for pid in group_pids(leader):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if pid == leader:
                own += ticks
            else:
                workers += ticks
        out.append((own / TICK, workers / TICK))
    return out


def settle(client: Client, timeout: float) -> None:
    """Before the transfer baseline: wait (at most `timeout`) until node 0's mempool has emptied, so that the
    baseline does not measure the inference steps' backlog; it says so when it gives up."""
    deadline = time.monotonic() + timeout
    while (left := client.status().mempool_size) > 0:
        if time.monotonic() > deadline:
            print(f"           (the transfer baseline starts with {left:,} transactions still pending on node 0)")
            return
        time.sleep(0.5)


@dataclass
class StepFigures:
    label: str
    sent_rate: float
    committed_rate: float
    p50: float
    p99: float
    interval: float
    per_block: float
    fill: float
    gas_fill: float
    refused: int
    pending: int
    cpu_ms: float
    missed: int
    jailed: int
    driver_ms: float
    reasons: str
    per_node: list[tuple[float, float]]  # (node ms, workers ms) per committed tx
    rounds: str  # bench.devnet.rounds_line over the step's window
    fates: Fates  # where the accepted transactions not seen committed are (bench/devnet_fate.py)
    drained: float  # seconds the drain took
    gc: str = ""  # bench.devnet_gc.gc_line over the step


def measure_step(net: RealNet, observer: Observer, poi_url: str, leaders: list[int], label: str,
                 offered: int | None, work: list[list[Signed]], duration: float, max_block_bytes: int,
                 max_block_gas: int, gas_per_tx: int, gas_per_block: int) -> StepFigures:
    gc0 = gc_readings(net, leaders)
    before = split_cpu_seconds(leaders)
    driver0 = driver_cpu_seconds()
    missed0, _ = poi_totals(poi_url)
    out, start = run_step(net, offered, work, duration)
    window = time.monotonic() - start
    driver1 = driver_cpu_seconds()
    loaded = gc_readings(net, leaders)
    drained = drain(observer, out)
    after = split_cpu_seconds(leaders)
    gc1 = gc_readings(net, leaders)
    missed1, jailed = poi_totals(poi_url)
    fates = classify(net.rpc_urls(), out.accepted_by, [h for h in out.accepted if h not in observer.committed])
    figures = summarize(label, out, start, window, observer, before, after, driver1 - driver0, missed1 - missed0,
                        jailed, max_block_bytes, max_block_gas, gas_per_tx, gas_per_block, fates, drained)
    committed = sum(1 for h in out.accepted if h in observer.committed and h not in fates.asked)  # as summarize
    figures.gc = gc_line(gc0, gc1, loaded, committed)
    return figures


def gc_readings(net: RealNet, leaders: list[int]) -> list[GcReading]:
    """Every node's collector counters and process CPU now (bench/devnet_gc.py)."""
    return [read_gc(net.spec(i).rpc_url, pid) for i, pid in zip(net.indices, leaders, strict=True)]


def summarize(label: str, out: Sent, start: float, window: float, observer: Observer,
              before: list[tuple[float, float]], after: list[tuple[float, float]], driver_s: float, missed: int,
              jailed: int, max_block_bytes: int, max_block_gas: int, gas_per_tx: int, gas_per_block: int,
              fates: Fates, drained: float) -> StepFigures:
    finality = [observer.committed[h] - out.scheduled[h] for h in out.accepted
                if h in observer.committed and h not in fates.asked]
    pending = fates.total  # not seen committed when the drain ended
    lag = pct(finality, 0.5) if finality else 0.0
    blocks = [b for b in observer.blocks if start + lag <= b.seen <= start + lag + window]
    committed = len(finality)
    times = [b.time_ms for b in blocks]
    interval = statistics.mean(b - a for a, b in itertools.pairwise(times)) / 1000 if len(times) > 1 else float("nan")
    per_block = statistics.mean(b.txs for b in blocks) if blocks else 0.0
    fill = 100 * statistics.mean(b.bytes for b in blocks) / max_block_bytes if blocks else 0.0
    per_node = [(1000 * (a[0] - b[0]) / committed, 1000 * (a[1] - b[1]) / committed) if committed
                else (float("nan"), float("nan")) for b, a in zip(before, after, strict=True)]
    cpu = sum(n + w for n, w in per_node)
    return StepFigures(
        label=label, sent_rate=out.sent / window, committed_rate=sum(b.txs for b in blocks) / window,
        p50=pct(finality, 0.5), p99=pct(finality, 0.99), interval=interval, per_block=per_block, fill=fill,
        gas_fill=100 * (per_block * gas_per_tx + gas_per_block * bool(blocks)) / max_block_gas, refused=sum(out.refused.values()), pending=pending,
        cpu_ms=cpu, missed=missed, jailed=jailed, driver_ms=1000 * driver_s / out.sent if out.sent else float("nan"),
        reasons=", ".join(f"{r} x{n}" for r, n in out.refused.most_common(3)), per_node=per_node,
        rounds=rounds_line(blocks, len(before)), fates=fates,
        drained=drained)


HEADER = (f"{'offered':>10} {'sent/s':>8} {'commit/s':>9} {'p50 s':>7} {'p99 s':>7} {'blk int s':>9} {'tx/blk':>7} "
          f"{'fill%':>6} {'gas%':>6} {'refused':>8} {'pending':>7} {'cpu ms/tx':>9} {'PoI miss':>8} {'jailed':>6} "
          f"{'drv ms/tx':>9}  refusals")


def print_step(f: StepFigures) -> None:
    print(f"{f.label:>10} {f.sent_rate:>8,.0f} {f.committed_rate:>9,.0f} {f.p50:>7.2f} {f.p99:>7.2f} "
          f"{f.interval:>9.2f} {f.per_block:>7,.0f} {f.fill:>6.1f} {f.gas_fill:>6.1f} {f.refused:>8} {f.pending:>7} "
          f"{f.cpu_ms:>9.2f} {f.missed:>8} {f.jailed:>6} {f.driver_ms:>9.3f}  {f.reasons}", flush=True)
    if f.fates.total:
        print(f"           after a drain of {f.drained:.0f} s: " + f.fates.line(), flush=True)
    print("           " + f.rounds, flush=True)
    print("           cpu ms/tx by node (node process + workers): " + ", ".join(
        f"node{i} {n:.2f}+{w:.2f}" for i, (n, w) in enumerate(f.per_node)), flush=True)
    if f.gc:
        print("           " + f.gc, flush=True)


def main_infer(args: argparse.Namespace) -> int:
    """The inference load on bench/devnet.py's parsed arguments (validators, duration, loads, senders,
    max_rate_budget, block_time_ms, keep)."""
    loads: list[int | None] = [None if x.strip() == "max" else int(x) for x in args.loads.split(",")]
    budgets = [int((offered or args.max_rate_budget) * args.duration) for offered in loads]
    compare = args.kind == "infer"
    if compare:
        budgets = [*budgets, int(TRANSFER_BASELINE_RATE * args.duration)]
    senders_per_step, firsts, accounts = plan_senders(budgets, args.senders)
    with started_devnet(args, accounts, prefix="bench-devnet-infer-") as net:
        doc = json.loads(net.devnet.genesis_path.read_text())
        params = parse_genesis(doc).params
        max_block_bytes = int(params.consensus.max_block_bytes)
        max_block_gas = int(params.consensus.max_block_gas)
        gas_price = int(params.vm.min_gas_price)
        model = find_tiny_exact(net.client(0), doc, params)
        print(f"model {model.name}: tx gas limit {model.gas_limit:,} (the load {model.record.gas_load:,} included), "
              f"used {model.call_gas:,} by each call but the block's first")
        sample = presign_infer(net, [net.account_key(0)], 1, model, gas_price, seed=999)[0][0]  # its size only: never sent
        caps = block_caps(params, model, sample.size)
        print("inferences per block at most, by each limit: " + ", ".join(f"{k} {v:,}" for k, v in caps.items())
              + f" (binding: {min(caps, key=lambda k: caps[k])}; below it, the proposer's validation-time "
              "sizer, node.proposal_size, or the mempool's supply)")
        observer = Observer(Client(net.spec(0).rpc_url, timeout=30))
        watcher = threading.Thread(target=observer.run, daemon=True)
        watcher.start()
        leaders = [net.pid(i) for i in net.indices]
        poi_client = Client(net.spec(0).rpc_url, timeout=30)
        print("\n" + HEADER)
        steps: list[tuple[str, int | None, int]] = [(f"infer {'max' if o is None else o}", o, b)
                                                    for o, b in zip(loads, budgets, strict=False)]
        if compare:  # last: its backlog and its byte-capped blocks would disturb the steps after it
            steps.append(("xfer max", None, budgets[-1]))
        try:
            for step, (label, offered, budget) in enumerate(steps):
                senders = [net.account_key(firsts[step] + i) for i in range(senders_per_step[step])]
                if label.startswith("xfer"):
                    settle(poi_client, BASELINE_SETTLE_S)
                    work = presign(net, senders, budget, net.account_key(0).address)
                    gas_per_tx, gas_per_block = int(params.vm.gas_transfer), 0
                else:
                    work = presign_infer(net, senders, budget, model, gas_price, seed=step)
                    gas_per_tx, gas_per_block = model.call_gas, int(model.record.gas_load)
                print_step(measure_step(net, observer, net.spec(0).rpc_url, leaders, label, offered, work, args.duration,
                                        max_block_bytes, max_block_gas, gas_per_tx, gas_per_block))
        finally:
            observer.stop.set()
            watcher.join(10)
            observer.client.close()
            poi_client.close()
        print_run_end(net, leaders, observer)
    print("every devnet process stopped")
    return 0
