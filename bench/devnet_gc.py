"""The devnet benches' garbage-collection line: each node's cyclic-collector time during a step, by generation,
against the node process's own CPU over the same span (docs/performance-cpu.md, "Garbage collection").

Read from each node's `/metrics` (`inferchain_gc_collections_total`, `inferchain_gc_seconds_total`, timed by
node/gctune.py in the collecting thread's CPU time) at the start of a step and after its drain, and from
`/proc` for the node process's CPU (its sandbox workers have their own interpreters and are not counted).
`inferchain_gc_tracked_objects`, read at the end of the send window (the mempool at its fullest), is how
many objects a full collection would walk then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

TICK = 100  # /proc clock ticks per second (os.sysconf("SC_CLK_TCK") on Linux)


@dataclass(frozen=True, slots=True)
class GcReading:
    """One node's collector counters and its process's CPU seconds at one moment (zeros if unreadable)."""

    collections: tuple[float, float, float]
    seconds: tuple[float, float, float]
    tracked: float  # objects the collector tracks outside the frozen heap (-1: not exported)
    frozen: float
    cpu_s: float


def _by_generation(text: str, name: str) -> tuple[float, float, float]:
    values = [0.0, 0.0, 0.0]
    prefix = name + '{generation="'
    for line in text.splitlines():
        if line.startswith(prefix):
            gen = int(line[len(prefix)])
            values[gen] = float(line.rsplit(" ", 1)[1])
    return values[0], values[1], values[2]


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def read_gc(url: str, pid: int) -> GcReading:
    """The collector's counters from the node at `url` (its RPC address) and the CPU of its process `pid`."""
    try:
        text = httpx.get(url.rstrip("/") + "/metrics", timeout=10).text
    except httpx.HTTPError:
        text = ""
    return GcReading(_by_generation(text, "inferchain_gc_collections_total"),
                     _by_generation(text, "inferchain_gc_seconds_total"),
                     _gauge(text, "inferchain_gc_tracked_objects"), _gauge(text, "inferchain_gc_frozen_objects"),
                     process_cpu_seconds(pid))


def gc_line(before: list[GcReading], after: list[GcReading], loaded: list[GcReading], committed: int) -> str:
    """Per node: the collector's share of the node process's CPU between `before` and `after`, its
    collections and milliseconds by generation, its µs per committed transaction, and the tracked and frozen
    objects at the `loaded` reading."""
    parts = []
    for i, (a, b, m) in enumerate(zip(before, after, loaded, strict=True)):
        gc_s = sum(b.seconds) - sum(a.seconds)
        cpu_s = b.cpu_s - a.cpu_s
        share = 100 * gc_s / cpu_s if cpu_s > 0 else float("nan")
        gens = "/".join(f"{b.collections[g] - a.collections[g]:.0f}:{1000 * (b.seconds[g] - a.seconds[g]):.0f}ms"
                        for g in range(3))
        per_tx = f"{1e6 * gc_s / committed:.1f}" if committed else "-"
        tracked = f"{m.tracked / 1000:,.0f}k" if m.tracked >= 0 else "?"
        parts.append(f"node{i} {share:.1f}% ({gens}; {per_tx} us/tx; tracked {tracked}, frozen "
                     f"{m.frozen / 1000:,.0f}k)")
    return "gc of node process CPU (gen0/1/2 count:time): " + ", ".join(parts)
