"""Idle-devnet bench: what a real N-validator devnet costs in CPU when nobody sends anything (issue 11's fixed
terms: per second and per height), on real node processes started and stopped by tests/realnet.

    python -m bench.idle [--validators 4] [--duration 15] [--windows 2] [--block-time-ms 1000] [--profile DIR]

After the first block on every node and a short warm-up, it measures `--windows` windows of `--duration`
seconds each: every node's CPU (the node process with its sandbox workers, user + system, from /proc) and the
heights node 0 committed; nothing polls the nodes during a window (one status call at each end). It prints
per node: CPU per second (core-ms/s), CPU per height (core-ms), and heights per second; and the same CPU
per height as a number of Ed25519 verifications, measured on one core in the same run (the baseline: the
per-transaction floor of every validator). `--profile DIR` runs `py-spy record --gil --idle` on node 1
during the last window (raw collapsed stacks in DIR/node1.txt). It also prints the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._util import rate
from bench.devnet import TICK, group_pids, node_cpu_seconds
from core.keys import PrivateKey, verify
from tests.realnet import RealNet

WARMUP_S = 3.0


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on `pid` (the GIL holder's samples only, idle samples kept so waits show), or None if absent."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: no profile")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--gil", "--nonblocking", "--rate", "200",
                             "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_split(leaders: list[int]) -> tuple[float, float, float]:
    """All nodes' CPU seconds split three ways: node processes' user time, their system time (syscalls:
    sockets, fsync, epoll), and their sandbox worker processes (user + system)."""
    user = system = workers = 0.0
    for leader in leaders:
        for pid in group_pids(leader):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            u, s = int(fields[11]) / TICK, int(fields[12]) / TICK
            if pid == leader:
                user, system = user + u, system + s
            else:
                workers += u + s
    return user, system, workers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured window")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--block-time-ms", type=int, default=None,
                    help="timeout_commit and next_block_delay (default: genesis and the devnet's 200 ms)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy node 1 during the last window into DIR")
    args = ap.parse_args(argv)

    key = PrivateKey.derive("bench", "verify", 0)
    message = b"m" * 200
    signature = key.sign(message)
    public = bytes(key.public_key)
    verify_us = 1e6 / rate(lambda: verify(public, message, signature), min_seconds=1.0)
    print(f"Ed25519 verify (one core): {verify_us:.1f} us; load average {load_average()}")

    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp, \
            RealNet(Path(tmp) / "net", validators=args.validators, block_time_ms=args.block_time_ms) as net:
        t0 = time.monotonic()
        net.start()
        net.wait_height(1, timeout=120)
        print(f"devnet of {args.validators} validators: first block on every node after "
              f"{time.monotonic() - t0:.1f} s")
        time.sleep(WARMUP_S)
        leaders = [net.pid(i) for i in net.indices]
        print(f"\n{'window':>6} {'heights/s':>9} {'core-ms/s per node':>40} {'core-ms/height per node':>40} "
              f"{'verifies/height':>15}  load")
        spy = None
        for window in range(args.windows):
            if args.profile is not None and window == args.windows - 1:
                args.profile.mkdir(parents=True, exist_ok=True)
                spy = profiler(leaders[1], args.duration, args.profile / "node1.txt")
            h0, c0, s0, w0 = net.height(0), node_cpu_seconds(leaders), cpu_split(leaders), time.monotonic()
            time.sleep(args.duration)
            h1, c1, s1, w1 = net.height(0), node_cpu_seconds(leaders), cpu_split(leaders), time.monotonic()
            elapsed, heights = w1 - w0, max(1, h1 - h0)
            per_s = [1000 * (b - a) / elapsed for a, b in zip(c0, c1, strict=True)]
            per_h = [1000 * (b - a) / heights for a, b in zip(c0, c1, strict=True)]
            mean_h = sum(per_h) / len(per_h)
            print(f"{window:>6} {heights / elapsed:>9.2f} {' '.join(f'{x:9.1f}' for x in per_s):>40} "
                  f"{' '.join(f'{x:9.1f}' for x in per_h):>40} {1000 * mean_h / verify_us:>15,.0f}  "
                  f"{load_average()}", flush=True)
            split = [b - a for a, b in zip(s0, s1, strict=True)]
            total = sum(split) or 1.0
            print(f"{'':>6} all nodes: user {100 * split[0] / total:.0f} %, system {100 * split[1] / total:.0f} %, "
                  f"sandbox workers {100 * split[2] / total:.0f} %", flush=True)
        if spy is not None:
            try:
                spy.wait(timeout=args.duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            if (args.profile / "node1.txt").exists():
                print(f"profile of node 1: {args.profile / 'node1.txt'}")
    print("every devnet process stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
