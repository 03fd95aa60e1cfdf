"""p2p bench: 4 node processes on 127.0.0.1, full mesh. `python -m bench.p2p [--quick] [--only ...]`

`--dont-want` compares IDONTWANT off and on; `--coalesce` compares coalescing off and on (p2p/coalesce.py):
consensus-like vote heights (CPU and frames read per delivered vote) and batched transfers, networks alternating;
`--coalesce-bulk` compares batched transfers with transaction batches merged into frames off and on; `--yamux`
compares CPU per MiB on one stream with upstream's Yamux and p2p/yamux.py's; `--lane` times votes published
while the same node writes large transaction batches to the same peers, without and with the consensus lane
(p2p/lane.py), networks alternating.

Prints gossip latency p50/p99 and CPU per delivery for 200 B and 100 KB messages with our full validation,
against a baseline of the same network with decoding/signature checks switched off (rounds alternate, so
load from other work on a shared machine falls on both alike), and the transactions per second that batched
gossip carries before any loss.
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

from p2p.testing.node import NodeProcess, free_port, peer_addr_for
from p2p.topics import TopicKind

N = 4


@asynccontextmanager
async def network(*extra: str, root: str | None = None) -> AsyncIterator[list[NodeProcess]]:
    """Four node processes in a full mesh, running this checkout's code or `root`'s (a baseline worktree)."""
    ports = [free_port() for _ in range(N)]
    seeds = [f"bench-{i}" for i in range(N)]
    addrs = [peer_addr_for(s, p) for s, p in zip(seeds, ports, strict=True)]
    nodes = [NodeProcess(seeds[i], ports[i], [a for j, a in enumerate(addrs) if j != i], *extra,
                         **({"root": root} if root else {})) for i in range(N)]
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


async def latency_round(nodes: list[NodeProcess], size: int, count: int, rate: float) -> dict[str, Any]:
    """Every node publishes `count` messages of `size` bytes at `rate`/s; latencies of all deliveries."""
    await everyone(nodes, "reset_stats", "reset", 10)
    await everyone(nodes, "publish_timed", "published_timed", count / rate + 60, size=size, count=count, rate=rate)
    expected = N * (N - 1) * count
    deadline = trio.current_time() + 20  # a message later than this counts as lost
    while True:
        await trio.sleep(0.5)
        stats = await everyone(nodes, "stats", "stats", 30)
        if sum(len(s["latencies_ns"]) for s in stats) >= expected or trio.current_time() > deadline:
            break
    return {"lat_ms": [ns / 1e6 for s in stats for ns in s["latencies_ns"]], "expected": expected,
            "cpu_s": sum(s["cpu_s"] for s in stats),
            "drops": sum(s["counters"].get("outbound_dropped", 0) for s in stats)}


async def latency(nodes: list[NodeProcess], rounds: int, quick: bool) -> None:
    sizes = {"200 B": (200, 20 if quick else 30), "100 KB": (100_000, 10 if quick else 15)}
    results: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for checks in (True, False):
            await everyone(nodes, "set_checks", "checks", 10, enabled=checks)
            for label, (size, count) in sizes.items():
                results.setdefault((label, checks), []).append(await latency_round(nodes, size, count, 10))
    print(f"\ngossip latency, {N} nodes each publishing 10 msg/s, {rounds} alternating rounds")
    print(f"  {'size':<8}{'validation':<34}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/delivery':>17}{'delivered':>14}")
    summary: dict[tuple[str, bool], tuple[float, float, float]] = {}
    for (label, checks), rs in sorted(results.items(), key=lambda kv: (kv[0][0] != "200 B", not kv[0][1])):
        lat = [x for r in rs for x in r["lat_ms"]]
        expected = sum(r["expected"] for r in rs)
        cpu = 1000 * sum(r["cpu_s"] for r in rs) / max(1, len(lat))
        name = "full (decode, chain id, signatures)" if checks else "baseline (checks off)"
        summary[(label, checks)] = (statistics.median(lat), pct(lat, 0.99), cpu)
        print(f"  {label:<8}{name:<34}{summary[(label, checks)][0]:>8.1f}{summary[(label, checks)][1]:>8.1f}"
              f"{cpu:>17.2f}{len(lat):>8}/{expected}")
    for label in sizes:
        full, base = summary[(label, True)], summary[(label, False)]
        print(f"  ratio full/baseline {label}: p50 {full[0] / base[0]:.2f}x, p99 {full[1] / base[1]:.2f}x, "
              f"CPU {full[2] / base[2]:.2f}x")


async def throughput(nodes: list[NodeProcess], per_node_rate: int, seconds: float) -> dict[str, float]:
    count = int(per_node_rate * seconds)
    await everyone(nodes, "reset_stats", "reset", 10)
    await everyone(nodes, "prepare_txs", "prepared", 120, count=count)
    await everyone(nodes, "reset_stats", "reset", 10)
    before = [s["counters"] for s in await everyone(nodes, "stats", "stats", 30)]
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

    def total(name: str) -> int:
        """A p2p counter's growth during the step, summed over the nodes."""
        return sum(s["counters"].get(name, 0) - b.get(name, 0) for s, b in zip(stats, before, strict=True))

    def per_batch(name: str) -> float:
        """Per batch published and per receiving node: 1.0 copies means each node got each batch once."""
        return total(name) / max(1, batches) / (N - 1)

    batches = total("published.txs")
    return {"offered_tps": N * per_node_rate, "lost": N * expected - received,
            "copies": per_batch("messages_received"), "dups": per_batch("duplicates"),
            "frames": per_batch("rpcs_received"), "suppressed": per_batch("relays_suppressed"),
            "kib_rx": total("rpc_bytes_received") / 1024 / max(1, received),
            "delivered_tps": N * count / span, "cpu_us": 1e6 * sum(s["cpu_s"] for s in stats) / max(1, received),
            "waits": total("publish_waits"), "txs_per_batch": received / (N - 1) / max(1, batches),
            "drops": total("outbound_dropped") + sum(total(f"delivery_dropped.{k.value}") for k in TopicKind)}


_THROUGHPUT_HEADER = (f"  {'offered tx/s':>12}{'delivered tx/s':>16}{'late/lost':>10}{'dropped RPCs':>14}"
                      f"{'CPU us/tx/node':>16}{'publish waits':>15}{'copies/batch':>14}{'dups/batch':>12}"
                      f"{'frames/batch':>14}{'suppressed':>12}{'KiB rx/tx':>11}{'tx/batch':>10}")


def throughput_row(r: dict[str, float]) -> str:
    return (f"  {int(r['offered_tps']):>12}{r['delivered_tps']:>16.0f}{int(r['lost']):>10}{int(r['drops']):>14}"
            f"{r['cpu_us']:>16.0f}{int(r['waits']):>15}{r['copies']:>14.2f}{r['dups']:>12.2f}"
            f"{r['frames']:>14.2f}{r['suppressed']:>12.2f}{r['kib_rx']:>11.3f}{r.get('txs_per_batch', 0.0):>10.1f}")


_COLUMNS = ("  copies/batch, dups/batch, frames/batch: per batch published and per receiving node (1.00 copies = each "
            "node got each batch once); suppressed: copies not sent (IDONTWANT), per batch and receiver; KiB rx/tx: "
            "pubsub bytes a node read per transaction it received")


async def main(quick: bool, only: str | None) -> None:
    started = time.monotonic()
    print(f"p2p bench: {N} processes, full mesh, 127.0.0.1, Noise + Yamux, GossipSub heartbeat 1 s; "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    async with network() as nodes:
        if only != "throughput":
            await latency(nodes, 2 if quick else 4, quick)
        if only != "latency":
            await everyone(nodes, "set_checks", "checks", 10, enabled=True)  # the latency rounds end with it off
            print("\nbatched transaction gossip (~260 B signed txs, batcher 256 KiB / 100 ms, checks on: every node "
                  "verifies every tx)")
            print(_THROUGHPUT_HEADER)
            best = 0
            for rate in (250, 500, 1000) if quick else (250, 500, 1000, 1500, 2000, 3000, 4000):
                r = await throughput(nodes, rate, 3.0)
                print(throughput_row(r))
                if r["lost"]:
                    break
                best = int(r["offered_tps"])
            print(f"  highest offered rate with every tx delivered within 15 s: {best} tx/s; sustained rate is the "
                  "delivered column where it keeps up with the offered one")
            print(_COLUMNS)
    print(f"\nbench took {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")


async def compare_dont_want(rounds: int, rates: list[int], seconds: float) -> None:
    """Batched gossip with IDONTWANT off and on (p2p/dontwant.py), networks alternating, same rates each."""
    print(f"p2p bench, IDONTWANT off/on: {N} processes, full mesh, {rounds} alternating rounds, {seconds:g} s per "
          f"rate; {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    print(f"  {'mode':<6}{'load':>6}" + _THROUGHPUT_HEADER[2:])
    big: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for _ in range(rounds):
        for mode, extra in (("off", ("--no-dont-want",)), ("on", ())):
            async with network(*extra) as nodes:
                for rate in rates:
                    load = os.getloadavg()[0]
                    r = await throughput(nodes, rate // N, seconds)
                    print(f"  {mode:<6}{load:>6.1f}" + throughput_row(r)[2:], flush=True)
                load = os.getloadavg()[0]
                big.setdefault(mode, []).append((load, await large_messages(nodes)))
    print(_COLUMNS)
    print(f"\n100 KB messages, each node publishing {LARGE_COUNT} at {LARGE_RATE:g}/s")
    print(f"  {'mode':<6}{'load':>6}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/delivery':>17}{'delivered':>11}"
          f"{'copies/msg':>12}{'frames/msg':>12}{'suppressed':>12}")
    for round_ in range(rounds):
        for mode in ("off", "on"):
            load, r = big[mode][round_]
            print(f"  {mode:<6}{load:>6.1f}{pct(r['lat_ms'], 0.5):>8.1f}{pct(r['lat_ms'], 0.99):>8.1f}"
                  f"{r['cpu_ms']:>17.2f}{len(r['lat_ms']):>6}/{r['expected']:<4}{r['copies']:>12.2f}"
                  f"{r['frames']:>12.2f}{r['suppressed']:>12.2f}")


async def alternating_rows(modes: tuple[tuple[str, tuple[str, ...], str | None], ...], rounds: int, rates: list[int],
                           seconds: float) -> dict[tuple[str, int], list[dict[str, float]]]:
    """Batched gossip at each rate on a fresh network per mode (its name, its nodes' extra arguments, the checkout
    its nodes run: None for this one), modes alternating, `rounds` times; prints each row, returns them."""
    print(f"  {'mode':<6}{'load':>6}" + _THROUGHPUT_HEADER[2:])
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for mode, extra, root in modes:
            async with network(*extra, root=root) as nodes:
                for rate in rates:
                    load = os.getloadavg()[0]
                    r = await throughput(nodes, rate // N, seconds)
                    rows.setdefault((mode, rate), []).append(r)
                    print(f"  {mode:<6}{load:>6.1f}" + throughput_row(r)[2:], flush=True)
    print(_COLUMNS)
    return rows


async def compare_bulk_coalesce(rounds: int, rates: list[int], seconds: float) -> None:
    """Batched gossip with transaction batches merged into frames off (`--no-bulk-coalesce`: consensus
    messages only, as before) and on (p2p/coalesce.py), networks alternating, same rates each."""
    print(f"p2p bench, bulk coalescing off/on: {N} processes, full mesh, {rounds} alternating rounds, {seconds:g} s "
          f"per rate; {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    rows = await alternating_rows((("off", ("--no-bulk-coalesce",), None), ("on", (), None)), rounds, rates, seconds)
    print("\n  means over the rounds, on/off ratio (below 1: merging batches costs less)")
    for rate in rates:
        on = {k: statistics.mean(r[k] for r in rows[("on", rate)]) for k in ("cpu_us", "frames")}
        off = {k: statistics.mean(r[k] for r in rows[("off", rate)]) for k in ("cpu_us", "frames")}
        print(f"  transfers at {rate} tx/s: CPU per tx per node {off['cpu_us']:.0f} -> {on['cpu_us']:.0f} us "
              f"({on['cpu_us'] / off['cpu_us']:.2f}x); frames read per batch {off['frames']:.2f} -> "
              f"{on['frames']:.2f} ({on['frames'] / off['frames']:.2f}x)")


async def compare_base(base: str, rounds: int, rates: list[int], seconds: float, checks: bool) -> None:
    """Batched gossip on networks running `base`'s code (another worktree, e.g. main) and this checkout's,
    alternating, same rates each: CPU per transaction per node (process CPU, every thread), frames and copies.
    Without `checks` the nodes decode batches but verify no signature: what is left is the p2p layer's cost."""
    extra = () if checks else ("--no-checks",)
    print(f"p2p bench, base ({base}) vs this checkout: {N} processes, full mesh, {rounds} alternating rounds, "
          f"{seconds:g} s per rate, checks {'on' if checks else 'off'}; {os.cpu_count()} CPUs, load average at "
          f"start {os.getloadavg()[0]:.1f}")
    rows = await alternating_rows((("base", extra, base), ("new", extra, None)), rounds, rates, seconds)
    print("\n  means over the rounds, new/base ratio (below 1: the new code costs less)")
    for rate in rates:
        new = {k: statistics.mean(r[k] for r in rows[("new", rate)]) for k in ("cpu_us", "frames", "copies")}
        old = {k: statistics.mean(r[k] for r in rows[("base", rate)]) for k in ("cpu_us", "frames", "copies")}
        print(f"  {rate} tx/s: CPU per tx per node {old['cpu_us']:.0f} -> {new['cpu_us']:.0f} us "
              f"({new['cpu_us'] / old['cpu_us']:.2f}x); frames read per batch {old['frames']:.2f} -> "
              f"{new['frames']:.2f}; copies per batch {old['copies']:.2f} -> {new['copies']:.2f}")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


async def stream_write_cpu(writes: int, payload: bytes) -> float:
    """Process CPU seconds (both ends: this process) to write `payload` `writes` times on one stream between two
    fresh hosts over TCP on 127.0.0.1 and read all of it on the other side."""
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import PeerInfo

    from p2p.host import build_host, close_connections, parse_multiaddr
    from p2p.identity import node_key_from_seed

    protocol = TProtocol("/inferchain-bench/sink/1")
    total = writes * len(payload)
    got = 0
    done = trio.Event()

    async def sink(stream: Any) -> None:
        nonlocal got
        while got < total:
            chunk = await stream.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        done.set()

    a = build_host(node_key_from_seed(b"bench-stream-a"), ["/ip4/127.0.0.1/tcp/0"])
    b = build_host(node_key_from_seed(b"bench-stream-b"), ["/ip4/127.0.0.1/tcp/0"])
    b.set_stream_handler(protocol, sink)
    listen = [parse_multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
        try:
            await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
            stream = await a.new_stream(b.get_id(), [protocol])
            began = time.process_time()
            for _ in range(writes):
                await stream.write(payload)
            with trio.fail_after(120):
                await done.wait()
            spent = time.process_time() - began
            await stream.close()
        finally:
            await close_connections(a)
            await close_connections(b)
    return spent


async def yamux_stream(quiet: bool, total: int, write_size: int) -> float:
    """CPU ms (this process: both ends) per MiB written on one stream between two hosts over TCP, with
    upstream's Yamux (64 KiB frames, two Noise messages each, a debug line formatted per frame) or
    `p2p.yamux.QuietYamux` (frames that fit one Noise message, no debug line). The module names p2p/yamux.py
    rebinds are set for each mode before its hosts connect (upstream reads them at connection and write time)."""
    from libp2p.stream_muxer import muxer_multistream
    from libp2p.stream_muxer.yamux import yamux as upstream

    from p2p import yamux as ours

    upstream.MAX_MESSAGE_SIZE = ours.NOISE_FRAME_BYTES if quiet else 64 * 1024
    muxer_multistream.Yamux = ours.QuietYamux if quiet else upstream.Yamux  # type: ignore[attr-defined]
    try:
        spent = await stream_write_cpu(total // write_size, os.urandom(write_size))
    finally:
        upstream.MAX_MESSAGE_SIZE = ours.NOISE_FRAME_BYTES
        muxer_multistream.Yamux = ours.QuietYamux  # type: ignore[attr-defined]
    return float(1000 * spent / (total / (1 << 20)))


async def compare_yamux(rounds: int, mib: int, write_kib: int) -> None:
    print(f"p2p bench, Yamux upstream/quiet: one stream, {mib} MiB in writes of {write_kib} KiB, both ends in this "
          f"process, {rounds} alternating rounds; load average at start {os.getloadavg()[0]:.1f}")
    print(f"  {'mode':<10}{'load':>6}{'CPU ms/MiB':>12}")
    spent: dict[str, list[float]] = {}
    for _ in range(rounds):
        for mode in ("upstream", "quiet"):
            load = os.getloadavg()[0]
            ms = await yamux_stream(mode == "quiet", mib << 20, write_kib << 10)
            spent.setdefault(mode, []).append(ms)
            print(f"  {mode:<10}{load:>6.1f}{ms:>12.1f}", flush=True)
    up, quiet = statistics.mean(spent["upstream"]), statistics.mean(spent["quiet"])
    print(f"  means: {up:.1f} -> {quiet:.1f} CPU ms per MiB ({quiet / up:.2f}x)")


LARGE_COUNT, LARGE_RATE = 15, 10.0


async def large_messages(nodes: list[NodeProcess]) -> dict[str, Any]:
    """`latency_round` with 100 KB messages, plus copies, frames and suppressed relays per message and receiver."""
    before = [s["counters"] for s in await everyone(nodes, "stats", "stats", 30)]
    r = await latency_round(nodes, 100_000, LARGE_COUNT, LARGE_RATE)
    after = [s["counters"] for s in await everyone(nodes, "stats", "stats", 30)]
    sent = N * LARGE_COUNT * (N - 1)

    def grown(name: str) -> float:
        return sum(a.get(name, 0) - b.get(name, 0) for a, b in zip(after, before, strict=True)) / sent

    lat = r["lat_ms"] or [float("nan")]
    return {"lat_ms": lat, "expected": r["expected"], "cpu_ms": 1000 * r["cpu_s"] / max(1, len(r["lat_ms"])),
            "copies": grown("messages_received"), "frames": grown("rpcs_received"),
            "suppressed": grown("relays_suppressed")}


async def vote_heights(nodes: list[NodeProcess], heights: int, burst: int, rate: float) -> dict[str, float]:
    """Consensus-like traffic: `heights` times, at `rate` per second, every node publishes `burst` votes at
    once (a validator's prevote and precommit, or several rounds' worth); each is relayed in the full mesh.
    CPU of all nodes per delivered vote, and pubsub frames and published messages read per delivered vote."""
    await everyone(nodes, "reset_stats", "reset", 10)
    before = [s["counters"] for s in await everyone(nodes, "stats", "stats", 30)]
    start = trio.current_time()
    for h in range(heights):
        await trio.sleep_until(start + h / rate)
        await everyone(nodes, "publish_votes", "published", 30, count=burst, height=h + 1)
    expected = N * (N - 1) * heights * burst
    deadline = trio.current_time() + 20
    while True:
        stats = await everyone(nodes, "stats", "stats", 30)
        grown = {name: sum(s["counters"].get(name, 0) - b.get(name, 0) for s, b in zip(stats, before, strict=True))
                 for name in ("delivered.votes", "rpcs_received", "messages_received", "rpcs_sent", "frames_sent")}
        if grown["delivered.votes"] >= expected or trio.current_time() > deadline:
            break
        await trio.sleep(0.25)
    delivered = max(1, grown["delivered.votes"])
    return {"delivered": grown["delivered.votes"], "expected": expected,
            "cpu_us": 1e6 * sum(s["cpu_s"] for s in stats) / delivered,
            "frames": grown["rpcs_received"] / delivered, "copies": grown["messages_received"] / delivered,
            "merged": 1 - grown["frames_sent"] / max(1, grown["rpcs_sent"])}


async def compare_coalesce(rounds: int, heights: int, bursts: list[int], rates: list[int], seconds: float) -> None:
    """Vote heights and batched transfers with coalescing off (`--no-coalesce`) and on, networks alternating."""
    print(f"p2p bench, coalescing off/on: {N} processes, full mesh, {rounds} alternating rounds; "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    votes: dict[tuple[str, int], list[dict[str, float]]] = {}
    txs: dict[tuple[str, int], list[dict[str, float]]] = {}
    print(f"  {'mode':<6}{'load':>6}{'votes/height/node':>19}{'delivered':>14}{'CPU us/vote':>13}"
          f"{'frames/vote':>13}{'copies/vote':>13}{'sent merged':>13}")
    for _ in range(rounds):
        for mode, extra in (("off", ("--no-coalesce",)), ("on", ())):
            async with network(*extra) as nodes:
                for burst in bursts:
                    load = os.getloadavg()[0]
                    r = await vote_heights(nodes, heights, burst, 10.0)
                    votes.setdefault((mode, burst), []).append(r)
                    print(f"  {mode:<6}{load:>6.1f}{burst:>19}{int(r['delivered']):>8}/{int(r['expected']):<5}"
                          f"{r['cpu_us']:>13.0f}{r['frames']:>13.2f}{r['copies']:>13.2f}{r['merged']:>13.2f}",
                          flush=True)
                for rate in rates:
                    load = os.getloadavg()[0]
                    t = await throughput(nodes, rate // N, seconds)
                    txs.setdefault((mode, rate), []).append(t)
                    print(f"  {mode:<6}{load:>6.1f}  transfers {rate} tx/s offered: delivered {t['delivered_tps']:.0f}"
                          f" tx/s, lost {int(t['lost'])}, CPU {t['cpu_us']:.0f} us/tx/node, "
                          f"frames/batch {t['frames']:.2f}", flush=True)
    print("\n  means over the rounds, on/off ratio (below 1: coalescing costs less)")
    for burst in bursts:
        on = statistics.mean(r["cpu_us"] for r in votes[("on", burst)])
        off = statistics.mean(r["cpu_us"] for r in votes[("off", burst)])
        f_on = statistics.mean(r["frames"] for r in votes[("on", burst)])
        f_off = statistics.mean(r["frames"] for r in votes[("off", burst)])
        print(f"  {burst} votes/height/node: CPU per delivered vote {off:.0f} -> {on:.0f} us ({on / off:.2f}x); "
              f"frames read per vote {f_off:.2f} -> {f_on:.2f} ({f_on / f_off:.2f}x)")
    for rate in rates:
        on = statistics.mean(r["cpu_us"] for r in txs[("on", rate)])
        off = statistics.mean(r["cpu_us"] for r in txs[("off", rate)])
        print(f"  transfers at {rate} tx/s: CPU per tx per node {off:.0f} -> {on:.0f} us ({on / off:.2f}x)")


async def lane_round(nodes: list[NodeProcess], bulk_bytes: int, bulk_rate: float, vote_rate: float,
                     seconds: float) -> dict[str, Any]:
    """Node 0 publishes transaction batches of `bulk_bytes` at `bulk_rate`/s and, meanwhile, votes at `vote_rate`/s;
    how late each vote reaches each of the other nodes (ms after signing), and how late each batch did."""
    await everyone(nodes, "reset_stats", "reset", 10)
    votes, batches = int(vote_rate * seconds), int(bulk_rate * seconds)
    mark = nodes[0].mark()
    await nodes[0].send("publish_timed", size=bulk_bytes, count=batches, rate=bulk_rate)
    await nodes[0].send("publish_timed_votes", count=votes, rate=vote_rate)
    with trio.fail_after(seconds + 120):
        await nodes[0].expect("published_timed", since=mark)
        await nodes[0].expect("published_timed_votes", since=mark)
    expected = (N - 1) * votes
    deadline = trio.current_time() + 20  # a vote later than this counts as lost
    while True:
        stats = await everyone(nodes, "stats", "stats", 30)
        got = [ms for s in stats[1:] for ms in s["vote_latencies_ms"]]
        if len(got) >= expected or trio.current_time() > deadline:
            break
        await trio.sleep(0.25)
    return {"vote_ms": [float(ms) for ms in got], "expected": expected,
            "bulk_ms": [ns / 1e6 for s in stats[1:] for ns in s["latencies_ns"]], "bulk_expected": (N - 1) * batches,
            "lane_frames": stats[0]["counters"].get("lane_frames_sent", 0)}


async def compare_lane(rounds: int, bulk_kib: int, bulk_rate: float, vote_rate: float, seconds: float) -> None:
    """Votes behind bulk writes to the same peers, without the consensus lane (`--no-lane`) and with it."""
    print(f"p2p bench, consensus lane off/on: {N} processes, full mesh; node 0 publishes {bulk_kib} KiB transaction "
          f"batches at {bulk_rate:g}/s and votes at {vote_rate:g}/s for {seconds:g} s; {rounds} alternating rounds; "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    print(f"  {'lane':<6}{'load':>6}{'vote p50 ms':>13}{'vote p99 ms':>13}{'vote max ms':>13}{'votes':>12}"
          f"{'batch p50 ms':>14}{'batches':>10}{'lane frames':>13}")
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode, extra in (("off", ("--no-lane",)), ("on", ())):
            async with network(*extra) as nodes:
                load = os.getloadavg()[0]
                r = await lane_round(nodes, bulk_kib * 1024, bulk_rate, vote_rate, seconds)
                results[mode].append(r)
                v = r["vote_ms"] or [float("nan")]
                b = r["bulk_ms"] or [float("nan")]
                print(f"  {mode:<6}{load:>6.1f}{statistics.median(v):>13.1f}{pct(v, 0.99):>13.1f}{max(v):>13.1f}"
                      f"{len(r['vote_ms']):>6}/{r['expected']:<5}{statistics.median(b):>14.1f}"
                      f"{len(r['bulk_ms']):>5}/{r['bulk_expected']:<4}{r['lane_frames']:>13}", flush=True)
    pooled = {mode: [x for r in rs for x in r["vote_ms"]] or [float("nan")] for mode, rs in results.items()}
    bulk = {mode: [x for r in rs for x in r["bulk_ms"]] or [float("nan")] for mode, rs in results.items()}
    on, off = pooled["on"], pooled["off"]
    print(f"\n  pooled over the rounds, on/off: vote p50 {statistics.median(off):.1f} -> {statistics.median(on):.1f} ms "
          f"({statistics.median(on) / statistics.median(off):.2f}x), p99 {pct(off, 0.99):.1f} -> {pct(on, 0.99):.1f} ms "
          f"({pct(on, 0.99) / pct(off, 0.99):.2f}x); batch p50 {statistics.median(bulk['off']):.1f} -> "
          f"{statistics.median(bulk['on']):.1f} ms; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="p2p gossip latency and throughput")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("latency", "throughput"))
    parser.add_argument("--dont-want", action="store_true",
                        help="compare batched gossip with IDONTWANT off and on, alternating")
    parser.add_argument("--coalesce", action="store_true",
                        help="compare vote heights and batched gossip with coalescing off and on, alternating")
    parser.add_argument("--coalesce-bulk", action="store_true",
                        help="compare batched gossip with transaction batches merged into frames off and on")
    parser.add_argument("--yamux", action="store_true",
                        help="compare CPU per MiB on one stream with upstream's Yamux and p2p/yamux.py's")
    parser.add_argument("--lane", action="store_true",
                        help="time votes behind bulk writes to the same peers, consensus lane off and on")
    parser.add_argument("--bulk-kib", type=int, default=1000, help="transaction batch size, KiB (with --lane)")
    parser.add_argument("--bulk-rate", type=float, default=4.0, help="batches per second (with --lane)")
    parser.add_argument("--vote-rate", type=float, default=20.0, help="votes per second (with --lane)")
    parser.add_argument("--mib", type=int, default=64, help="MiB per run (with --yamux)")
    parser.add_argument("--write-kib", type=int, default=256, help="bytes per write, in KiB (with --yamux)")
    parser.add_argument("--heights", type=int, default=100, help="vote heights per step (with --coalesce)")
    parser.add_argument("--bursts", default="1,3", help="votes each node publishes per height (with --coalesce)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="1000,2000", help="offered tx/s in all (with --dont-want, --coalesce)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="offering time per rate (with --dont-want, --coalesce)")
    parser.add_argument("--base", metavar="PATH",
                        help="compare batched gossip on networks running PATH's code (a worktree of the baseline) "
                             "and this checkout's, alternating (with --rates, --seconds, --rounds)")
    parser.add_argument("--no-checks", action="store_true",
                        help="with --base: nodes verify no signatures (the p2p layer's own cost)")
    args = parser.parse_args()
    if args.base:
        trio.run(compare_base, os.path.abspath(args.base), args.rounds, [int(r) for r in args.rates.split(",")],
                 args.seconds, not args.no_checks)
    elif args.lane:
        trio.run(compare_lane, args.rounds, args.bulk_kib, args.bulk_rate, args.vote_rate, args.seconds)
    elif args.yamux:
        trio.run(compare_yamux, args.rounds, args.mib, args.write_kib)
    elif args.coalesce_bulk:
        trio.run(compare_bulk_coalesce, args.rounds, [int(r) for r in args.rates.split(",")], args.seconds)
    elif args.coalesce:
        trio.run(compare_coalesce, args.rounds, args.heights, [int(b) for b in args.bursts.split(",")],
                 [int(r) for r in args.rates.split(",")], args.seconds)
    elif args.dont_want:
        trio.run(compare_dont_want, args.rounds, [int(r) for r in args.rates.split(",")], args.seconds)
    else:
        trio.run(main, args.quick, args.only)
