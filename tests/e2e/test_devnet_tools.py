"""The devnet's tools on one real 3-validator devnet: the banner, the faucet (`devnet fund`), `devnet logs`,
snapshots (taken while running, restored after `down`, resumed by `up`) and idle pacing (slow empty
heights, judged by the blocks' own times; a transaction ends the wait). Free ports only."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.keys import PrivateKey
from node.client import Client
from node.devnet import Devnet
from tests.e2e.test_devnet_cli import REPO, cli, heights, logs
from tests.realnet import wait_until

pytestmark = pytest.mark.e2e

TO = str(PrivateKey.derive("devnet tools test", "recipient", 0).address)  # holds nothing in genesis


IDLE_S = 4


def up_detached(root: Path, *pace: str) -> str:
    done = subprocess.run([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(root), "--validators", "3",
                           "--base-port", "0", *(pace or ("--block-time", "0.2")), "--detach"],
                          cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def block_times(root: Path, first: int, last: int) -> list[int]:
    with Client(Devnet.open(root).spec(0).rpc_url, timeout=5) as c:
        return [int(c.block(h).header.time) for h in range(first, last + 1)]


def send_right_after_a_block(root: Path) -> int:
    """Wait for a new block, then at once send 1ifc to TO from a prefunded account (in-process: no CLI start-up
    between the block and the transaction); the height that includes it."""
    from core.types import Amount
    from node.devnet import account_keys
    from vm.txs import Transfer, build_tx

    net = Devnet.open(root)
    key = account_keys(net.seed_phrase, 6)[5]
    with Client(net.spec(0).rpc_url, timeout=30) as c:
        seen = c.status().height
        wait_until("a new idle block", lambda: c.status().height > seen, 3 * IDLE_S + 30, poll=0.05)
        tx = build_tx(key, Transfer(PrivateKey.derive("devnet tools test", "recipient", 0).address,
                                    Amount(1_000_000)),
                      chain_id=c.status().chain_id, nonce=c.account(key.address).nonce, gas_limit=1000, fee=1000)
        result = c.broadcast_tx(tx, mode="commit", timeout=30)
    assert result.height is not None and result.result is not None and result.result.ok
    return int(result.height)


def balance(root: Path) -> int:
    with Client(Devnet.open(root).spec(0).rpc_url, timeout=5) as c:
        return c.account(TO).balance


def test_banner_faucet_logs_and_snapshots_on_one_devnet(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    fork = tmp_path / "fork"
    snaps = tmp_path / "dn-snapshots"
    try:
        banner = up_detached(root)
        assert "chain id inferchain-devnet-1 " in banner
        assert "chain id " in banner and "token ifc = 10^6 uifc" in banner and "min gas price 1 uifc/gas" in banner
        assert "balance=1_000_000ifc" in banner
        wait_until("3 nodes past height 2", lambda: min(heights(root)) >= 2, 120, detail=lambda: logs(root))

        funded = cli("devnet", "fund", TO, "2.5ifc", "--dir", str(root), "--json")
        assert funded.returncode == 0, funded.stderr
        assert json.loads(funded.stdout)["amount"] == 2_500_000 and balance(root) == 2_500_000
        refused = cli("devnet", "fund", TO, "10^9ifc", "--dir", str(root))
        assert refused.returncode == 2 and "Traceback" not in refused.stderr

        merged = cli("devnet", "logs", "--dir", str(root))
        assert merged.returncode == 0
        lines = merged.stdout.splitlines()
        assert {line.split(" | ")[0] for line in lines} == {"node0", "node1", "node2"}
        stamps = [line.split(" | ", 1)[1][:23] for line in lines if line.split(" | ", 1)[1][:4].isdigit()]
        assert stamps == sorted(stamps)  # one stream in time order
        one = cli("devnet", "logs", "--node", "1", "--dir", str(root))
        assert one.stdout and all(line.startswith("node1 | ") for line in one.stdout.splitlines())

        # A snapshot of the running devnet: paused, copied, resumed (it keeps producing blocks).
        taken = cli("devnet", "snapshot", "funded", "--dir", str(root), "--json")
        assert taken.returncode == 0, taken.stderr
        at = json.loads(taken.stdout)["height"]
        assert at >= 2 and (snaps / "funded" / "node0").is_dir()
        wait_until("blocks after the snapshot", lambda: min(heights(root)) >= at + 3, 120, detail=lambda: logs(root))
        assert cli("devnet", "snapshot", "funded", "--dir", str(root)).returncode == 1  # never overwritten
        assert cli("devnet", "fund", TO, "1ifc", "--dir", str(root)).returncode == 0
        assert balance(root) == 3_500_000
        busy = cli("devnet", "restore", "funded", "--dir", str(root))
        assert busy.returncode == 1 and "stop it first" in busy.stderr

        listed = json.loads(cli("devnet", "snapshots", "--dir", str(root), "--json").stdout)
        assert [s["name"] for s in listed] == ["funded"]

        assert cli("devnet", "down", "--dir", str(root)).returncode == 0
        restored = cli("devnet", "restore", "funded", "--dir", str(root))
        assert restored.returncode == 0, restored.stderr

        # Resumed with idle pacing: empty heights come one per IDLE_S (by the blocks' own times), and a
        # transaction ends the wait at once.
        banner = up_detached(root, "--idle-block-time", str(IDLE_S))
        assert f"one block per {IDLE_S} s while no transaction waits" in banner
        wait_until("the restored chain to move on", lambda: min(heights(root)) >= at + 1, 120,
                   detail=lambda: logs(root))
        assert balance(root) == 2_500_000  # the second faucet payment came after the snapshot
        start = max(heights(root))
        wait_until("three idle heights", lambda: min(heights(root)) >= start + 3, 8 * IDLE_S + 60,
                   detail=lambda: logs(root))
        times = block_times(root, start + 1, start + 3)
        assert all(b - a >= IDLE_S * 1000 * 0.9 for a, b in itertools.pairwise(times)), times
        height = send_right_after_a_block(root)
        before, included = block_times(root, height - 1, height)
        assert included - before < IDLE_S * 1000 * 0.75, (before, included)

        # Export node0's state (stopped) and fork it: a new devnet of 2 validators with the same balances.
        assert cli("devnet", "down", "--dir", str(root)).returncode == 0
        exported = tmp_path / "export.json"
        done = cli("export", "--home", str(root / "node0"), "--out", str(exported), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["height"] >= height
        forked = subprocess.run([sys.executable, "-m", "node.cli", "devnet", "up", "--dir", str(fork), "--validators",
                                 "2", "--base-port", "0", "--block-time", "0.2", "--from-genesis", str(exported),
                                 "--detach"], cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
        assert forked.returncode == 0, forked.stdout + forked.stderr
        assert "forked from inferchain-devnet-1 at height" in forked.stdout
        wait_until("the fork to make blocks", lambda: min(heights(fork)) >= 3, 120, detail=lambda: logs(fork))
        assert balance(fork) == 3_500_000
        with Client(Devnet.open(fork).spec(1).rpc_url, timeout=5) as c:
            assert c.status().chain_id == "inferchain-devnet-1-fork"
            assert len(c.validators().validators) == 2
    finally:
        Devnet(root).down()
        Devnet(fork).down()
    assert not Devnet(root).running_pids() and not Devnet(fork).running_pids()
