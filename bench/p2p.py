"""p2p bench: 4 node processes on 127.0.0.1, full mesh. `python -m bench.p2p [--quick]`

Prints gossip latency p50/p99 for 200 B and 100 KB messages (with our full validation, and against a
baseline run of the same harness with decoding/signature checks off), and the transactions per second that
batched gossip carries before any loss.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from p2p.testnode import NodeProcess, free_port, peer_addr_for

N = 4


@asynccontextmanager
async def network(*extra: str) -> AsyncIterator[list[NodeProcess]]:
    ports = [free_port() for _ in range(N)]
    seeds = [f"bench-{i}" for i in range(N)]
    addrs = [peer_addr_for(s, p) for s, p in zip(seeds, ports, strict=True)]
    nodes = [NodeProcess(seeds[i], ports[i], [a for j, a in enumerate(addrs) if j != i], *extra) for i in range(N)]
    ids = [a.rsplit("/p2p/", 1)[1] for a in addrs]
    async with trio.open_nursery() as nursery:
        try:
            for node in nodes:
                await node.start(nursery)
            with trio.fail_after(60):
                for node in nodes:
                    await node.expect("ready")
                for i, node in enumerate(nodes):
                    want = {ids[j] for j in range(N) if j != i}
                    while not want <= set((await node.request("peers", "peers"))["mesh"]):  # noqa: ASYNC110
                        await trio.sleep(0.1)
            yield nodes
        finally:
            with trio.CancelScope(shield=True):
                for node in nodes:
                    await node.stop(grace=5)
            nursery.cancel_scope.cancel()


async def everyone(nodes: list[NodeProcess], cmd: str, reply: str, within: float,
                   **fields: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in nodes]

    async def one(i: int) -> None:
        results[i] = await nodes[i].request(cmd, reply, **fields)

    with trio.fail_after(within):
        async with trio.open_nursery() as nursery:
            for i in range(len(nodes)):
                nursery.start_soon(one, i)
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(nodes: list[NodeProcess], size: int, count: int, rate: float) -> dict[str, float]:
    await everyone(nodes, "reset_stats", "reset", 10)
    await everyone(nodes, "publish_timed", "published_timed", count / rate + 60, size=size, count=count, rate=rate)
    expected = N * (N - 1) * count
    deadline = trio.current_time() + 20  # a message later than this counts as lost
    while True:
        await trio.sleep(0.5)
        stats = await everyone(nodes, "stats", "stats", 30)
        if sum(len(s["latencies_ns"]) for s in stats) >= expected or trio.current_time() > deadline:
            break
    lat_ms = [ns / 1e6 for s in stats for ns in s["latencies_ns"]]
    if len(lat_ms) < expected:
        totals: dict[str, int] = {}
        for st in stats:
            for k, v in st["counters"].items():
                totals[k] = totals.get(k, 0) + v
        print(f"  [{size} B: {expected - len(lat_ms)} not delivered; counters summed over nodes: {totals}]")
    return {"p50": statistics.median(lat_ms), "p99": pct(lat_ms, 0.99), "delivered": len(lat_ms),
            "expected": expected, "drops": sum(s["counters"].get("outbound_dropped", 0) for s in stats)}


async def throughput(nodes: list[NodeProcess], per_node_rate: int, seconds: float) -> dict[str, float]:
    count = int(per_node_rate * seconds)
    await everyone(nodes, "reset_stats", "reset", 10)
    await everyone(nodes, "prepare_txs", "prepared", 120, count=count)
    await everyone(nodes, "offer_txs", "offered", seconds * 10 + 60, rate=per_node_rate)
    expected = (N - 1) * count
    deadline = trio.current_time() + 15
    while True:
        stats = await everyone(nodes, "stats", "stats", 30)
        if all(s["txs"] >= expected for s in stats) or trio.current_time() > deadline:
            break
        await trio.sleep(0.5)
    received = sum(s["txs"] for s in stats)
    span = max(s["tx_span_s"] for s in stats) or seconds
    return {"offered_tps": N * per_node_rate, "lost": N * expected - received,
            "delivered_tps": N * count / span, "waits": sum(s["counters"].get("publish_waits", 0) for s in stats)}


async def main(quick: bool, only: str | None) -> None:
    started = time.monotonic()
    count_small, count_large = (50, 20) if quick else (150, 50)
    print(f"p2p bench: {N} processes, full mesh, 127.0.0.1, Noise + Yamux, GossipSub heartbeat 1 s; "
          f"{os.cpu_count()} CPUs, load average before start {os.getloadavg()[0]:.1f}")
    rows = []
    variants = (("full checks", ()), ("baseline (no decode/signature checks)", ("--no-checks",)))
    for label, extra in variants if only != "throughput" else ():
        async with network(*extra) as nodes:
            small = await latency(nodes, 200, count_small, 10)
            large = await latency(nodes, 100_000, count_large, 10)
        rows.append((label, small, large))
    if only == "throughput":
        rows = []
    print(f"\n{'gossip latency (ms), each node publishes at 10 msg/s':<58}{'p50':>8}{'p99':>8}{'delivered':>14}")
    for label, small, large in rows:
        for size, r in (("200 B", small), ("100 KB", large)):
            print(f"  {size:<7}{label:<49}{r['p50']:>8.1f}{r['p99']:>8.1f}"
                  f"{int(r['delivered']):>8}/{int(r['expected'])}")
    for size, i in (("200 B", 1), ("100 KB", 2)) if len(rows) == 2 else ():
        full, base = rows[0][i], rows[1][i]
        print(f"  ratio full/baseline {size}: p50 {full['p50'] / base['p50']:.2f}x, p99 {full['p99'] / base['p99']:.2f}x")

    if only == "latency":
        return
    print("\nbatched transaction gossip (~260 B signed txs, batcher 256 KiB / 50 ms, every node verifies every tx)")
    print(f"  {'offered tx/s':>12}{'delivered tx/s':>16}{'lost':>8}{'publish waits':>15}")
    best = 0
    rates = (250, 500, 1000) if quick else (250, 500, 1000, 1500, 2000, 3000)
    async with network() as nodes:
        for rate in rates:
            r = await throughput(nodes, rate, 3.0)
            print(f"  {int(r['offered_tps']):>12}{r['delivered_tps']:>16.0f}{int(r['lost']):>8}{int(r['waits']):>15}")
            if r["lost"]:
                break
            best = int(r["offered_tps"])
    print(f"  highest offered rate with no loss: {best} tx/s")
    print(f"\nbench took {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="p2p gossip latency and throughput")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("latency", "throughput"))
    args = parser.parse_args()
    trio.run(main, args.quick, args.only)
