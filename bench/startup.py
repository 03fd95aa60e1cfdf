"""Start-up bench: `inferchain devnet up` to the first final block, and local CLI commands, as a user runs
them (real processes, free ports), against `python -c pass` measured in the same run.

    python -m bench.startup [--runs 3] [--resumed 1] [--validators 4] [--cli-runs 5] [--baseline DIR]

Devnet: each run starts `python -m node.cli devnet up --base-port 0` in a fresh directory (genesis, homes,
keys made by `devnet up` itself) and polls every node's RPC; it prints the wall time from the process start
to the first node answering, to the first node and to every node with a new final block, and the CPU of the
process tree (supervisor, nodes, sandbox workers; read from /proc) at that moment. Then `--resumed` starts of
the last directory, one after another (homes and chain already there; the first block made after the restart
counts); with `--resumed` above 1, each is followed by a fresh start, so the two kinds are measured side by
side at the same load. CLI: the median wall and CPU (user + sys of the child)
of `--help`, `keys show`, `devnet status` (of a stopped devnet: no node to ask) and `python -c pass`.
With `--baseline DIR` (another checkout, e.g. the merge base) each measurement of this tree alternates with
the same one of DIR's code. Every tree's modules are compiled to bytecode first (`--no-compile`: not), so no
process measures compiling our source, which a user's install does once. The load average is printed with
each figure: wall-clock numbers on a shared machine move with it; the CPU seconds much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node.client import Client, RpcError

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.05
TIMEOUT_S = 120.0
TICKS = os.sysconf("SC_CLK_TCK")
PACKAGES = ("core", "vm", "consensus", "p2p", "node")


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def tree_cpu(root_pid: int) -> dict[str, float]:
    """User + system CPU seconds of `root_pid` and every live descendant (from /proc), summed by kind: the
    supervisor (`devnet up` itself), the nodes and their sandbox workers."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        # utime + stime, and cutime + cstime: what exited children (the genesis tool, if any) used
        cpu[pid] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS
    kinds = {"supervisor": cpu.get(root_pid, 0.0), "nodes": 0.0, "workers": 0.0}
    for node in children.get(root_pid, []):
        kinds["nodes"] += cpu.get(node, 0.0)
        todo = list(children.get(node, []))
        while todo:
            pid = todo.pop()
            kinds["workers"] += cpu.get(pid, 0.0)
            todo += children.get(pid, [])
    return kinds


def devnet_up_once(repo: Path, root: Path, validators: int) -> dict[str, float]:
    """Start `devnet up` of the code in `repo` in `root`, wait until every node has a new final block, stop
    it; the timings."""
    out = root.parent / f"{root.name}.out"
    t0 = time.monotonic()
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(root),
                                 "--validators", str(validators), "--base-port", "0"],
                                cwd=repo, stdout=sink, stderr=subprocess.STDOUT)
    marks: dict[str, float] = {}
    start_height: dict[str, int] = {}
    clients: list[Client] = []
    try:
        deadline = t0 + TIMEOUT_S
        while "all" not in marks:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"devnet up did not reach height 1 on every node:\n{out.read_text()[-2000:]}")
            if not clients and (root / "devnet.pid").exists():
                ports = json.loads((root / "devnet.json").read_text())["ports"]
                clients = [Client(f"http://127.0.0.1:{ports[str(i)][1]}", timeout=1) for i in range(validators)]
            heights = []
            for c in clients:
                with contextlib.suppress(RpcError):
                    heights.append(c.status().height)
            now = time.monotonic() - t0
            if heights and "rpc" not in marks:
                marks["rpc"] = now
                start_height["h"] = max(heights)  # a resumed chain: wait for a block it makes now
            if any(h > start_height.get("h", 0) for h in heights):
                marks.setdefault("first", now)
            if len(heights) == validators and min(heights) > start_height.get("h", 0):
                marks["all"] = now
                marks.update(tree_cpu(proc.pid))
            time.sleep(POLL_S)
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return marks


def compile_tree(repo: Path) -> None:
    """Write the bytecode caches of a tree's packages, as its first run on a user's machine does: with
    PYTHONDONTWRITEBYTECODE set (as in some shells and CI) and no cache, every process of every measurement
    would compile our ~180 modules from source again (~0.15 s of CPU per process that imports the node)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=repo, check=True,
                   capture_output=True, timeout=300)


def cli_once(repo: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child process run in `repo` (`python -m` imports that checkout's code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, cwd=repo, env=env, capture_output=True, check=False, timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="fresh devnets to start (per tree)")
    ap.add_argument("--resumed", type=int, default=1,
                    help="resumed starts of the last devnet (per tree); above 1, each alternates with a fresh one")
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--cli-runs", type=int, default=5, help="runs of each CLI command (interleaved)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a checkout of the code to compare with (e.g. `git archive BASE | tar -x -C DIR`): its "
                         "runs alternate with this tree's")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not compile the trees' modules first: with PYTHONDONTWRITEBYTECODE set and no "
                         "__pycache__, every process then compiles our source again")
    args = ap.parse_args(argv)
    trees = {"this tree": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    if not args.no_compile:
        for repo in trees.values():
            compile_tree(repo)
    print("bytecode: " + ("as the environment has it (PYTHONDONTWRITEBYTECODE="
                          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})" if args.no_compile else
                          "every tree compiled first (__pycache__), as a user's install has it after its first run"))

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {**os.environ, "INFERCHAIN_KEYRING": str(Path(tmp) / "keys")}
        cli = [sys.executable, "-m", "node.cli"]
        subprocess.run([*cli, "keys", "import", "alice", "--seed", "01" * 32], env=env, cwd=REPO, check=True,
                       capture_output=True)
        stopped = Path(tmp) / "stopped"
        subprocess.run([*cli, "devnet", "up", "--dir", str(stopped), "--base-port", "0", "--validators", "1",
                        "--detach"], env=env, cwd=REPO, check=True, capture_output=True)
        subprocess.run([*cli, "devnet", "down", "--dir", str(stopped)], env=env, cwd=REPO, check=True,
                       capture_output=True)
        commands = {"inferchain --help": [*cli, "--help"],
                    "inferchain keys show alice": [*cli, "keys", "show", "alice"],
                    "inferchain devnet status (stopped)": [*cli, "devnet", "status", "--dir", str(stopped)]}
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        print(f"CLI commands, {args.cli_runs} interleaved runs each, {load()}:")
        for _ in range(args.cli_runs):
            samples.setdefault(("python -c pass", ""), []).append(cli_once(REPO, [sys.executable, "-c", "pass"], env))
            for name, argv_ in commands.items():
                for tree, repo in trees.items():
                    samples.setdefault((name, tree), []).append(cli_once(repo, argv_, env))
        base = statistics.median(w for w, _ in samples[("python -c pass", "")])
        for (name, tree), runs in samples.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"  {name:<36}{tree:<10} wall {wall:6.3f} s (min {min(w for w, _ in runs):.3f})  cpu {cpu:6.3f} s"
                  f"   {wall / base:5.1f}x python -c pass")
        print(f"  (ends at {load()})")

        print(f"\n`devnet up` ({args.validators} validators), process start to ...:")
        last: dict[str, Path] = {}
        for run in range(args.runs):
            for tree, repo in trees.items():
                last[tree] = Path(tmp) / f"{tree.replace(' ', '-')}-{run}"
                print(f"  {tree:<10} fresh   {fmt(devnet_up_once(repo, last[tree], args.validators))}   {load()}")
        for n in range(args.resumed):
            for tree, repo in trees.items():
                print(f"  {tree:<10} resumed {fmt(devnet_up_once(repo, last[tree], args.validators))}   {load()}")
                if args.resumed > 1:
                    fresh = Path(tmp) / f"{tree.replace(' ', '-')}-paired-{n}"
                    print(f"  {tree:<10} fresh   {fmt(devnet_up_once(repo, fresh, args.validators))}   {load()}")


def fmt(marks: dict[str, float]) -> str:
    cpu = marks["supervisor"] + marks["nodes"] + marks["workers"]
    return (f"first RPC {marks['rpc']:5.2f} s  first new final block {marks['first']:5.2f} s  on every node "
            f"{marks['all']:5.2f} s  CPU {cpu:4.1f} s (supervisor {marks['supervisor']:.2f}, nodes "
            f"{marks['nodes']:.2f}, workers {marks['workers']:.2f})")


if __name__ == "__main__":
    main()
