"""Devnet nodes and their sandbox workers forked from a preloaded process (node.devnet_fork): a forked worker
computes what a spawned one does, is set up as one (environment scrubbed, address-space limit), and does
not outlive its node. Each case runs in a fresh child process, as `devnet up` forks from a fresh supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.devnet import Devnet

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]

SAME_ANSWER = """
import json, os, sys
from node import devnet_fork
devnet_fork.preload()
from node.cli import runner
os.environ["OMP_NUM_THREADS"] = "3"  # a threading variable a worker must scrub, forked or spawned
runner.fork_sandbox_pool()
forked = runner.start_sandbox_pool()
from node.service import Node
from vm.sandbox.worker import WorkerPool
spawned = WorkerPool(size=1)
out = {}
for name, pool, home in (("forked", forked, sys.argv[1]), ("spawned", spawned, sys.argv[2])):
    node = Node(home, executor=pool)
    try:
        tensor = node.app.challenge_output(1)
        [info] = pool.describe()
        out[name] = {"challenge": tensor.encode().hex(), "env": info["env"], "rlimit_as": info["rlimit_as"],
                     "pid": info["pid"], "restarts": pool.restarts}
    finally:
        node.close()
print(json.dumps(out))
"""

WORKER_PID = """
import os, sys, time
from node import devnet_fork
devnet_fork.preload()
from node.cli import runner
runner.fork_sandbox_pool()
pool = runner.start_sandbox_pool()
print(pool.describe()[0]["pid"], flush=True)
time.sleep(120)
"""


def child(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def gone(pid: int) -> bool:
    """Exited (a zombie counts: nobody may reap an orphan in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_a_forked_worker_answers_the_poi_challenge_as_a_spawned_one(tmp_path: Path) -> None:
    homes = []
    for name in ("a", "b"):  # the same seed: the same chain, in two homes (each node locks its own store)
        net = Devnet(tmp_path / name, validators=1, base_port=0)
        net.prepare()
        homes.append(str(net.home(0)))
    proc = child(SAME_ANSWER, *homes)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    forked, spawned = out["forked"], out["spawned"]
    assert forked["challenge"] == spawned["challenge"]
    assert forked["env"] == spawned["env"] == []
    assert forked["rlimit_as"] == spawned["rlimit_as"] > 0
    assert forked["pid"] != spawned["pid"] and forked["restarts"] == 0


def test_a_forked_worker_does_not_outlive_its_node() -> None:
    """The worker must not hold the pool's end of its socket (fork copies it): else, its node killed, it
    would wait for batches forever."""
    proc = child(WORKER_PID)
    worker = 0
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else ""
        worker = int(line)
        assert not gone(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(worker), "the forked worker outlived its node"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if worker and not gone(worker):
            os.kill(worker, signal.SIGKILL)
