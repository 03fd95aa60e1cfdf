"""Benchmark of the authenticated state and the LevelDB write path; prints figures and ratios, asserts nothing.

1. Root-update cost per touched key: a 1,000-key update (existing keys, new values) on states of 10k, 100k
   and 1M keys, built incrementally in one LevelDB. After each build step the old versions are pruned and
   the database compacted, as a node in steady state would be. Reported: compute_update alone, and the full
   commit (compute + stage + batch write), median over several rounds; the goal is 1M/10k <= 2x.
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


def bench_state(workdir: str, sizes: list[int], rounds: int) -> dict[int, tuple[float, float]]:
    db = LevelDBStore(os.path.join(workdir, "state"))
    smap = AuthenticatedMap(db)
    rng = random.Random(2024)
    version = 0
    size = 0
    results: dict[int, tuple[float, float]] = {}
    print(f"state root update: {UPDATE_KEYS} existing keys get new 32-byte values, median of {rounds} rounds")
    print(f"(load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    print(f"{'keys':>10} {'build s':>8} {'compute us/key':>15} {'commit us/key':>14} "
          f"{'node writes/key':>16} {'node reads/key':>15} {'proof bytes':>12}")
    for target in sizes:
        started = time.perf_counter()
        while size < target:
            step = min(BUILD_CHUNK, target - size)
            changes = {account_key(i): i.to_bytes(8, "big") * 4 for i in range(size, size + step)}
            smap.commit(version, changes)
            version += 1
            size += step
        smap.prune(version - 1)
        db.compact()
        build_s = time.perf_counter() - started

        smap.commit(version, one_update(rng, size))  # warm-up, untimed
        version += 1
        counting = CountingStore(db)
        probe = AuthenticatedMap(counting).compute_update(version - 1, version, one_update(rng, size))
        reads = counting.reads
        compute_times, commit_times = [], []
        for _ in range(rounds):
            changes = one_update(rng, size)
            t0 = time.perf_counter()
            update = smap.compute_update(version - 1, version, changes)
            t1 = time.perf_counter()
            with db.write_batch() as batch:
                smap.stage(batch, update)
            t2 = time.perf_counter()
            version += 1
            compute_times.append(t1 - t0)
            commit_times.append(t2 - t0)
        compute = statistics.median(compute_times) / UPDATE_KEYS * 1e6
        commit = statistics.median(commit_times) / UPDATE_KEYS * 1e6
        results[target] = (compute, commit)
        proof_bytes = statistics.mean(
            len(smap.prove(account_key(rng.randrange(size)), version - 1).to_bytes()) for _ in range(200)
        )
        print(f"{target:>10,} {build_s:>8.1f} {compute:>15.1f} {commit:>14.1f} "
              f"{len(probe.node_writes) / UPDATE_KEYS:>16.2f} {reads / UPDATE_KEYS:>15.2f} {proof_bytes:>12.0f}",
              flush=True)
    db.close()
    return results


def _time_writes(make: Callable[[str], Callable[[list[tuple[bytes, bytes]]], None]], path: str,
                 batches: list[list[tuple[bytes, bytes]]]) -> float:
    write = make(path)
    started = time.perf_counter()
    for batch in batches:
        write(batch)
    return time.perf_counter() - started


def bench_write_path(workdir: str, total: int, per_batch: int, rounds: int) -> None:
    rng = random.Random(7)
    prefix = bytes([KeySpace.STATE_NODES])
    keys = [rng.randbytes(41) for _ in range(total)]  # the size of a state node key
    values = [rng.randbytes(100) for _ in range(total)]
    batches = [list(zip(keys[i : i + per_batch], values[i : i + per_batch], strict=True))
               for i in range(0, total, per_batch)]
    full = [[(prefix + k, v) for k, v in batch] for batch in batches]
    opened: list[object] = []

    def raw_plyvel(path: str) -> Callable[[list[tuple[bytes, bytes]]], None]:
        db = plyvel.DB(path, create_if_missing=True, write_buffer_size=32 << 20)
        opened.append(db)

        def write(batch: list[tuple[bytes, bytes]]) -> None:
            wb = db.write_batch()
            for k, v in batch:
                wb.put(k, v)
            wb.write()
        return write

    def ours_root(path: str) -> Callable[[list[tuple[bytes, bytes]]], None]:
        store = LevelDBStore(path)
        opened.append(store)

        def write(batch: list[tuple[bytes, bytes]]) -> None:
            with store.write_batch() as wb:
                for k, v in batch:
                    wb.put(k, v)
        return write

    def ours_view(path: str) -> Callable[[list[tuple[bytes, bytes]]], None]:
        store = LevelDBStore(path)
        opened.append(store)
        view = space(store, KeySpace.STATE_NODES)

        def write(batch: list[tuple[bytes, bytes]]) -> None:
            with store.write_batch() as wb:
                put = view.bind(wb).put
                for k, v in batch:
                    put(k, v)
        return write

    variants = {
        "raw plyvel WriteBatch (prefixed keys)": (raw_plyvel, full),
        "LevelDBStore batch (prefixed keys)": (ours_root, full),
        "LevelDBStore batch via key-space view": (ours_view, batches),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        order = list(variants)
        random.Random(r).shuffle(order)
        for name in order:
            make, data = variants[name]
            path = os.path.join(workdir, f"write-{r}-{abs(hash(name))}")
            times[name].append(_time_writes(make, path, data))
            for db in opened:
                db.close()  # type: ignore[attr-defined]
            opened.clear()
            shutil.rmtree(path)
    print(f"\nwrite path: {total:,} puts of 42-byte keys / 100-byte values in batches of {per_batch:,}, "
          f"median of {rounds} rounds")
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
        print(f"ratio {sizes[-1]:,}/{sizes[0]:,}: compute {large[0] / small[0]:.2f}x, "
              f"commit {large[1] / small[1]:.2f}x (goal <= 2x)")
        bench_write_path(workdir, total=200_000, per_batch=10_000, rounds=max(3, args.rounds // 2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
