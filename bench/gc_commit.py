"""The collector's cost over a node-like heap of blocks, by `INFERCHAIN_GC` setting (node/gctune.py).

    python -m bench.gc_commit [--pairs 2] [--heights 60] [--txs 2700] [--settings start tuned]

A loaded node's heap between two commits is mostly transactions: its mempool (the next few blocks' worth)
and the decoded blocks the block store keeps. This bench builds that heap from real objects: each height
decodes a block of `--txs` signed transactions with their results from its bytes (the arrivals: decoding is
what makes a gossiped transaction's objects), holds the last MEMPOOL_BLOCKS of them (the mempool), hands the
oldest to a real `EventHub.block_committed` (own-client entries for all of them, as on a node whose clients
sent them) and keeps it in a real `BlockStore`-sized cache of CACHE_BLOCKS blocks; then the setting's
commit hook runs (`CommitFreezer.after_commit` under `tuned`, nothing under `start`). Each setting runs in a
fresh child process (the settings are process-wide), alternately, `--pairs` times.

Per run: the child's CPU per transaction over the heights (process time), the collector's part of it
(`GcTimer`: the collecting thread's CPU), collections by generation, `block_committed`'s CPU per transaction,
and the objects a full collection would walk at the end. The baseline is `start` (the setting before commits
froze) measured in the same invocation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

MEMPOOL_BLOCKS = 4  # blocks' worth of transactions pending (a loaded node: 10-30k inferences)
CACHE_BLOCKS = 3  # decoded committed blocks kept (node/blockstore.py: 8,192 transactions)
DISTINCT = 6  # distinct block encodings cycled through (decoding makes fresh objects each time)
REPO = Path(__file__).resolve().parents[1]


def child(setting_name: str, heights: int, txs: int) -> dict[str, float]:
    """One run under `setting_name`, in this process; returns its figures."""
    from node import gctune

    setting = gctune.get_setting({gctune.ENV: setting_name})
    gctune.apply(setting)
    from core.block import Block
    from node.events import EventHub
    from p2p.testing.chain import build_chain

    chain = build_chain("gc-commit-bench", DISTINCT, txs_per_block=txs, tx_payload=120)
    raws = [b.encode() for b in chain.blocks]
    del chain
    gctune.freeze(setting)
    make_freezer = getattr(gctune, "commit_freezer", None)  # absent from a tree before the commit freezer
    freezer = make_freezer(setting) if make_freezer is not None else None
    hub = EventHub()
    hooks = getattr(hub, "commit_hooks", None)
    if freezer is not None and hooks is not None:
        hooks.append(freezer.after_commit)
    pending: deque[Block] = deque()
    cache: deque[Block] = deque()
    before = gctune.timer.stats()
    hub_s = 0.0
    cpu0 = time.process_time()
    for h in range(heights):
        block = Block.decode(raws[h % DISTINCT])
        for tx in block.txs:
            hub.own_accepted(tx.hash)
        pending.append(block)
        if len(pending) <= MEMPOOL_BLOCKS:
            continue
        committed = pending.popleft()
        t0 = time.process_time()
        hub.block_committed(committed)
        hub_s += time.process_time() - t0
        cache.append(committed)
        if len(cache) > CACHE_BLOCKS:
            cache.popleft()
    cpu_s = time.process_time() - cpu0
    after = gctune.timer.stats()
    n = txs * heights
    committed_txs = txs * (heights - MEMPOOL_BLOCKS)
    return {
        "cpu_us_per_tx": 1e6 * cpu_s / n,
        "gc_us_per_tx": 1e6 * (sum(after.seconds) - sum(before.seconds)) / n,
        "gen0": after.collections[0] - before.collections[0],
        "gen1": after.collections[1] - before.collections[1],
        "gen2": after.collections[2] - before.collections[2],
        "hub_us_per_tx": 1e6 * hub_s / committed_txs if committed_txs else 0.0,
        "tracked_k": len(gc.get_objects()) / 1000,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--heights", type=int, default=60)
    ap.add_argument("--txs", type=int, default=2700, help="transactions per block")
    ap.add_argument("--settings", nargs="+", default=["start", "tuned"], help="INFERCHAIN_GC values, run alternately")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.heights, args.txs)))
        return 0
    settings: list[str] = args.settings
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.heights} heights of {args.txs:,} transactions; "
          f"pending {MEMPOOL_BLOCKS} blocks, cache {CACHE_BLOCKS}")
    print(f"{'setting':>16} {'cpu us/tx':>9} {'gc us/tx':>8} {'gen0/1/2':>10} {'hub us/tx':>9} {'tracked':>8}")
    for _ in range(args.pairs):
        for setting in settings:
            out = subprocess.run([sys.executable, "-m", "bench.gc_commit", "--child", setting, "--heights",
                                  str(args.heights), "--txs", str(args.txs)], cwd=os.getcwd(), capture_output=True,
                                 text=True, check=True, timeout=900)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{setting:>16} {r['cpu_us_per_tx']:>9.1f} {r['gc_us_per_tx']:>8.2f} "
                  f"{r['gen0']:>4.0f}/{r['gen1']:.0f}/{r['gen2']:.0f} {r['hub_us_per_tx']:>9.2f} "
                  f"{r['tracked_k']:>7,.0f}k", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
