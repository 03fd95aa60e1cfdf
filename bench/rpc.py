"""RPC bench: the work behind `models` on a large state (real LevelDB), against the old way of answering it.

    python -m bench.rpc [--entries 200000] [--models 50]

Baseline: what `models` did before the index, a walk of every state entry for the `M` prefix (the state's
tree orders keys by hash, so a prefix cannot be seeked). Ours: a page of 100 from `node.queries.ModelIndex`
once built (its one build is the same walk, done once, in a worker thread), and the per-block cost of
keeping it (noting a block's upload chunks).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from core.state import AuthenticatedMap
from core.types import Hash32
from node.leveldb import LevelDBStore
from node.queries import ModelIndex
from vm.state import model_key

_BATCH = 50_000


def build(state: AuthenticatedMap, entries: int, models: int) -> int:
    version = 0
    for start in range(0, entries, _BATCH):
        version += 1
        changes = {b"A" + i.to_bytes(20, "big"): b"\x01" * 40 for i in range(start, min(entries, start + _BATCH))}
        if start == 0:
            changes.update({model_key(Hash32(i.to_bytes(32, "big"))): b"\x02" * 300 for i in range(models)})
        state.commit(version, changes)
    return version


def walk(state: AuthenticatedMap, version: int) -> list[bytes]:
    return [k[1:] for k, _ in state.items(version) if k.startswith(b"M") and len(k) == 33]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LevelDBStore(Path(tmp) / "db") as db:
        state = AuthenticatedMap(db)
        start = time.perf_counter()
        version = build(state, args.entries, args.models)
        built_s = time.perf_counter() - start
        start = time.perf_counter()
        found = walk(state, version)
        walk_s = time.perf_counter() - start
        assert len(found) == args.models
        index = ModelIndex()
        start = time.perf_counter()
        index.page(state, version, None, 100)
        first_s = time.perf_counter() - start
        rounds = 200
        start = time.perf_counter()
        for _ in range(rounds):
            page = index.page(state, version, None, 100)
        page_s = (time.perf_counter() - start) / rounds
        assert len(page) == min(100, args.models)
    print(f"rpc bench: `models` over {args.entries:,} state entries holding {args.models} models "
          f"(state built in {built_s:.1f} s)")
    print(f"  baseline: walk the state (old `models`) {walk_s * 1e3:10.1f} ms per call, on the event loop")
    print(f"  index: first call (one walk, in a thread) {first_s * 1e3:9.1f} ms once")
    print(f"  index: a page of 100 ids               {page_s * 1e6:10.1f} us per call   "
          f"ratio walk / page {walk_s / page_s:10.0f}")


if __name__ == "__main__":
    main()
