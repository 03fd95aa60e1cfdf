"""The CPU cost of one hand-off to a worker thread: `trio.to_thread.run_sync` (which names the worker thread
after each job and back, two prctl calls) against `p2p.offload.run_sync` (trio's thread cache, no naming).

    python -m bench.offload [--calls 5000] [--rounds 3]

Each round runs `--calls` sequential hand-offs of a trivial function (so only the hand-off is measured), the
four ways alternately: `to_thread`, `to_thread` with a limiter (as the gossip hook passes one), `offload`
with the same limiter naming the thread per job as `to_thread` does, and `offload` without naming. Reported: process CPU (user + system of every thread: the event loop, the
worker, the wake-up) per call in µs, the median over the rounds, and its ratio to `to_thread`'s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from p2p import offload


def _noop() -> int:
    return 1


async def _calls(n: int, handoff: Callable[[], Awaitable[int]]) -> float:
    await handoff()  # warm: the worker thread exists
    start = time.process_time()
    for _ in range(n):
        await handoff()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
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


if __name__ == "__main__":
    main()
