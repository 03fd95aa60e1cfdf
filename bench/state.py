"""Benchmark of the authenticated state and the LevelDB write path; prints figures and ratios, asserts nothing.

1. Root-update cost per touched key: a 1,000-key update (existing keys, new values) on states of 10k, 100k
   and 1M keys, each built in its own LevelDB in 100k-key batches, then pruned to the latest version and
   compacted. Rounds alternate between the sizes so that load from other processes on this shared machine
   falls on all of them alike. Reported: compute_update alone (wall and CPU time), and the full commit
   (compute + stage + batch write), medians; the goal is 1M/10k <= 2x.
2. Our write path (LevelDBStore batches, raw keys and through a key-space view) against raw plyvel
   WriteBatch puts of the same keys and values, measured in the same run.

Run: python -m bench.state [--quick]
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
from core.store import KeySpace, LevelDBStore, space

UPDATE_KEYS = 1_000
BUILD_CHUNK = 100_000


def account_key(i: int) -> bytes:
    return b"acct/" + i.to_bytes(8, "big")


class CountingStore:
    """Counts node reads of one update (run outside the timed rounds)."""

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


def one_update(rng: random.Random, size: int) -> dict[bytes, bytes | None]:
    return {account_key(rng.randrange(size)): rng.randbytes(32) for _ in range(UPDATE_KEYS)}


class _State:
    """One state of a given size in its own database, with its rounds' timings."""

    def __init__(self, workdir: str, size: int) -> None:
        self.size = size
        self.db = LevelDBStore(os.path.join(workdir, f"state-{size}"))
        self.smap = AuthenticatedMap(self.db)
        self.version = 0
        self.rng = random.Random(size)
        self.compute: list[float] = []
        self.compute_cpu: list[float] = []
        self.commit: list[float] = []
        started = time.perf_counter()
        for first in range(0, size, BUILD_CHUNK):
            last = min(size, first + BUILD_CHUNK)
            self.smap.commit(self.version, {account_key(i): i.to_bytes(8, "big") * 4 for i in range(first, last)})
            self.version += 1
        self.smap.prune(self.version - 1)
        self.db.compact()
        self.build_s = time.perf_counter() - started
        self.smap.commit(self.version, one_update(self.rng, size))  # warm-up, untimed
        self.version += 1
        counting = CountingStore(self.db)
        probe = AuthenticatedMap(counting).compute_update(self.version - 1, self.version, one_update(self.rng, size))
        self.node_writes = len(probe.node_writes) / UPDATE_KEYS
        self.node_reads = counting.reads / UPDATE_KEYS

    def round(self) -> None:
        changes = one_update(self.rng, self.size)
        t0, c0 = time.perf_counter(), time.process_time()
        update = self.smap.compute_update(self.version - 1, self.version, changes)
        t1, c1 = time.perf_counter(), time.process_time()
        with self.db.write_batch() as batch:
            self.smap.stage(batch, update)
        t2 = time.perf_counter()
        self.version += 1
        self.compute.append((t1 - t0) / UPDATE_KEYS * 1e6)
        self.compute_cpu.append((c1 - c0) / UPDATE_KEYS * 1e6)
        self.commit.append((t2 - t0) / UPDATE_KEYS * 1e6)

    def proof_bytes(self) -> float:
        return statistics.mean(
            len(self.smap.prove(account_key(self.rng.randrange(self.size)), self.version - 1).to_bytes())
            for _ in range(200)
        )


def bench_state(workdir: str, sizes: list[int], rounds: int) -> dict[int, tuple[float, float, float]]:
    """Per-key (compute wall, compute CPU, commit wall) medians; rounds alternate between the sizes so that
    load from other processes falls on all of them alike."""
    print(f"state root update: {UPDATE_KEYS} existing keys get new 32-byte values; "
          f"median of {rounds} rounds, alternating between sizes")
    print(f"(load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    states = []
    for size in sizes:
        states.append(_State(workdir, size))
        print(f"  built {size:,} keys in {states[-1].build_s:.1f} s", flush=True)
    for _ in range(rounds):
        for state in states:
            state.round()
    print(f"{'keys':>10} {'compute us/key':>15} {'(CPU us/key)':>13} {'commit us/key':>14} "
          f"{'node writes/key':>16} {'node reads/key':>15} {'proof bytes':>12}")
    results = {}
    for state in states:
        row = (statistics.median(state.compute), statistics.median(state.compute_cpu),
               statistics.median(state.commit))
        results[state.size] = row
        print(f"{state.size:>10,} {row[0]:>15.1f} {row[1]:>13.1f} {row[2]:>14.1f} "
              f"{state.node_writes:>16.2f} {state.node_reads:>15.2f} {state.proof_bytes():>12.0f}")
        state.db.close()
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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    workdir = tempfile.mkdtemp(prefix="inferchain-bench-", dir=args.dir)
    started = time.perf_counter()
    try:
        results = bench_state(workdir, sizes, args.rounds)
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"ratio {sizes[-1]:,}/{sizes[0]:,}: compute {large[0] / small[0]:.2f}x "
              f"(CPU {large[1] / small[1]:.2f}x), commit {large[2] / small[2]:.2f}x (goal <= 2x)")
        bench_write_path(workdir, total=200_000, per_batch=10_000, rounds=5)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
