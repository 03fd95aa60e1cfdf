"""The CPU cost of one hand-off to a worker thread: `trio.to_thread.run_sync` (which names the worker thread
after each job and back, two prctl calls) against `p2p.offload.run_sync` (trio's thread cache, no naming).

    python -m bench.offload [--calls 5000] [--rounds 3] [--batches 200]

Each round runs `--calls` sequential hand-offs of a trivial function (so only the hand-off is measured), the
four ways alternately: `to_thread`, `to_thread` with a limiter (as the gossip hook passes one), `offload`
with the same limiter naming the thread per job as `to_thread` does, and `offload` without naming. Reported: process CPU (user + system of every thread: the event loop, the
worker, the wake-up) per call in µs, the median over the rounds, and its ratio to `to_thread`'s.

Then what the trip buys: `--batches` batches of N Ed25519 checks (`core.keys.verify`, 200-byte messages, N in
`SIGNATURE_BATCHES`), verified inline on the event loop or in one `offload` trip per batch, alternately; process
CPU per signature, median over the rounds, and the trip's share per signature (thread minus inline). Inline the
loop is stalled for the whole batch (the wall time printed); in a thread it is not.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from core.keys import PrivateKey, verify
from p2p import offload

SIGNATURE_BATCHES = (1, 4, 16, 64, 256)


def _noop() -> int:
    return 1


async def _calls(n: int, handoff: Callable[[], Awaitable[int]]) -> float:
    await handoff()  # warm: the worker thread exists
    start = time.process_time()
    for _ in range(n):
        await handoff()
    return (time.process_time() - start) / n * 1e6


async def _verify_batches(batches: int, signed: list[tuple[bytes, bytes, bytes]], in_thread: bool,
                          limiter: trio.CapacityLimiter) -> tuple[float, float]:
    """(process CPU, wall) seconds per signature."""
    def check() -> bool:
        return all(verify(key, message, signature) for key, message, signature in signed)

    start, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        ok = await offload.run_sync(check, limiter=limiter) if in_thread else check()
        assert ok
    n = batches * len(signed)
    return (time.process_time() - start) / n, (time.perf_counter() - wall) / n


def _signed(n: int) -> list[tuple[bytes, bytes, bytes]]:
    out: list[tuple[bytes, bytes, bytes]] = []
    for i in range(n):
        key = PrivateKey.derive("bench", "offload", i)
        message = i.to_bytes(4, "big") * 50
        out.append((bytes(key.public_key), message, key.sign(message)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=200, help="verification batches per size and round")
    args = parser.parse_args()

    async def run() -> dict[str, list[float]]:
        limiter = trio.CapacityLimiter(1)
        ways: dict[str, Callable[[], Awaitable[int]]] = {
            "to_thread": lambda: trio.to_thread.run_sync(_noop),
            "to_thread, limiter": lambda: trio.to_thread.run_sync(_noop, limiter=limiter),
            "offload, limiter, named": lambda: offload.run_sync(_noop, limiter=limiter, thread_name="_noop from bench"),
            "offload, limiter": lambda: offload.run_sync(_noop, limiter=limiter),
        }
        out: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                out[name].append(await _calls(args.calls, way))
        return out

    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"hand-off CPU per call (process CPU, all threads), {args.calls} calls x {args.rounds} rounds, load {load}")
    results = trio.run(run)
    base = statistics.median(results["to_thread"])
    for name, values in results.items():
        med = statistics.median(values)
        each = " ".join(f"{v:6.1f}" for v in values)
        print(f"  {name:<26} median {med:6.1f} µs   rounds {each}   ratio {med / base:5.2f}")

    async def signatures() -> dict[tuple[int, bool], list[tuple[float, float]]]:
        limiter = trio.CapacityLimiter(1)
        out: dict[tuple[int, bool], list[tuple[float, float]]] = {}
        for size in SIGNATURE_BATCHES:
            signed = _signed(size)
            batches = max(2, args.batches * 16 // max(size, 16))
            await offload.run_sync(_noop, limiter=limiter)  # warm
            for _ in range(args.rounds):
                for in_thread in (False, True):
                    out.setdefault((size, in_thread), []).append(
                        await _verify_batches(batches, signed, in_thread, limiter))
        return out

    print("Ed25519 checks per batch, inline vs one offload trip per batch: process CPU per signature (µs), "
          "wall per batch (ms)")
    sig = trio.run(signatures)
    for size in SIGNATURE_BATCHES:
        inline = statistics.median(c for c, _ in sig[(size, False)]) * 1e6
        thread = statistics.median(c for c, _ in sig[(size, True)]) * 1e6
        stall = statistics.median(w for _, w in sig[(size, False)]) * 1e3 * size
        print(f"  {size:4d} per batch   inline {inline:6.1f}   thread {thread:6.1f}   trip per signature "
              f"{thread - inline:+6.1f}   ratio {thread / inline:5.2f}   inline stalls the loop {stall:6.2f} ms")


if __name__ == "__main__":
    main()
