"""Devnet bench: committed transfers per second and finality on a real N-validator devnet (real OS processes
on free ports, started and stopped by the tests' real-network harness, tests/realnet).

    python -m bench.devnet [--validators 4] [--duration 5] [--loads 200,500,1000,2000,max]
    python -m bench.devnet --duration 60          # the real figure

For each offered load (transactions per second, open loop) it pre-signs transfers from senders used by no
other step (so a refused transaction leaves no nonce gap for the next step; at most PER_SENDER each), sends them in batches through
every node's RPC `broadcast_txs` on a fixed schedule (a slow answer does not delay the next batch, and
finality counts from the scheduled send time, so queueing is not hidden), then drains. `max` sends the next
batch as soon as an endpoint answers (closed loop: offered as fast as accepted). A transaction refused for
now (a full mempool: `node.mempool.is_retryable`) is sent again after a pause, as a real client would, until
the send window ends, its finality still counted from its first scheduled send; `--no-retry` skips it
instead (which leaves its sender's later nonces gapped). Commits are read from node 0's blocks (their
transactions' hashes only: `block` with `hashes: true`). Batches and the observer's polls go through
bench/driver_rpc.py (kept-alive http.client connections), the driver's CPU being the nodes' loss on a shared machine.

Per load it prints: the rate of new transactions sent (retries not counted); committed tx/s (transactions in the blocks node 0 committed
during a window as long as the send window, shifted by the step's median finality) and `step/s` (the step's
committed transactions over the time from its start to the last of them committed: the sustained figure when
retries stretch finality); finality p50/p99
(scheduled send -> block seen committed on node 0); block interval (header times) and block fill (txs per
block, share of max_block_bytes) in that window; refusals (by reason) and `pending`: transactions accepted
but not seen committed when the drain ended (at most DRAIN_S: an overloaded step's backlog, which then lands
in the next), split on the line below by asking every node where each one is (bench/devnet_fate.py:
committed, pending ready or gapped and on how many nodes, rejected with the node's reason, or lost); PoI
challenges missed during the step by all validators and validators jailed at its end (a faster pipeline must
not jail slow honest validators); the load driver's own CPU per transaction sent (`drv ms/tx`: this process
during the send window; signing happens before it); CPU per committed transaction (all node processes with their sandbox workers, from /proc, over
the send window and the drain, divided by the step's committed transactions; then the same per node, where
node 0's share includes serving the block observer); heights decided after round 0 and commits missing a
precommit (`rounds_line`); the loaded stretch, first to last non-empty block, with its block sizes and
rate (`loaded_line`: the window misses it when finality runs to tens of seconds); and RSS per node at the end.
The baseline, measured in the same run: one core's Ed25519 verifications per second, and the ceiling that
implies when every validator verifies every transaction once on this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._util import rate
from bench.devnet_fate import classify
from bench.devnet_gc import gc_line, read_gc
from bench.driver_rpc import DriverRpc
from core.keys import PrivateKey, verify
from core.types import Amount
from node.client import Client, RpcError
from node.mempool import is_retryable
from tests.realnet import RealNet
from vm.txs import Transfer, build_tx

BATCH_INTERVAL_S = 0.1
MAX_BATCH = 64  # transactions per broadcast_txs call (the RPC's limit)
WORKERS_PER_ENDPOINT = 3
# Transactions per sender and step: under the mempool's max_nonce_gap (64), so a step whose commits lag its
# sends is refused for being overloaded, not for one sender's nonces running ahead.
PER_SENDER = 48
# The drain's cap: an overloaded step can spend a minute on one height (rounds lost to late proposals) and
# still commit everything it was sent (docs/performance-throughput.md "Tiny inference on the devnet").
DRAIN_S = 120.0
RETRY_PAUSE_S = 0.1
STALL_S = 10.0  # the drain ends when for this long nothing new commits and node 0's mempool is empty
GAS_LIMIT = 1000
FEE = 1000
TICK = os.sysconf("SC_CLK_TCK")
# Blocks under this many transfers while the mempools are full: the small-block regime
# (docs/performance-throughput.md, "The small-block regime").
SMALL_BLOCK_TXS = 1_000


# ------------------------------------------------------------------------------------------------ workload


@dataclass(slots=True)
class Signed:
    hash: bytes
    hex: str
    size: int


def presign(net: RealNet, senders: list[PrivateKey], count: int, sink: Any) -> list[list[Signed]]:
    """`count` transfers, spread round-robin over `senders`; one list per endpoint (sender i pinned to
    endpoint i mod E, so one sender's nonces reach one node in order)."""
    endpoints = len(net.indices)
    per_endpoint: list[list[Signed]] = [[] for _ in range(endpoints)]
    nonces = [0] * len(senders)
    for k in range(count):
        s = k % len(senders)
        tx = build_tx(senders[s], Transfer(sink, Amount(1)), chain_id=net.chain_id, nonce=nonces[s],
                      gas_limit=GAS_LIMIT, fee=FEE)
        nonces[s] += 1
        raw = tx.encode()
        per_endpoint[s % endpoints].append(Signed(bytes(tx.hash), raw.hex(), len(raw)))
    return per_endpoint


# ------------------------------------------------------------------------------------------------ observing


@dataclass
class Block:
    height: int
    seen: float  # monotonic time the observer saw it committed
    time_ms: int  # header time
    txs: int
    bytes: int
    # From its last commit: the round the previous height was decided in, and how many precommits the
    # proposer held for it (fewer than the validators: it waited `timeout_commit` for the rest, in vain).
    last_round: int = 0
    last_precommits: int = 0


@dataclass
class Observer:
    """Polls node 0 for new blocks; records each block and the commit time of every transaction hash.

    It reads each block's transaction hashes (`block` RPC with `hashes: true`: no transaction sent or decoded),
    so it seldom trails node 0; under load it can trail it by a block or more: `read` against `top` says by how
    many (`drain` waits for it). `client`: a `Client`, or this bench's cheaper `DriverRpc` (its polls, ~20 a
    second, are the driver's CPU too). Any failure is counted and the poll goes on: the thread never ends
    before `stop`."""

    client: Client | DriverRpc
    committed: dict[bytes, float] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: int = 0
    last_error: str = ""
    read: int = 0  # the last height whose block was read
    top: int = 0  # node 0's height at the last poll
    mempool: int = 0  # node 0's mempool size at the last poll
    reported: dict[int, float] = field(default_factory=dict)  # height -> when node 0 first reported it

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.read:
                    self.read = self.client.status().height  # start at the current block
                status = self.client.status()
                top = status.height
                now = time.monotonic()  # a block counts as committed when node 0 first reports its height
                self.mempool = status.mempool_size
                for h in range(max(self.top, self.read) + 1, top + 1):
                    self.reported[h] = now
                self.top = max(self.top, top)
                for h in range(self.read + 1, self.top + 1):
                    block = self.client.block_hashes(h)  # hashes only: no transaction decoded here
                    seen = self.reported.pop(h, now)
                    self.committed.update(dict.fromkeys(block.tx_hashes, seen))
                    self.blocks.append(Block(h, seen, block.time_ms, len(block.tx_hashes), block.tx_bytes,
                                             block.last_round, block.last_precommits))
                    self.read = h
                    if self.stop.is_set():
                        return
            except Exception as exc:  # an RPC error, a timeout, a block that does not decode: poll again
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:120]
            self.stop.wait(0.05)

    @property
    def behind(self) -> bool:
        return self.read < self.top


# ------------------------------------------------------------------------------------------------ sending


@dataclass
class Sent:
    scheduled: dict[bytes, float] = field(default_factory=dict)
    accepted: set[bytes] = field(default_factory=set)
    accepted_by: dict[bytes, int] = field(default_factory=dict)  # the endpoint (index in rpc_urls) that took it
    refused: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    retried: int = 0  # refusals that said "retry later", sent again


Work = queue.Queue[tuple[float, list[Signed]] | None]


def endpoint_worker(url: str, work: Work, out: Sent, retry_until: float | None, endpoint: int = 0) -> None:
    """Send each batch from `work`; a transaction refused with a reason that says "retry later"
    (node.mempool.is_retryable: a full mempool, a sender's queue at its limit) goes back on the queue after
    RETRY_PAUSE_S, with its original scheduled time, until `retry_until` (None: never retried). A real client
    does the same: skipping the nonce would leave every later one of its sender waiting behind a gap."""
    with DriverRpc(url, timeout=60) as poster:  # kept-alive http.client, body joined (bench/driver_rpc.py)
        while True:
            item = work.get()
            if item is None:
                return
            scheduled, batch = item
            try:
                answers = poster.broadcast([s.hex for s in batch])
            except RpcError as exc:
                with out.lock:
                    out.refused[f"rpc error: {str(exc)[:60]}"] += len(batch)
                    out.sent += len(batch)
                continue
            again: list[Signed] = []
            retry = retry_until is not None and time.monotonic() < retry_until
            with out.lock:
                out.sent += len(batch)
                for signed, answer in zip(batch, answers, strict=True):
                    out.scheduled[signed.hash] = scheduled
                    error = str(answer.get("error") or "")
                    if answer.get("accepted"):
                        out.accepted.add(signed.hash)
                        out.accepted_by[signed.hash] = endpoint
                    elif retry and is_retryable(error):
                        again.append(signed)
                    else:
                        out.refused[_reason(error)] += 1
                out.retried += len(again)
            if again:
                time.sleep(RETRY_PAUSE_S)  # back-pressure: this worker waits before its next batch
                work.put((scheduled, again))


def _reason(error: object) -> str:
    text = str(error or "refused")
    return text.split(":")[0][:60]


def run_step(net: RealNet, offered: int | None, work: list[list[Signed]], duration: float, *,
             retry: bool = True) -> tuple[Sent, float]:
    """Send `work` (one list per endpoint) at `offered` tx/s (None: as fast as answers come) for
    `duration` seconds, sending again what was refused for now (`retry`) until the window ends; returns what
    was sent and when sending started."""
    out = Sent()
    urls = net.rpc_urls()
    queues: list[Work] = [queue.Queue() for _ in urls]
    start = time.monotonic()
    retry_until = start + duration if retry else None
    threads = [threading.Thread(target=endpoint_worker, args=(url, q, out, retry_until, e), daemon=True)
               for e, (url, q) in enumerate(zip(urls, queues, strict=True)) for _ in range(WORKERS_PER_ENDPOINT)]
    for t in threads:
        t.start()
    cursors = [0] * len(urls)
    if offered is None:
        # Closed per worker: each endpoint gets a new batch whenever one of its workers is idle.
        while time.monotonic() - start < duration and any(c < len(w) for c, w in zip(cursors, work, strict=True)):
            for e, q in enumerate(queues):
                if q.qsize() < 1 and cursors[e] < len(work[e]):
                    batch = work[e][cursors[e]:cursors[e] + MAX_BATCH]
                    cursors[e] += len(batch)
                    q.put((time.monotonic(), batch))
            time.sleep(0.005)
    else:
        ticks = int(duration / BATCH_INTERVAL_S)
        per_endpoint = offered * BATCH_INTERVAL_S / len(urls)
        for tick in range(ticks):
            due = start + tick * BATCH_INTERVAL_S
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for e, q in enumerate(queues):
                upto = min(len(work[e]), round((tick + 1) * per_endpoint))
                for at in range(cursors[e], upto, MAX_BATCH):
                    q.put((due, work[e][at:min(upto, at + MAX_BATCH)]))
                cursors[e] = max(cursors[e], upto)
    for q in queues:
        for _ in range(WORKERS_PER_ENDPOINT):
            q.put(None)
    for t in threads:
        t.join(120)
    for q in queues:  # batches put back after the workers' stop signal: refused for now, never sent again
        while not q.empty():
            item = q.get()
            if item is not None:
                out.refused["not sent again (window over)"] += len(item[1])
                out.retried -= len(item[1])
    return out, start


# ------------------------------------------------------------------------------------------------ /proc


def group_pids(leader: int) -> list[int]:
    """The node process and its sandbox workers (each node runs in its own process group)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:
                pids.append(int(entry))
    return pids


P2P_SHOWN = ("messages_received", "duplicates", "rpcs_received", "rpc_bytes_received", "relays_suppressed",
             "idontwant_sent", "rpcs_sent", "frames_sent", "inbound_bulk_dropped")

FINALIZED_SHOWN = ("finalized:reused", "finalized:unexecuted", "finalized:other_base")


def p2p_counters(url: str) -> dict[str, float]:
    """The node's p2p counters (`/metrics`, P2PCounters by name) that the step report shows, and its committed
    blocks by how finalize found their execution (`finalized:<path>`, VMApplication.finalize_counts); {} if
    unreadable."""
    out: dict[str, float] = {}
    try:
        text = httpx.get(url.rstrip("/") + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith("inferchain_p2p_events_total{"):
            name = line.split('event="', 1)[1].split('"', 1)[0]
            if name in P2P_SHOWN:
                out[name] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("inferchain_finalized_blocks_total{"):
            path = line.split('path="', 1)[1].split('"', 1)[0]
            out[f"finalized:{path}"] = float(line.rsplit(" ", 1)[1])
    return out


def node_cpu_seconds(leaders: list[int]) -> list[float]:
    """CPU seconds (user + system) of each node with its sandbox workers."""
    out = []
    for leader in leaders:
        total = 0
        for pid in group_pids(leader):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        out.append(total / TICK)
    return out


def rss_mib(leader: int) -> tuple[float, float]:
    """(node process, node with its workers) resident memory in MiB."""
    own = group = 0.0
    for pid in group_pids(leader):
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        kib = float(line.split()[1])
        group += kib
        if pid == leader:
            own = kib
    return own / 1024, group / 1024


# ------------------------------------------------------------------------------------------------ report


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def drain(observer: Observer, out: Sent, timeout: float = DRAIN_S) -> float:
    """Until every accepted transaction is committed, or `timeout`, or for STALL_S nothing new commits while
    node 0's mempool is empty and the observer has read every block node 0 has. A mempool that still holds
    transactions is a backlog, not a stall: one height can take a minute of lost rounds under load and then
    commit what it holds; a trailing observer is not a stalled chain either. Returns the seconds it took.
    What is still uncommitted then is classified by asking the nodes (bench/devnet_fate.py)."""
    start = time.monotonic()
    deadline = start + timeout
    last_count, last_change = -1, start
    while time.monotonic() < deadline:
        done = sum(1 for h in out.accepted if h in observer.committed)
        if done == len(out.accepted):
            break
        if done != last_count or observer.behind or observer.mempool:
            last_count, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            break
        time.sleep(0.2)
    return time.monotonic() - start


def driver_cpu_seconds() -> float:
    """CPU of this process (the load driver: its sender threads and the block observer), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def poi_totals(url: str) -> tuple[int, int]:
    """PoI challenges missed so far by all validators together, and how many validators are jailed now (a
    fresh connection each time: the node closes one left idle while the next step is signed)."""
    with Client(url, timeout=30) as client:
        scores = client.poi()
    return sum(s.missed for s in scores), sum(bool(s.jailed) for s in scores)




def rounds_line(blocks: list[Block], validators: int) -> str:
    """Where heights lost time beyond execution, read from the next block's commit: heights decided after
    round 0 (each lost round costs timeout_propose or more), and commits that lack a validator's precommit
    (their proposer waited the full `timeout_commit` for it: consensus/state.py `_wait_for_round_zero`)."""
    later = [b for b in blocks if b.last_round > 0]
    short = sum(1 for b in blocks if 0 < b.last_precommits < validators)
    return (f"heights {len(blocks)}: decided after round 0 {len(later)} (rounds lost "
            f"{sum(b.last_round for b in later)}), commits missing a precommit {short}")


def loaded_line(blocks: list[Block]) -> str:
    """The step's loaded stretch, from its first to its last non-empty block committed since the step began
    (under overload the window above, shifted by a median finality of tens of seconds, falls in the drain):
    blocks, transactions per block (p10/p50/p90), blocks under SMALL_BLOCK_TXS (docs/performance-throughput.md, "The
    small-block regime"), the mean interval and the transactions per second over the stretch."""
    full = [i for i, b in enumerate(blocks) if b.txs]
    if not full:
        return "loaded stretch: no transactions committed"
    stretch = blocks[full[0]:full[-1] + 1]
    sizes = sorted(float(b.txs) for b in stretch)
    span_s = (stretch[-1].time_ms - stretch[0].time_ms) / 1000
    interval = f"{span_s / (len(stretch) - 1):.2f} s" if len(stretch) > 1 else "-"
    rate_s = f"{sum(sizes) / span_s:,.0f}/s" if span_s > 0 else "-"
    small = sum(n < SMALL_BLOCK_TXS for n in sizes)
    return (f"loaded stretch: {len(stretch)} blocks, txs per block p10/p50/p90 {pct(sizes, 0.1):,.0f}/"
            f"{pct(sizes, 0.5):,.0f}/{pct(sizes, 0.9):,.0f}, under {SMALL_BLOCK_TXS:,}: {small}, "
            f"interval {interval}, committed over it {rate_s}")


def print_run_end(net: RealNet, leaders: list[int], observer: Observer) -> None:
    """What every devnet bench prints before stopping its devnet: RSS per node and the largest block seen."""
    print("\nRSS per node (node process / with sandbox workers):")
    for i, leader in zip(net.indices, leaders, strict=True):
        own, group = rss_mib(leader)
        print(f"  node{i}: {own:,.0f} MiB / {group:,.0f} MiB")
    best = max((b.txs for b in observer.blocks), default=0)
    print(f"largest block: {best} txs; observer RPC errors: {observer.errors}"
          + (f" (last: {observer.last_error})" if observer.errors else ""))

def plan_senders(budgets: list[int], min_senders: int) -> tuple[list[int], list[int], int]:
    """Senders per step (enough that none signs more than PER_SENDER), each step's first account index, and
    the number of funded accounts the devnet needs (account 0 is the sink)."""
    senders_per_step = [max(min_senders, -(-budget // PER_SENDER)) for budget in budgets]
    firsts = list(itertools.accumulate([1, *senders_per_step]))
    return senders_per_step, firsts, firsts[-1]


@contextlib.contextmanager
def started_devnet(args: argparse.Namespace, accounts: int, *, prefix: str) -> Iterator[RealNet]:
    """A real devnet of `args.validators` validators in a temporary directory (or `args.keep`), started and
    at height 1 on every node; stopped on exit."""
    keep = args.keep
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=False)
    with (contextlib.nullcontext(str(keep)) if keep is not None
          else tempfile.TemporaryDirectory(prefix=prefix)) as tmp, \
            RealNet(Path(tmp) / "net", validators=args.validators, block_time_ms=args.block_time_ms,
                    accounts=accounts) as net:
        t0 = time.monotonic()
        changes = list(getattr(args, "set", None) or [])
        if getattr(args, "no_hold", False):
            changes.append("mempool.hold_own_txs=false")
        if changes:
            configure(net, changes)
            print("every node's config: " + ", ".join(changes))
        net.start()
        net.wait_height(1, timeout=120)
        print(f"devnet of {args.validators} validators ({accounts} funded accounts): start to first block on "
              f"every node {time.monotonic() - t0:.1f} s")
        yield net

def configure(net: RealNet, changes: list[str]) -> None:
    """Set `section.key=value` (the value as JSON, else as a string) in every node's config.toml before the
    start, for before/after runs of the same code (`--no-hold`, `--set p2p.inbound_bulk_workers=0`)."""
    from node.config import load_config, write_config

    net.devnet.prepare()
    for index in net.indices:
        path = net.spec(index).home / "config.toml"
        cfg = load_config(path)
        for change in changes:
            name, sep, text = change.partition("=")
            section, dot, key = name.partition(".")
            if not sep or not dot:
                raise SystemExit(f"--set {change!r}: expected section.key=value")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            cfg = cfg.replace(**{section: dataclasses.replace(getattr(cfg, section), **{key: value})})
        write_config(path, cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of sending per load (60 for the figure)")
    ap.add_argument("--loads", default="200,500,1000,2000,max", help="offered tx/s per step; max = as fast as "
                    "the endpoints answer")
    ap.add_argument("--senders", type=int, default=256,
                    help=f"funded senders per step, at least one per {PER_SENDER} transactions of the step")
    ap.add_argument("--max-rate-budget", type=int, default=4000,
                    help="tx/s pre-signed for the max step (it ends early if it sends them all)")
    ap.add_argument("--block-time-ms", type=int, default=None,
                    help="timeout_commit and next_block_delay (default: genesis and the devnet's 200 ms)")
    ap.add_argument("--no-retry", action="store_true",
                    help="never send a refused transaction again (the old driver: a full mempool then leaves "
                    "its sender's later nonces gapped)")
    ap.add_argument("--no-hold", action="store_true",
                    help="proposers name their own clients' transactions at once (node.proposal_hold off)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="node config set on every node before the start (repeatable; the value as JSON), e.g. "
                    "p2p.inbound_bulk_workers=0")
    ap.add_argument("--keep", type=Path, default=None,
                    help="run the devnet in this directory and keep it (node logs under its net/) after the run")
    ap.add_argument("--kind", choices=("transfer", "infer", "infer-only"), default="transfer",
                    help="the load: transfers; or tiny exact-class inferences followed by a transfer baseline "
                    "step (infer) or without it (infer-only), bench/devnet_infer.py")
    args = ap.parse_args(argv)
    if args.kind != "transfer":
        from bench.devnet_infer import main_infer
        return main_infer(args)
    loads: list[int | None] = [None if x.strip() == "max" else int(x) for x in args.loads.split(",")]

    key = PrivateKey.derive("bench", "verify", 0)
    message = b"m" * 200
    signature = key.sign(message)
    public = bytes(key.public_key)
    verify_rate = rate(lambda: verify(public, message, signature), min_seconds=1.0)
    cores = os.cpu_count() or 1
    ceiling = verify_rate * cores / args.validators
    print(f"Ed25519 verify (one core): {verify_rate:,.0f}/s; every validator verifying every tx once on "
          f"{cores} cores bounds the devnet at {ceiling:,.0f} tx/s")

    budgets = [int((offered or args.max_rate_budget) * args.duration) for offered in loads]
    senders_per_step, firsts, accounts = plan_senders(budgets, args.senders)
    with started_devnet(args, accounts, prefix="bench-devnet-") as net:
        genesis = json.loads(net.devnet.genesis_path.read_text())
        max_block_bytes = int(genesis["consensus"]["max_block_bytes"])
        observer = Observer(DriverRpc(net.spec(0).rpc_url, timeout=30))
        watcher = threading.Thread(target=observer.run, daemon=True)
        watcher.start()
        leaders = [net.pid(i) for i in net.indices]
        sink = net.account_key(0).address
        print(f"\n{'offered':>8} {'sent/s':>8} {'commit/s':>9} {'step/s':>7} {'p50 s':>7} {'p99 s':>7} {'blk int s':>9} "
              f"{'tx/blk':>7} {'fill%':>6} {'refused':>8} {'pending':>7} {'cpu ms/tx':>9} {'PoI miss':>8} "
              f"{'jailed':>6} {'drv ms/tx':>9}  refusals")
        poi_url = net.spec(0).rpc_url
        try:
            for step, offered in enumerate(loads):
                senders = [net.account_key(firsts[step] + i) for i in range(senders_per_step[step])]
                work = presign(net, senders, budgets[step], sink)
                nodes0 = node_cpu_seconds(leaders)
                cpu0 = sum(nodes0)
                p2p0 = [p2p_counters(net.spec(i).rpc_url) for i in net.indices]
                gc0 = [read_gc(net.spec(i).rpc_url, pid) for i, pid in zip(net.indices, leaders, strict=True)]
                driver0 = driver_cpu_seconds()
                missed0, _ = poi_totals(poi_url)
                out, start = run_step(net, offered, work, args.duration, retry=not args.no_retry)
                window = time.monotonic() - start
                driver1 = driver_cpu_seconds()
                gc_loaded = [read_gc(net.spec(i).rpc_url, pid) for i, pid in zip(net.indices, leaders, strict=True)]
                drained = drain(observer, out)
                gc1 = [read_gc(net.spec(i).rpc_url, pid) for i, pid in zip(net.indices, leaders, strict=True)]
                nodes1 = node_cpu_seconds(leaders)
                unseen = [h for h in out.accepted if h not in observer.committed]
                fates = classify(net.rpc_urls(), out.accepted_by, unseen)
                cpu1 = sum(nodes1)
                p2p1 = [p2p_counters(net.spec(i).rpc_url) for i in net.indices]
                missed1, jailed = poi_totals(poi_url)
                finality = [observer.committed[h] - out.scheduled[h] for h in out.accepted
                            if h in observer.committed and h not in fates.asked]
                pending = len(unseen)  # when the drain ended (what the classification line splits)
                # Throughput over the send window shifted by the median finality (when this step's commits land).
                lag = pct(finality, 0.5) if finality else 0.0
                in_window = [b for b in observer.blocks if start + lag <= b.seen <= start + lag + window]
                committed_in_window = sum(b.txs for b in in_window)
                step_committed = len(finality)
                # The step's own rate: its transactions over the time from its start to its last commit (what a
                # closed-loop step sustained; the window above shifts by a median that retries stretch).
                last = max((observer.committed[h] for h in out.accepted if h in observer.committed), default=start)
                step_rate = step_committed / (last - start) if last > start else 0.0
                times = [b.time_ms for b in in_window]
                interval = statistics.mean(b - a for a, b in itertools.pairwise(times)) / 1000 \
                    if len(times) > 1 else float("nan")
                per_block = statistics.mean(b.txs for b in in_window) if in_window else 0.0
                fill = 100 * statistics.mean(b.bytes for b in in_window) / max_block_bytes if in_window else 0.0
                cpu_ms = 1000 * (cpu1 - cpu0) / step_committed if step_committed else float("nan")
                driver_ms = 1000 * (driver1 - driver0) / out.sent if out.sent else float("nan")
                reasons = ", ".join([f"{r} x{n}" for r, n in out.refused.most_common(3)]
                                    + ([f"sent again x{out.retried}"] if out.retried else []))
                label = "max" if offered is None else str(offered)
                print(f"{label:>8} {(out.sent - out.retried) / window:>8,.0f} {committed_in_window / window:>9,.0f} {step_rate:>7,.0f} "
                      f"{pct(finality, 0.5):>7.2f} {pct(finality, 0.99):>7.2f} {interval:>9.2f} "
                      f"{per_block:>7,.0f} {fill:>6.1f} {sum(out.refused.values()):>8} {pending:>7} {cpu_ms:>9.2f}"
                      f" {missed1 - missed0:>8} {jailed:>6} {driver_ms:>9.3f}  {reasons}", flush=True)
                if fates.total:
                    print(f"         after a drain of {drained:.0f} s: " + fates.line(), flush=True)
                print("         " + rounds_line(in_window, len(leaders)), flush=True)
                print("         " + loaded_line([b for b in observer.blocks if b.seen >= start]), flush=True)
                if step_committed:  # node 0 also serves the block observer (every block as JSON)
                    print("         cpu ms/tx by node: " + ", ".join(
                        f"node{i} {1000 * (b - a) / step_committed:.2f}"
                        for i, a, b in zip(net.indices, nodes0, nodes1, strict=True)), flush=True)
                    # gossip per committed transfer and node (docs/performance-cpu.md, "Gossip: duplicates ...")
                    grown = {k: sum(b.get(k, 0) - a.get(k, 0) for a, b in zip(p2p0, p2p1, strict=True))
                             / step_committed / len(leaders) for k in P2P_SHOWN}
                    print("         gossip per tx per node: " + ", ".join(
                        f"{k} {v * 1000:.1f}/1000" if k != "rpc_bytes_received" else f"bytes received {v:,.0f}"
                        for k, v in grown.items()), flush=True)
                print("         " + gc_line(gc0, gc1, gc_loaded, step_committed), flush=True)
                # blocks a node executed again at commit (docs/performance-cpu.md, "Blocks executed twice")
                print("         blocks finalized by node (reused/unexecuted/other_base): " + ", ".join(
                    f"node{i} " + "/".join(f"{b.get(k, 0) - a.get(k, 0):.0f}" for k in FINALIZED_SHOWN)
                    for i, a, b in zip(net.indices, p2p0, p2p1, strict=True)), flush=True)
        finally:
            observer.stop.set()
            watcher.join(10)
            observer.client.close()
        print_run_end(net, leaders, observer)
    print("every devnet process stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
