"""`inferchain devnet up|status|down` as a user runs them: a supervisor process, another terminal's
commands, Ctrl-C, persistence across restarts, --reset, and a validator count other than 4.

`devnet up --base-port 0` takes free ports from the OS and records them in devnet.json, where these tests
read them (never a fixed port). A node counts as up when its RPC answers with its own peer id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.client import Client, RpcError
from node.devnet import Devnet, DevnetError, pid_alive
from tests.realnet import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_up(root: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """`devnet up` writing its banner and status lines to the file `out` (read while it runs, see `output`)."""
    with out.open("w") as sink:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(root),
                                 "--validators", "3", "--base-port", "0", "--block-time", "0.2", *extra],
                                cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, text=True)


def output(out: Path) -> str:
    return out.read_text(errors="replace") if out.exists() else ""


def heights(root: Path) -> list[int]:
    """Each node's height, read from the RPC ports devnet.json records now; an RpcError (so `wait_until`
    polls again) while the manifest is not written yet or a port answers as another node."""
    try:
        net = Devnet.open(root)
    except DevnetError as exc:
        raise RpcError(-1, str(exc)) from None
    out = []
    for spec in net.specs():
        with Client(spec.rpc_url, timeout=2) as c:
            status = c.status()
        if status.node_id != spec.peer_id:
            raise RpcError(-1, f"{spec.rpc_url} answers as {status.node_id}, not node{spec.index}")
        out.append(status.height)
    return out


def logs(root: Path) -> str:
    """The last lines of each node's log, for a failure message."""
    parts = []
    for log in sorted(root.glob("node*/node.log")):
        parts.append(f"--- {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts) or "(no node logs)"


def rpc_url(root: Path, index: int = 0) -> str:
    return Devnet.open(root).spec(index).rpc_url


def stop(proc: subprocess.Popen[str], out: Path, sig: signal.Signals = signal.SIGINT) -> str:
    """Signal `devnet up`, wait for it (bounded) and return everything it wrote."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("devnet up did not stop within 40 s") from None
    return output(out)


def node_pids(root: Path) -> list[int]:
    doc = json.loads((root / "devnet.pid").read_text())
    return [int(p) for p in doc["nodes"].values()]


def test_devnet_up_status_down_restart_and_reset(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    out = tmp_path / "up.out"
    up = start_up(root, out)
    pids: list[int] = []
    try:
        wait_until("3 nodes past height 3", lambda: min(heights(root)) >= 3, 120, detail=lambda: logs(root))
        # devnet up's own status loop polls the nodes on its own schedule: wait for the line it prints once
        # every node answers past block 0, before asserting on its output.
        wait_until("devnet up to report 3/3 nodes up at a height", lambda: "nodes up 3/3" in output(out)
                   and "height " in output(out), 60, detail=lambda: output(out))
        pids = node_pids(root)
        # In the foreground the nodes are forked from `devnet up` after it imported the node once
        # (node.devnet_fork): its children, named after their home.
        for pid in pids:
            assert Path(f"/proc/{pid}/comm").read_text().strip().startswith("inferchain-node")
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == up.pid
        status = cli("devnet", "status", "--dir", str(root), "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["running"] is True and doc["validators"] == 3
        assert all(row["height"] >= 3 and row["peers"] >= 2 for row in doc["nodes"])
        again = cli("devnet", "up", "--dir", str(root), "--validators", "3", "--base-port", "0")
        assert again.returncode == 1 and "already running" in again.stderr
        # Ctrl-C in the devnet's terminal stops every node cleanly.
        printed = stop(up, out, signal.SIGINT)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "publicly known" in printed.lower() or "PUBLISHED" in printed
    assert rpc_url(root) in printed and "nodes up 3/3" in printed
    assert "stopped 3 running node(s)" in printed and "already exited" not in printed
    assert not any(pid_alive(p) for p in pids)
    assert not (root / "devnet.pid").exists()
    for i in range(3):
        assert "node stopped" in (root / f"node{i}" / "node.log").read_text()
    last = json.loads((root / "devnet.json").read_text())["validators"]
    assert last == 3

    # Restart: the same chain continues (state persisted), then `devnet down` from another terminal.
    reached = Devnet.open(root)
    first_ports = reached.ports
    up = start_up(root, out)
    try:
        before = max(
            int(line.split("committed block ")[1].split()[0])
            for i in range(3) for line in (root / f"node{i}" / "node.log").read_text().splitlines()
            if "committed block " in line)
        wait_until("the chain to continue past its old height", lambda: min(heights(root)) >= before + 2, 120,
                   detail=lambda: logs(root))
        assert Devnet.open(root).ports == first_ports, "a resumed devnet moved to other ports"
        with Client(rpc_url(root), timeout=5) as c:
            last_time = int(c.block().header.time)
        down = cli("devnet", "down", "--dir", str(root))
        assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        reached.down()
    assert not reached.running_pids()

    # A different validator count needs --reset; --reset starts a new chain.
    other = cli("devnet", "up", "--dir", str(root), "--validators", "2", "--base-port", "0")
    assert other.returncode == 1 and "--reset" in other.stderr
    up = start_up(root, out, "--reset")
    try:
        wait_until("a fresh chain", lambda: min(heights(root)) >= 1, 120, detail=lambda: logs(root))
        with Client(rpc_url(root), timeout=5) as c:
            assert int(c.block(1).header.time) > last_time, "block 1 is from before the reset"
    finally:
        stop(up, out, signal.SIGTERM)
