"""The node process's garbage-collector settings, and the time its collections take.

A loaded node allocates millions of short-lived objects (transactions, results, gossip frames, trio tasks)
over a large long-lived heap (imported modules, genesis, state caches). With CPython's defaults (700/10/10)
every 700 net allocations of container objects start a young collection, and every 100th of those scans the
whole heap; most of what those scans visit is the heap that start-up built and that never dies. So the node:

- raises the thresholds (`THRESHOLDS`): fewer young collections, each over the same short-lived objects;
- freezes what start-up built (`freeze`, once the node is constructed: imports, genesis, stores; and once
  it runs: RPC, p2p, consensus): the collector never scans those objects again. A devnet supervisor
  freezes before it forks its nodes too, so a child's collections do not write to (and un-share) the pages
  it shares copy-on-write with the parent.

Reference counting still frees everything without a cycle at once (the per-transaction path makes no
cycles); the thresholds only decide how often the cycle finder runs, so what they cost is the garbage in
cycles that waits longer (docs/performance-cpu.md, "Garbage collection"). `INFERCHAIN_GC` picks the setting
(`ENV`): unset or `tuned` for the above, `python` for the interpreter's defaults with nothing frozen, or
three integers `T0,T1,T2` for those thresholds with the freeze. `GcTimer` times every collection by
generation for the node's metrics.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

from core.errors import ConfigError

__all__ = ["ENV", "FULL_ENV", "FULL_EVERY_BLOCKS", "FULL_EVERY_TXS", "START_THRESHOLDS", "THRESHOLDS", "CommitFreezer", "GcSetting", "GcStats", "GcTimer",
           "apply", "commit_freezer", "freeze", "get_setting", "summary", "timer"]

ENV = "INFERCHAIN_GC"
# Young collections every 250,000 net container allocations; a middle one every 20 of those, a full one every
# 10 middle ones. With the heap frozen after each commit (`CommitFreezer`), which also zeroes the young count,
# a young collection runs only when a node allocates that much between two commits: under the inference load
# (~60,000 a second) 50,000 started one every second or so, each walking every pending transaction that had
# arrived since the last (docs/performance-cpu.md, "Garbage collection under the inference load (gcinf)").
THRESHOLDS = (250_000, 20, 10)
# What `start` sets: the thresholds before commits froze (50,000 were one block's transfers and their results).
START_THRESHOLDS = (50_000, 20, 10)


# With the heap frozen after each commit (`CommitFreezer`): a full collection of everything, the frozen heap
# included, once this many transactions or blocks have been committed since the last one (the bound on how long
# garbage in cycles that a freeze caught stays in memory). Under the inference load one took 350-370 ms of CPU
# (~650,000 objects walked) and freed ~2,000 objects per ~35,000 committed transactions: every 500,000 it costs
# ~0.7 us per transaction and holds ~30,000 dead objects at most.
FULL_EVERY_TXS = 500_000
FULL_EVERY_BLOCKS = 1_000


@dataclass(frozen=True, slots=True)
class GcSetting:
    """What `apply` does: thresholds to set (None: leave the interpreter's), whether to freeze after start-up,
    and whether to freeze again after each commit (`CommitFreezer`)."""

    name: str
    thresholds: tuple[int, int, int] | None
    freeze: bool
    freeze_commits: bool = False


TUNED = GcSetting("tuned", THRESHOLDS, True, True)
START = GcSetting("start", START_THRESHOLDS, True, False)  # frozen after start-up only (the setting before commits froze)
PYTHON = GcSetting("python", None, False)


def get_setting(environ: dict[str, str] | None = None) -> GcSetting:
    """The setting `INFERCHAIN_GC` names; a value that names none is a ConfigError."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip().lower()
    if value in ("", "tuned"):
        return TUNED
    if value == "python":
        return PYTHON
    if value == "start":
        return START
    parts = value.split(",")
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or numbers[0] < 1 or min(numbers) < 0:
        raise ConfigError(f"{ENV}={value!r}: expected 'tuned', 'start', 'python' or three thresholds 'T0,T1,T2' "
                          "(T0 >= 1)")
    return GcSetting(value, (numbers[0], numbers[1], numbers[2]), True, True)


def apply(setting: GcSetting) -> None:
    """Set the thresholds now (call early: start-up's own allocations then pay fewer collections) and start
    timing collections."""
    if setting.thresholds is not None:
        gc.set_threshold(*setting.thresholds)
    timer.install()
    from node.gccensus import from_environment

    census = from_environment()
    if census is not None:
        census.install()


def freeze(setting: GcSetting) -> int:
    """Move every object the collector tracks now into the permanent generation, which it never scans
    (after start-up: what is alive now lives as long as the process). No collection first: at start-up it
    took 70-80 ms of CPU per node to free ~300 objects (docs/performance-cpu.md, "Garbage collection"). Returns the frozen count."""
    if setting.freeze:
        gc.freeze()
    return gc.get_freeze_count()


class CommitFreezer:
    """Freezes the heap after each committed block, and collects all of it now and then.

    What a loaded node holds between two commits is mostly its mempool and the blocks it keeps decoded: tens of
    thousands of transactions, ~20 tracked objects each, alive for seconds. Every young collection walked the
    ones born since the last, and every middle one walked all of them again (0.2-0.4 s each under the
    inference load). `gc.freeze()` after a commit moves everything alive into the permanent generation in
    O(1) (the lists are spliced, nothing is walked) and resets the young count, so a collection between two
    commits walks only what was made since the last one. Frozen objects are still freed by reference counting
    when they die; what a freeze keeps is garbage in cycles (a few thousand objects a minute under load, from
    the I/O libraries: none per transaction). So every `full_every_txs` committed transactions or
    `full_every_blocks` blocks it unfreezes everything and runs one full collection, which frees those
    cycles, before it freezes again: the bound on the memory they hold.
    """

    def __init__(self, full_every_txs: int = FULL_EVERY_TXS, full_every_blocks: int = FULL_EVERY_BLOCKS) -> None:
        self.full_every_txs = full_every_txs
        self.full_every_blocks = full_every_blocks
        self._txs = 0
        self._blocks = 0
        self.full_collections = 0

    def after_commit(self, txs: int) -> None:
        """A block of `txs` transactions was committed and its readers told: freeze what is alive now."""
        self._txs += txs
        self._blocks += 1
        if self._txs >= self.full_every_txs or self._blocks >= self.full_every_blocks:
            self._txs = self._blocks = 0
            self.full_collections += 1
            gc.unfreeze()
            gc.collect()
        gc.freeze()


FULL_ENV = "INFERCHAIN_GC_FULL_TXS"


def commit_freezer(setting: GcSetting, environ: dict[str, str] | None = None) -> CommitFreezer | None:
    """The freezer a node process runs after each commit under `setting` (None: it freezes at start-up at most).
    `INFERCHAIN_GC_FULL_TXS` (a positive integer) sets its full collection's period in committed transactions
    instead of FULL_EVERY_TXS; any other value is a ConfigError."""
    if not setting.freeze_commits:
        return None
    value = (os.environ if environ is None else environ).get(FULL_ENV, "").strip()
    if not value:
        return CommitFreezer()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{FULL_ENV}={value!r}: expected a positive number of transactions")
    return CommitFreezer(full_every_txs=int(value))


@dataclass(frozen=True, slots=True)
class GcStats:
    """Collections so far in this process, by generation (0, 1, 2), and the seconds they took."""

    collections: tuple[int, int, int]
    seconds: tuple[float, float, float]
    max_seconds: tuple[float, float, float]
    collected: tuple[int, int, int]


class GcTimer:
    """Times each collection through `gc.callbacks` (one call at its start and one at its end), in the CPU
    time of the thread that collects (wall time on a loaded machine would count time the process waited)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._count = [0, 0, 0]
        self._seconds = [0.0, 0.0, 0.0]
        self._max = [0.0, 0.0, 0.0]
        self._collected = [0, 0, 0]

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        took = time.thread_time() - self._started
        gen = info["generation"]
        self._count[gen] += 1
        self._seconds[gen] += took
        self._collected[gen] += info["collected"]
        if took > self._max[gen]:
            self._max[gen] = took

    def stats(self) -> GcStats:
        c, s, m, k = self._count, self._seconds, self._max, self._collected
        return GcStats((c[0], c[1], c[2]), (s[0], s[1], s[2]), (m[0], m[1], m[2]), (k[0], k[1], k[2]))


timer = GcTimer()


def summary() -> str:
    """One log line: this process's collections and their time by generation, against its CPU time."""
    st = timer.stats()
    gc_s = sum(st.seconds)
    cpu_s = time.process_time()
    share = 100 * gc_s / cpu_s if cpu_s > 0 else 0.0
    gens = ", ".join(f"gen{g} {st.collections[g]} in {st.seconds[g] * 1e3:.0f} ms (longest "
                     f"{st.max_seconds[g] * 1e3:.1f} ms, {st.collected[g]} freed)" for g in range(3))
    return (f"gc: {gc_s:.2f} s of {cpu_s:.1f} s CPU ({share:.1f} %); {gens}; thresholds {gc.get_threshold()}, "
            f"{gc.get_freeze_count()} frozen")
