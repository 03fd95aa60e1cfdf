"""`inferchain devnet up|status|down` as a user runs them: a supervisor process, another terminal's
commands, Ctrl-C, persistence across restarts, --reset, and a validator count other than 4."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from node.client import Client, RpcError
from node.devnet import Devnet, pid_alive

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BASE_PORT = 28700
T = TypeVar("T")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_up(root: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(root), "--validators", "3",
                             "--base-port", str(BASE_PORT), "--block-time", "0.2", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except RpcError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def heights(root: Path) -> list[int]:
    out = []
    for i in range(3):
        with Client(f"http://127.0.0.1:{BASE_PORT + 2 * i + 1}", timeout=2) as c:
            out.append(c.status().height)
    return out


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate(timeout=10)
        raise AssertionError("devnet up did not stop within 40 s") from None
    return output


def node_pids(root: Path) -> list[int]:
    doc = json.loads((root / "devnet.pid").read_text())
    return [int(p) for p in doc["nodes"].values()]


def test_devnet_up_status_down_restart_and_reset(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    up = start_up(root)
    pids: list[int] = []
    try:
        wait_for("3 nodes past height 3", lambda: min(heights(root)) >= 3, 120)
        pids = node_pids(root)
        status = cli("devnet", "status", "--dir", str(root), "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["running"] is True and doc["validators"] == 3
        assert all(row["height"] >= 3 and row["peers"] >= 2 for row in doc["nodes"])
        again = cli("devnet", "up", "--dir", str(root), "--validators", "3", "--base-port", str(BASE_PORT))
        assert again.returncode == 1 and "already running" in again.stderr
        # Ctrl-C in the devnet's terminal stops every node cleanly.
        output = stop(up, signal.SIGINT)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "publicly known" in output.lower() or "PUBLISHED" in output
    assert f"http://127.0.0.1:{BASE_PORT + 1}" in output and "height" in output
    assert "stopped 3 node(s)" in output
    assert not any(pid_alive(p) for p in pids)
    assert not (root / "devnet.pid").exists()
    for i in range(3):
        assert "node stopped" in (root / f"node{i}" / "node.log").read_text()
    last = json.loads((root / "devnet.json").read_text())["validators"]
    assert last == 3

    # Restart: the same chain continues (state persisted), then `devnet down` from another terminal.
    reached = Devnet(root, validators=3, base_port=BASE_PORT)
    up = start_up(root)
    try:
        before = max(
            int(line.split("committed block ")[1].split()[0])
            for i in range(3) for line in (root / f"node{i}" / "node.log").read_text().splitlines()
            if "committed block " in line)
        wait_for("the chain to continue past its old height",
                 lambda: min(heights(root)) >= before + 2, 120)
        with Client(f"http://127.0.0.1:{BASE_PORT + 1}", timeout=5) as c:
            last_time = int(c.block().header.time)
        down = cli("devnet", "down", "--dir", str(root))
        assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
        up.wait(30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        reached.down()
    assert not reached.running_pids()

    # A different validator count needs --reset; --reset starts a new chain.
    other = cli("devnet", "up", "--dir", str(root), "--validators", "2", "--base-port", str(BASE_PORT))
    assert other.returncode == 1 and "--reset" in other.stderr
    up = start_up(root, "--reset")
    try:
        wait_for("a fresh chain", lambda: min(heights(root)) >= 1, 120)
        with Client(f"http://127.0.0.1:{BASE_PORT + 1}", timeout=5) as c:
            assert int(c.block(1).header.time) > last_time, "block 1 is from before the reset"
    finally:
        stop(up, signal.SIGTERM)
