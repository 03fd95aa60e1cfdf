"""Mempool store bench (node/mempool_store.py): what keeping the mempool across restarts costs per transaction,
against the baseline of the mempool's own admission measured in the same run.

    python -m bench.mempool_store [--txs 8192] [--batch 64] [--rounds 5]

Lines (process time per transaction; medians of interleaved rounds, each on a fresh pool and a fresh LevelDB):
  baseline   `Mempool.add` alone, signatures marked checked (bench/mempool.py's table state)
  watched    the same adds with the store watching: the accept path's share (a dict entry per transaction)
  write      the store's writes of those adds, `--batch` per batch as the flush task gathers them (encoding, a
             LevelDB batch and its fsync; in the node this runs in a worker thread, off the event loop)
  commit     the block's removal (`update`) and the store's deletes, per transaction
  unsynced   the `write` line's batches written with sync=False, as `run` writes them between two fsyncs
             (one per `sync_interval_s`): their difference is what an fsync per batch costs
The fsync is mostly wall time the CPU does not see: `write` also prints wall time per transaction; its CPU
(kernel journal work) shows as the difference between `write` and `unsynced`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.mempool import CHAIN, RichState, make_tx
from core.tx import Transaction
from node.config import MempoolSection
from node.mempool import Mempool
from node.mempool_store import MempoolStore


def one_round(root: Path, txs: list[Transaction], batch: int) -> dict[str, float]:
    n = len(txs)
    plain = Mempool(CHAIN, RichState(), MempoolSection(max_txs=n))
    start = time.process_time()
    for tx in txs:
        plain.add(tx, signature_checked=True)
    baseline = (time.process_time() - start) / n

    mempool = Mempool(CHAIN, RichState(), MempoolSection(max_txs=n))
    store = MempoolStore(root)
    store.watch(mempool)
    write_cpu = write_wall = 0.0
    start = time.process_time()
    for tx in txs:
        mempool.add(tx, signature_checked=True)
    watched = (time.process_time() - start) / n
    store._ops.clear()  # rewritten below in flush-sized batches
    for i in range(0, n, batch):
        for tx in txs[i:i + batch]:
            store._added(tx.hash, tx, True, 0)  # what the listener noted for this batch
        cpu, wall = time.process_time(), time.perf_counter()
        store.flush()
        write_cpu += time.process_time() - cpu
        write_wall += time.perf_counter() - wall
    assert store.stored_pending == n
    start = time.process_time()
    mempool.update(1, txs)
    store.flush()  # one batch of deletes: a block's worth at once, as the flush task gathers them
    commit = (time.process_time() - start) / n
    assert store.stored_pending == 0 and len(mempool) == 0
    store.close()
    unsynced = MempoolStore(root / "unsynced")
    unsynced_cpu = unsynced_wall = 0.0
    for i in range(0, n, batch):
        for tx in txs[i:i + batch]:
            unsynced._added(tx.hash, tx, True, 0)
        ops, unsynced._ops = unsynced._ops, {}
        cpu, wall = time.process_time(), time.perf_counter()
        unsynced.write(ops, sync=False)
        unsynced_cpu += time.process_time() - cpu
        unsynced_wall += time.perf_counter() - wall
    assert unsynced.stored_pending == n
    unsynced.close()
    return {"baseline": baseline, "watched": watched, "write": write_cpu / n, "write_wall": write_wall / n,
            "commit": commit, "unsynced": unsynced_cpu / n, "unsynced_wall": unsynced_wall / n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--txs", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    txs = [make_tx(s, n, 1000 + s) for s in range(args.txs // 16) for n in range(16)]
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for key, value in one_round(Path(tmp) / f"r{r}", txs, args.batch).items():
                samples.setdefault(key, []).append(value)
    m = {key: statistics.median(values) for key, values in samples.items()}
    base = m["baseline"]
    print(f"mempool store bench: {len(txs):,} transfers, {args.batch} per store batch (per transaction; medians of "
          f"{args.rounds} rounds)")
    print(f"  baseline: Mempool.add alone            {base * 1e6:8.2f} us cpu")
    print(f"  Mempool.add, store watching            {m['watched'] * 1e6:8.2f} us cpu   ratio {m['watched'] / base:5.2f}"
          f"   accept path's share {(m['watched'] - base) * 1e6:+6.2f} us")
    print(f"  store write (worker thread)            {m['write'] * 1e6:8.2f} us cpu   ratio {m['write'] / base:5.2f}"
          f"   wall {m['write_wall'] * 1e6:8.2f} us (fsync per batch)")
    print(f"  commit: update + the store's deletes   {m['commit'] * 1e6:8.2f} us cpu   ratio {m['commit'] / base:5.2f}")
    print(f"  store write, unsynced (between fsyncs) {m['unsynced'] * 1e6:8.2f} us cpu   ratio "
          f"{m['unsynced'] / m['write']:5.2f} of write   wall {m['unsynced_wall'] * 1e6:8.2f} us")


if __name__ == "__main__":
    main()
