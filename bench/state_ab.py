"""The state tree's `compute_update` of this tree against another checkout's, in one process, alternating.

The other checkout's `core/state/tree.py` is loaded as a second module (its imports resolve to this checkout's
`core`, so only tree.py may differ); each map gets its own LevelDB with the same contents, and every round runs
both on the same changes, in alternating order, and checks that they write the same bytes (root, root record,
node and leaf writes, stale entries). Printed: process CPU per changed key, medians, and the ratio new/base.
Shapes: the inference devnet's blocks (2,500 of 2,700 accounts changed, each right below a shared node), and
`bench.state`'s (1,000 random keys of 10,000 and of 100,000).

Run: `python -m bench.state_ab --base /path/to/other/checkout [--rounds 12]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from types import ModuleType

from core.state import tree as new_tree
from node.leveldb import LevelDBStore

SHAPES = {
    "devnet: 2,500 of 2,700 accounts": (2_700, 2_500, True),
    "bench.state: 1,000 of 10,000": (10_000, 1_000, False),
    "bench.state: 1,000 of 100,000": (100_000, 1_000, False),
}


def _load_base(checkout: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tree_base", os.path.join(checkout, "core/state/tree.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tree_base"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other checkout (its core/state/tree.py is the base)")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    base_tree = _load_base(args.base)
    rng = random.Random(7)
    scratch = tempfile.mkdtemp()
    print(f"load average at start {os.getloadavg()[0]:.2f}; process CPU per changed key, median of {args.rounds}")
    try:
        for name, (n_keys, n_changes, first) in SHAPES.items():
            keys = [b"A" + rng.randbytes(20) for _ in range(n_keys)]
            contents = {k: rng.randbytes(80) for k in keys}
            rounds = [{k: rng.randbytes(80) for k in (keys[:n_changes] if first else rng.sample(keys, n_changes))}
                      for _ in range(args.rounds)]
            maps = {}
            for label, module in (("base", base_tree), ("new", new_tree)):
                m = module.AuthenticatedMap(LevelDBStore(os.path.join(scratch, f"{label}{n_keys}")))
                m.commit(1, contents)
                m.compute_update(1, 2, rounds[0])  # warm
                maps[label] = m
            times: dict[str, list[float]] = {"base": [], "new": []}
            for i, changes in enumerate(rounds):
                for label in ("new", "base") if i % 2 else ("base", "new"):
                    start = time.process_time()
                    maps[label].compute_update(1, 2, changes)
                    times[label].append(time.process_time() - start)
                a, b = maps["base"].compute_update(1, 2, changes), maps["new"].compute_update(1, 2, changes)
                if (a.root, a.root_record, a.node_writes, a.leaf_writes, a.stale) != (
                        b.root, b.root_record, b.node_writes, b.leaf_writes, b.stale):
                    raise SystemExit(f"{name}: the two trees write different bytes")
            base = statistics.median(times["base"]) / n_changes * 1e6
            new = statistics.median(times["new"]) / n_changes * 1e6
            print(f"  {name:34} base {base:6.2f} us  new {new:6.2f} us  {new / base:.3f}x")
    finally:
        shutil.rmtree(scratch)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
