"""The node's garbage-collector setting (node/gctune.py) against the interpreter's defaults, on the in-process
benches: each bench runs in a fresh child process once per setting, alternately (`python`, the baseline,
then `tuned`, `--pairs` times), the setting applied as `inferchain node run` applies it (thresholds before
the imports, freeze after them).

    python -m bench.gc [--pairs 3] [--benches node,gossip_rx,vm_transfers]

Per run it prints the child's own headline lines, the child's CPU time (user + system, from the kernel), its
peak RSS, and the line the node logs at exit (collections by generation and their CPU time against the
process's); then, per bench, the median CPU of `tuned` over `python` (the ratio < 1 is a saving).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BENCH_ARGS = {
    "node": ["--txs", "3000"],
    "gossip_rx": ["--txs", "4000"],
    "vm_transfers": ["--txs", "2000", "--rounds", "5"],
}

CHILD = """
import sys
from node import gctune
setting = gctune.get_setting()
gctune.apply(setting)
import importlib
bench = importlib.import_module("bench." + sys.argv[1])
gctune.freeze(setting)
sys.argv = ["bench." + sys.argv[1], *sys.argv[2:]]
bench.main()
print(gctune.summary())
import resource
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
"""


def run(name: str, setting: str) -> tuple[float, str]:
    """One child run: its CPU seconds (with its own children's) and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "INFERCHAIN_GC": setting}
    out = subprocess.run([sys.executable, "-c", CHILD, name, *BENCH_ARGS[name]], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"bench.{name} under INFERCHAIN_GC={setting} failed:\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--benches", default=",".join(BENCH_ARGS))
    args = ap.parse_args()
    for name in args.benches.split(","):
        cpu: dict[str, list[float]] = {"python": [], "tuned": []}
        for i in range(args.pairs):
            for setting in ("python", "tuned"):
                seconds, text = run(name, setting)
                cpu[setting].append(seconds)
                print(f"bench.{name} pair {i + 1} INFERCHAIN_GC={setting}: CPU {seconds:.2f} s, load "
                      f"{os.getloadavg()[0]:.1f}")
                for line in text.splitlines():
                    print("    " + line)
        ratio = statistics.median(cpu["tuned"]) / statistics.median(cpu["python"])
        print(f"bench.{name}: median CPU python {statistics.median(cpu['python']):.2f} s, tuned "
              f"{statistics.median(cpu['tuned']):.2f} s, ratio tuned/python {ratio:.3f}\n")


if __name__ == "__main__":
    main()
