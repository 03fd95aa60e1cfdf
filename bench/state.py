"""Benchmark of the authenticated state and the LevelDB write path; prints figures and ratios, asserts nothing.

1. Cost of updating 1,000 keys on states of 10k, 100k and 1M keys, each built in its own LevelDB in
   100k-key batches, then pruned to the latest version and compacted. Every round draws 1,000 fresh random
   keys, 90% existing keys with new values and 10% new keys (inserts), on every size. Reported per key:
   `compute_update` alone, and the full commit (compute + stage + the LevelDB batch write), each as wall
   time and as CPU time of the process (time.process_time: the machine is shared, CPU time is the fairer
   figure); medians over the rounds, which alternate between the sizes so that load from other processes
   falls on all of them alike. The goal is commit at 1M <= 2x commit at 10k.
   The map's node cache is what it is in a node that has been running: it holds what the map committed
   (the build included). Also printed: the first update of a fresh map over the same database (cold cache:
   what a node pays for its first blocks after a restart), node reads from LevelDB per key, and the cache's
   size.
2. Our write path (LevelDBStore batches, raw keys and through a key-space view) against raw plyvel
   WriteBatch puts of the same keys and values, measured in the same run.

Run: python -m bench.state [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import plyvel

from core.state import AuthenticatedMap
from core.store import KeySpace, space
from node.leveldb import LevelDBStore

UPDATE_KEYS = 1_000
INSERT_SHARE = 0.1
BUILD_CHUNK = 100_000


def account_key(i: int) -> bytes:
    return b"acct/" + i.to_bytes(8, "big")


class CountingStore:
    """Counts reads (run outside the timed rounds)."""

    def __init__(self, inner: LevelDBStore) -> None:
        self.inner = inner
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.inner.get(key)

    def iterate(self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False):  # type: ignore[no-untyped-def]
        return self.inner.iterate(prefix, start=start, reverse=reverse)

    def write_batch(self, *, sync: bool = False):  # type: ignore[no-untyped-def]
        return self.inner.write_batch(sync=sync)

    def close(self) -> None:
        self.inner.close()


class _State:
    """One state of a given size in its own database, with its rounds' timings."""

    def __init__(self, workdir: str, size: int) -> None:
        self.size = size
        self.next_new = size  # keys size, size + 1, ... are inserted by the rounds
        self.db = LevelDBStore(os.path.join(workdir, f"state-{size}"))
        self.smap = AuthenticatedMap(self.db)
        self.version = 0
        self.rng = random.Random(size)
        self.compute: list[float] = []
        self.compute_cpu: list[float] = []
        self.commit: list[float] = []
        self.commit_cpu: list[float] = []
        self.commit_thread: list[float] = []
        started = time.perf_counter()
        for first in range(0, size, BUILD_CHUNK):
            last = min(size, first + BUILD_CHUNK)
            self.smap.commit(self.version, {account_key(i): i.to_bytes(8, "big") * 4 for i in range(first, last)})
            self.version += 1
        self.smap.prune(self.version - 1)
        self.db.compact()
        self.build_s = time.perf_counter() - started

    def warm_up(self) -> None:
        for _ in range(3):  # untimed
            self.smap.commit(self.version, self.changes())
            self.version += 1
        # A fresh map over the same database: an empty cache, as after a restart.
        cold = AuthenticatedMap(self.db)
        changes = self.changes()
        c0 = time.process_time()
        cold.compute_update(self.version - 1, self.version, changes)
        self.cold_cpu = (time.process_time() - c0) / UPDATE_KEYS * 1e6
        counting = CountingStore(self.db)
        probe = AuthenticatedMap(counting).compute_update(self.version - 1, self.version, changes)
        self.cold_reads = (counting.reads - 2) / UPDATE_KEYS  # less the stamp and root records
        self.node_writes = len(probe.node_writes) / UPDATE_KEYS

    def changes(self) -> dict[bytes, bytes | None]:
        """1,000 fresh random keys: existing ones get new values, and INSERT_SHARE of them are new keys."""
        rng = self.rng
        changes: dict[bytes, bytes | None] = {}
        while len(changes) < UPDATE_KEYS:
            if rng.random() < INSERT_SHARE:
                index = self.next_new
                self.next_new += 1
            else:
                index = rng.randrange(self.next_new)
            changes[account_key(index)] = rng.randbytes(32)
        return changes

    def round(self) -> None:
        changes = self.changes()
        t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
        update = self.smap.compute_update(self.version - 1, self.version, changes)
        t1, c1 = time.perf_counter(), time.process_time()
        with self.db.write_batch() as batch:
            self.smap.stage(batch, update)
        t2, c2, h2 = time.perf_counter(), time.process_time(), time.thread_time()
        self.version += 1
        self.compute.append((t1 - t0) / UPDATE_KEYS * 1e6)
        self.compute_cpu.append((c1 - c0) / UPDATE_KEYS * 1e6)
        self.commit.append((t2 - t0) / UPDATE_KEYS * 1e6)
        self.commit_cpu.append((c2 - c0) / UPDATE_KEYS * 1e6)
        self.commit_thread.append((h2 - h0) / UPDATE_KEYS * 1e6)

    def cache_reads(self) -> float:
        """LevelDB node reads per key of one more update with the cache as the rounds left it."""
        counting = CountingStore(self.db)
        smap = self.smap
        loader = smap._load_node  # the bench counts the map's own node reads
        smap._load_node = type(loader)(counting, smap._nodes)
        try:
            smap.compute_update(self.version - 1, self.version, self.changes())
        finally:
            smap._load_node = loader
        return counting.reads / UPDATE_KEYS

    def proof_bytes(self) -> float:
        return statistics.mean(
            len(self.smap.prove(account_key(self.rng.randrange(self.size)), self.version - 1).to_bytes())
            for _ in range(200)
        )


def _cache_mib(smap: AuthenticatedMap) -> float:
    """Memory held by the map's node cache: its dicts, keys, entry tuples and bytes (shared ones once)."""
    seen: set[int] = set()
    total = 0
    for level in smap._cache.levels:
        total += sys.getsizeof(level)
        for position, entry in level.items():
            for obj in (position, entry, *entry):
                if obj is not None and id(obj) not in seen:
                    seen.add(id(obj))
                    total += sys.getsizeof(obj)
    return total / 2**20


def wait_until_quiet(limit_s: float = 180.0) -> float:
    """Wait until this process's other threads (LevelDB's background compaction, which goes on for a while
    after building a large state) use under 2% of a core, so the rounds are not charged with the build's
    compaction. Returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        c0, h0 = time.process_time(), time.thread_time()
        time.sleep(1.0)
        if (time.process_time() - c0) - (time.thread_time() - h0) < 0.02:
            break
    return time.perf_counter() - started


def bench_state(workdir: str, sizes: list[int], rounds: int) -> dict[int, tuple[float, ...]]:
    """Per-key medians (compute wall, compute CPU, commit wall, commit CPU, commit main-thread CPU); rounds
    alternate between the sizes so that load from other processes falls on all of them alike."""
    print(f"state root update: {UPDATE_KEYS} fresh random keys per round ({100 - INSERT_SHARE * 100:.0f}% "
          f"existing keys with new 32-byte values, {INSERT_SHARE * 100:.0f}% inserts); median of {rounds} rounds, "
          f"alternating between sizes")
    print(f"(load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    states = []
    for size in sizes:
        states.append(_State(workdir, size))
        print(f"  built {size:,} keys in {states[-1].build_s:.1f} s", flush=True)
    print(f"  waited {wait_until_quiet():.0f} s for LevelDB's background compaction to finish", flush=True)
    for state in states:
        state.warm_up()
    c0, h0 = time.process_time(), time.thread_time()
    for _ in range(rounds):
        for state in states:
            state.round()
    background = (time.process_time() - c0) - (time.thread_time() - h0)
    print(f"{'keys':>10} {'compute us/key':>15} {'(CPU)':>7} {'commit us/key':>14} {'(CPU)':>7} {'(thread)':>8} "
          f"{'cold CPU':>9} {'nodes written':>14} {'reads warm':>11} {'reads cold':>11} {'cache nodes':>12} "
          f"{'MiB':>5} {'proof B':>8}")
    results = {}
    for state in states:
        row = (statistics.median(state.compute), statistics.median(state.compute_cpu),
               statistics.median(state.commit), statistics.median(state.commit_cpu),
               statistics.median(state.commit_thread))
        results[state.size] = row
        print(f"{state.size:>10,} {row[0]:>15.1f} {row[1]:>7.1f} {row[2]:>14.1f} {row[3]:>7.1f} {row[4]:>8.1f} "
              f"{state.cold_cpu:>9.1f} {state.node_writes:>14.2f} {state.cache_reads():>11.2f} "
              f"{state.cold_reads:>11.2f} {len(state.smap._cache):>12,} {_cache_mib(state.smap):>5.0f} "
              f"{state.proof_bytes():>8.0f}")
        state.db.close()
    print("  (per key. CPU: time.process_time, all threads of the process, LevelDB's compaction included;"
          " thread: the calling thread only.\n   cold CPU: compute_update of a fresh map over the same database, i.e."
          " an empty node cache. reads: LevelDB node reads per key with the cache as the rounds left it / empty)")
    print(f"  LevelDB's background thread (compaction; one thread for all databases of the process, so it lands in"
          f" whichever round runs) used {background:.2f} s of CPU during the {rounds * len(states)} rounds")
    print(f"(load average after: {os.getloadavg()[0]:.2f})")
    return results


def bench_write_path(workdir: str, total: int, per_batch: int, rounds: int) -> None:
    """Each variant writes the same batches into its own fresh database; batch by batch the variants take
    turns in a shuffled order, so that load from other processes falls on all of them alike."""
    rng = random.Random(7)
    prefix = bytes([KeySpace.STATE_NODES])
    keys = [rng.randbytes(41) for _ in range(total)]  # the size of a state node key
    values = [rng.randbytes(100) for _ in range(total)]
    batches = [list(zip(keys[i : i + per_batch], values[i : i + per_batch], strict=True))
               for i in range(0, total, per_batch)]
    full = [[(prefix + k, v) for k, v in batch] for batch in batches]

    def raw_plyvel(path: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        db = plyvel.DB(path, create_if_missing=True, write_buffer_size=32 << 20)

        def write(i: int) -> None:
            wb = db.write_batch()
            for k, v in full[i]:
                wb.put(k, v)
            wb.write()
        return write, db.close

    def ours_root(path: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        store = LevelDBStore(path)

        def write(i: int) -> None:
            with store.write_batch() as wb:
                for k, v in full[i]:
                    wb.put(k, v)
        return write, store.close

    def ours_view(path: str) -> tuple[Callable[[int], None], Callable[[], None]]:
        store = LevelDBStore(path)
        view = space(store, KeySpace.STATE_NODES)

        def write(i: int) -> None:
            with store.write_batch() as wb:
                put = view.bind(wb).put
                for k, v in batches[i]:
                    put(k, v)
        return write, store.close

    variants = {
        "raw plyvel WriteBatch (prefixed keys)": raw_plyvel,
        "LevelDBStore batch (prefixed keys)": ours_root,
        "LevelDBStore batch via key-space view": ours_view,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        opened = {}
        for n, (name, make) in enumerate(variants.items()):
            path = os.path.join(workdir, f"write-{r}-{n}")
            opened[name] = (path, *make(path))
        spent = dict.fromkeys(variants, 0.0)
        order = list(variants)
        for i in range(len(batches)):
            random.Random(r * 1000 + i).shuffle(order)
            for name in order:
                started = time.perf_counter()
                opened[name][1](i)
                spent[name] += time.perf_counter() - started
        for name, (path, _, close) in opened.items():
            close()
            shutil.rmtree(path)
            times[name].append(spent[name])
    print(f"\nwrite path: {total:,} puts of 42-byte keys / 100-byte values in batches of {per_batch:,}, "
          f"median of {rounds} rounds, variants interleaved batch by batch")
    raw = statistics.median(times["raw plyvel WriteBatch (prefixed keys)"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:<40} {median / total * 1e9:8.0f} ns/put   ratio to raw {median / raw:5.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k and 100k only (about 30 s)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-write-path", action="store_true", help="skip part 2")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    workdir = tempfile.mkdtemp(prefix="inferchain-bench-", dir=args.dir)
    started = time.perf_counter()
    try:
        results = bench_state(workdir, sizes, args.rounds)
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"ratio {sizes[-1]:,}/{sizes[0]:,}: commit {large[2] / small[2]:.2f}x wall, "
              f"{large[3] / small[3]:.2f}x CPU, {large[4] / small[4]:.2f}x thread CPU (goal <= 2x); "
              f"compute alone {large[0] / small[0]:.2f}x wall, {large[1] / small[1]:.2f}x CPU")
        if not args.no_write_path:
            bench_write_path(workdir, total=200_000, per_batch=10_000, rounds=5)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
