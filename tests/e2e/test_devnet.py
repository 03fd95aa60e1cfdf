"""End to end with real processes: a 4-validator devnet, the CLI, a crash and restart, a fifth validator.

One devnet serves the whole module (starting processes is the slow part); the tests run in file order and
each leaves the chain running for the next. Every wait is bounded, and the processes are stopped in the
fixture's `finally` (SIGINT, then SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest

from core.keys import PrivateKey
from core.types import Height
from node.client import Client, RpcError
from node.devnet import DEFAULT_SEED_PHRASE, Devnet
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BASE_PORT = 27700  # away from the default devnet's 26700, so a developer's running devnet does not collide
BLOCK_TIME_MS = 200
T = TypeVar("T")


def account(i: int) -> PrivateKey:
    return PrivateKey.derive(DEFAULT_SEED_PHRASE, "account", i)


def validator(i: int) -> PrivateKey:
    return PrivateKey.derive(DEFAULT_SEED_PHRASE, "validator", i)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except RpcError as exc:  # a node that is starting or restarting
            last_error = exc
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last error: {last_error})")


def height_of(client: Client) -> int:
    return client.status().height


class Net:
    def __init__(self, devnet: Devnet, keyring: Path) -> None:
        self.devnet = devnet
        self.keyring = keyring
        self.clients = {i: Client(devnet.spec(i).rpc_url, timeout=10) for i in range(devnet.validators)}

    def client(self, i: int) -> Client:
        if i not in self.clients:
            self.clients[i] = Client(self.devnet.spec(i).rpc_url, timeout=10)
        return self.clients[i]

    def cli(self, *args: str, node: int = 0, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "INFERCHAIN_KEYRING": str(self.keyring),
               "INFERCHAIN_NODE": self.devnet.spec(node).rpc_url}
        done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"inferchain {' '.join(args)} failed: {done.stderr.strip()}"
        return done

    def log_tail(self, i: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.devnet.spec(i).log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("devnet")
    devnet = Devnet(root / "dn", validators=4, base_port=BASE_PORT, block_time_ms=BLOCK_TIME_MS)
    devnet.prepare()
    n = Net(devnet, root / "keys")
    try:
        devnet.start_all()
        wait_for("4 nodes at height 2", lambda: all(height_of(n.client(i)) >= 2 for i in range(4)), 120)
        yield n
    finally:
        codes = devnet.stop_all()
        for c in n.clients.values():
            c.close()
        assert all(code is not None for code in codes), "a devnet process survived teardown"


# ------------------------------------------------------------------------------------------------ tests


def test_cli_transfer_and_inference_on_a_4_validator_devnet(net: Net, tmp_path: Path) -> None:
    net.cli("keys", "import", "dev0", "--seed", account(0).seed.hex())
    receiver = str(account(7).address)
    before = net.client(1).account(receiver).balance
    sent = json.loads(net.cli("tx", "send", receiver, "4242", "--from", "dev0", "--json").stdout)
    assert sent["status"] == "ok" and sent["height"] >= 1
    # Read back on another node, with the proof checked by the CLI.
    wait_for("node 2 at the transfer's height", lambda: height_of(net.client(2)) >= sent["height"], 30)
    shown = json.loads(net.cli("query", "account", receiver, "--json", node=2).stdout)
    assert shown["balance"] == before + 4242 and shown["proof_verified"] is True

    x = (np.arange(64) % 16 * 15).astype(np.uint8).reshape(1, 64)
    np.save(tmp_path / "x.npy", x)
    result = json.loads(net.cli("infer", "digits_int8", str(tmp_path / "x.npy"), "--from", "dev0", "--json",
                                node=1).stdout)
    assert result["status"] == "ok" and result["proof"].startswith("verified")
    assert result["outputs"][0]["shape"] == [1, 10]
    tx = net.client(3).tx(result["hash"])
    assert tx.height == result["height"]
    assert [o.to_numpy().tolist() for o in tx.result.outputs] == [result["outputs"][0]["values"]]
    # Every node re-ran it (and its PoI challenges): its metrics show model run times.
    text = httpx.get(net.devnet.spec(3).rpc_url + "/metrics", timeout=10).text
    runs = next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith('inferchain_inference_seconds_count{phase="run"}'))
    assert runs >= 1
    assert "inferchain_poi_score " in text and "inferchain_poi_challenges{outcome=\"correct\"}" in text


def test_every_node_has_the_same_block_and_state_root_at_every_height(net: Net) -> None:
    top = min(height_of(net.client(i)) for i in range(4))
    assert top >= 3
    for h in range(1, top + 1):
        headers = [net.client(i).block(h).header for i in range(4)]
        assert len({hd.block_id for hd in headers}) == 1, f"nodes disagree on block {h}"
        assert len({hd.state_root for hd in headers}) == 1, f"nodes disagree on the state root at {h}"


def _signed_commit(client: Client, height: int, public_key: bytes) -> bool:
    """True when the commit of `height` stored in block height+1 holds this validator's precommit for it."""
    nxt = client.block(height + 1).block
    assert nxt.last_commit is not None
    return any(bytes(v.validator) == public_key and v.block_id == nxt.header.last_block_id
               for v in nxt.last_commit.precommits)


def test_killed_validator_restarts_catches_up_and_votes_again(net: Net) -> None:
    sender, to = account(5), account(6)
    c0 = net.client(0)
    stop = threading.Event()
    sent: list[int] = []

    def load() -> None:
        status = c0.status()
        nonce = c0.account(sender.address).nonce
        with Client(net.devnet.spec(0).rpc_url, timeout=10) as client:
            while not stop.is_set():
                tx = build_tx(sender, Transfer(to.address, 1), chain_id=status.chain_id, nonce=nonce,
                              gas_limit=1000, fee=1000)
                try:
                    if client.broadcast_tx(tx).accepted:
                        nonce += 1
                        sent.append(nonce)
                except RpcError:
                    pass
                time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        wait_for("load to start", lambda: len(sent) >= 5, 30)
        net.devnet.kill(3)
        at_kill = height_of(c0)
        wait_for("the chain to go on without node 3", lambda: height_of(c0) >= at_kill + 3, 60)
        net.devnet.start(3)
        target = height_of(c0)
        wait_for("node 3 to catch up", lambda: height_of(net.client(3)) >= target, 90)
        restarted_at = height_of(net.client(3))
        key3 = bytes(validator(3).public_key)
        wait_for("node 3's precommits in commits again",
                 lambda: any(_signed_commit(c0, h, key3) for h in range(restarted_at, height_of(c0))), 60)
    finally:
        stop.set()
        loader.join(15)
    assert len(sent) >= 5
    # No double signing: no evidence anywhere, and validator 3 is neither tombstoned nor jailed for it.
    top = height_of(c0)
    for h in range(1, top + 1):
        assert net.client(0).block(h).block.evidence == (), f"evidence in block {h}"
    v3 = next(v for v in c0.validators().validators if v.public_key == key3)
    assert not v3.tombstoned
    # The load landed: the receiver's balance grew by what was accepted before the last block.
    assert net.client(3).account(to.address).balance > 0


def test_fifth_node_joins_by_sync_stakes_votes_and_proposes(net: Net) -> None:
    devnet = net.devnet
    c0 = net.client(0)
    others = [devnet.spec(i).p2p_addr for i in range(4)]
    spec = devnet.init_home(4, validator=True, bootstrap=others)
    devnet.start(4)
    c4 = net.client(4)
    target = height_of(c0)
    wait_for("node 4 to sync", lambda: height_of(c4) >= target, 120)
    assert c4.status().is_validator is False

    # Stake from account 4 (funded in genesis) for validator 4's key, as much as any other validator, so the
    # new validator both matters for quorum and gets its proposer turn within a few heights.
    net.cli("keys", "import", "acc4", "--seed", account(4).seed.hex())
    stake = json.loads(net.cli("tx", "stake", "10000000000", "--validator-key",
                               str(spec.home / "validator_key.json"), "--from", "acc4", "--json", node=4).stdout)
    landed = stake["height"]
    key4 = bytes(validator(4).public_key)
    joined = landed + 2
    wait_for("the chain past the join height", lambda: height_of(c0) >= joined + 1, 60)
    in_set = {bytes(v.public_key) for v in c0.validators(joined).validators if v.in_set}
    assert key4 in in_set, "validator 4 is not in the set two heights after its stake"
    before = {bytes(v.public_key) for v in c0.validators(joined - 1).validators if v.in_set}
    assert key4 not in before, "validator 4 signed before its stake took effect"
    wait_for("validator 4's precommit in a commit",
             lambda: any(_signed_commit(c0, h, key4) for h in range(joined, height_of(c0))), 60)
    first_vote = next(h for h in range(joined, height_of(c0)) if _signed_commit(c0, h, key4))
    assert first_vote <= joined + 3, f"validator 4 first signed at {first_vote}, joined at {joined}"
    address4 = validator(4).address
    proposed = wait_for("a block proposed by validator 4",
                        lambda: next((h for h in range(joined, height_of(c0) + 1)
                                      if c0.block(h).header.proposer == address4), None), 120)
    assert proposed >= joined
    # Every node, the new one included, holds that block with the same id.
    ids = {net.client(i).block(proposed).block.id for i in range(5)
           if height_of(net.client(i)) >= proposed}
    assert len(ids) == 1
    assert c4.status().is_validator is True
    # And the devnet tooling sees all five nodes' logs and state on disk.
    assert spec.log_path.exists() and Height(proposed) > 0
