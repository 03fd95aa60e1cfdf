"""End to end with real processes: a 4-validator devnet, the CLI (scikit-learn models registered and called
included), a crash and restart, a fifth validator.

One network (tests/realnet) serves the whole module (starting processes is the slow part); the tests run in
file order and each leaves the chain running for the next. Ports are free ones from the OS, every wait is
bounded, a failure shows each node's log, and the harness stops every process whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from core.types import Amount, Height
from node.client import Client, RpcError
from tests.realnet import RealNet, realnet_fixture
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

# Validator 3 is killed and restarted below. On a loaded machine its restart can take longer than the genesis
# max_misses (16 of 32 heights at 200 ms blocks) and it would be jailed for downtime, which is not what that
# test is about: jail only a validator that misses every one of the last 64 heights.
net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2,
                      genesis={"slashing": {"miss_window": 64, "max_misses": 64}})


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "keys"


def cli(net: RealNet, keyring: Path, *args: str, node: int = 0,
        timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(node).rpc_url}
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"inferchain {' '.join(args)} failed: {done.stderr.strip()}"
    return done


# ------------------------------------------------------------------------------------------------ tests


def test_cli_transfer_and_inference_on_a_4_validator_devnet(net: RealNet, keyring: Path, tmp_path: Path) -> None:
    cli(net, keyring, "keys", "import", "dev0", "--seed", net.account_key(0).seed.hex())
    receiver = str(net.account_key(7).address)
    before = net.client(1).account(receiver).balance
    sent = json.loads(cli(net, keyring, "tx", "send", receiver, "4242", "--from", "dev0", "--json").stdout)
    assert sent["status"] == "ok" and sent["height"] >= 1
    # Read back on another node, with the proof checked by the CLI.
    net.wait_height(sent["height"], [2], timeout=30)
    shown = json.loads(cli(net, keyring, "query", "account", receiver, "--json", node=2).stdout)
    assert shown["balance"] == before + 4242 and shown["proof_verified"] is True

    x = (np.arange(64) % 16 * 15).astype(np.uint8).reshape(1, 64)
    np.save(tmp_path / "x.npy", x)
    result = json.loads(cli(net, keyring, "infer", "digits_int8", str(tmp_path / "x.npy"), "--from", "dev0",
                            "--json", node=1).stdout)
    assert result["status"] == "ok" and result["proof"].startswith("verified")
    assert result["outputs"][0]["shape"] == [1, 10]
    tx = net.client(3).tx(result["hash"])
    assert tx.height == result["height"]
    assert [o.to_numpy().tolist() for o in tx.result.outputs] == [result["outputs"][0]["values"]]
    # Every node re-ran it (and its PoI challenges): its metrics show model run times.
    text = httpx.get(net.spec(3).rpc_url + "/metrics", timeout=10).text
    runs = next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith('inferchain_inference_seconds_count{phase="run"}'))
    assert runs >= 1
    assert "inferchain_poi_score " in text and "inferchain_poi_challenges{outcome=\"correct\"}" in text


def test_every_node_has_the_same_block_and_state_root_at_every_height(net: RealNet) -> None:
    top = min(net.height(i) for i in range(4))
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


def test_killed_validator_restarts_catches_up_and_votes_again(net: RealNet) -> None:
    sender, to = net.account_key(5), net.account_key(6)
    c0 = net.client(0)
    stop = threading.Event()
    sent: list[int] = []

    def load() -> None:
        status = c0.status()
        nonce = c0.account(sender.address).nonce
        with Client(net.spec(0).rpc_url, timeout=10) as client:
            while not stop.is_set():
                tx = build_tx(sender, Transfer(to.address, Amount(1)), chain_id=status.chain_id, nonce=nonce,
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
        net.wait_until("load to start", lambda: len(sent) >= 5, 30)
        net.kill(3)
        at_kill = net.height(0)
        net.wait_height(at_kill + 3, [0, 1, 2], timeout=60)
        net.restart(3)
        net.wait_height(net.height(0), [3], timeout=90)
        restarted_at = net.height(3)
        key3 = bytes(net.validator_key(3).public_key)
        net.wait_until("node 3's precommits in commits again",
                       lambda: any(_signed_commit(c0, h, key3) for h in range(restarted_at, net.height(0))), 60)
    finally:
        stop.set()
        loader.join(15)
    assert len(sent) >= 5
    # No double signing: no evidence anywhere, and validator 3 is neither tombstoned nor jailed for it.
    top = net.height(0)
    for h in range(1, top + 1):
        assert net.client(0).block(h).block.evidence == (), f"evidence in block {h}"
    v3 = next(v for v in c0.validators().validators if v.public_key == key3)
    assert not v3.tombstoned and not v3.jailed
    # The load landed: the receiver's balance grew by what was accepted before the last block.
    assert net.client(3).account(to.address).balance > 0


def test_fifth_node_joins_by_sync_stakes_votes_and_proposes(net: RealNet, keyring: Path) -> None:
    c0 = net.client(0)
    index = net.add_node(validator=True)
    spec = net.spec(index)
    c4 = net.client(index)
    net.wait_height(net.height(0), [index], timeout=120)
    assert c4.status().is_validator is False

    # Stake from account 4 (funded in genesis) for validator 4's key, as much as any other validator, so the
    # new validator both matters for quorum and gets its proposer turn within a few heights.
    cli(net, keyring, "keys", "import", "acc4", "--seed", net.account_key(4).seed.hex())
    stake = json.loads(cli(net, keyring, "tx", "stake", "10000000000", "--validator-key",
                           str(spec.home / "validator_key.json"), "--from", "acc4", "--json", node=index).stdout)
    landed = stake["height"]
    key4 = bytes(net.validator_key(index).public_key)
    joined = landed + 2
    net.wait_height(joined + 1, [0], timeout=60)
    in_set = {bytes(v.public_key) for v in c0.validators(joined).validators if v.in_set}
    assert key4 in in_set, "validator 4 is not in the set two heights after its stake"
    before = {bytes(v.public_key) for v in c0.validators(joined - 1).validators if v.in_set}
    assert key4 not in before, "validator 4 signed before its stake took effect"
    net.wait_until("validator 4's precommit in a commit",
                   lambda: any(_signed_commit(c0, h, key4) for h in range(joined, net.height(0))), 60)
    # How many heights pass before its first precommit lands depends on the machine's load (at 200 ms blocks
    # on a loaded machine, 6 to 8); what the rules fix is that no commit before the join height holds one.
    early = [h for h in range(landed, joined) if _signed_commit(c0, h, key4)]
    assert early == [], f"validator 4's precommit in commits {early}, before it joined at {joined}"
    address4 = net.validator_key(index).address
    proposed = net.wait_until("a block proposed by validator 4",
                              lambda: next((h for h in range(joined, net.height(0) + 1)
                                            if c0.block(h).header.proposer == address4), None), 120)
    assert proposed >= joined
    # Every node, the new one included, holds that block with the same id.
    ids = {net.client(i).block(proposed).block.id for i in net.indices if net.height(i) >= proposed}
    assert len(ids) == 1
    assert c4.status().is_validator is True
    # And the devnet tooling sees all five nodes' logs and state on disk.
    assert spec.log_path.exists() and Height(proposed) > 0


def test_cli_delegation_commission_rewards_and_undelegation(net: RealNet, keyring: Path) -> None:
    """Issue 15 through the CLI and RPC: the owner sets a commission, another account delegates (its power
    counts two heights later), earns a share of the validator's rewards, withdraws them and undelegates."""
    c0 = net.client(0)
    validator = net.validator_key(1)
    address = str(validator.address)
    cli(net, keyring, "keys", "import", "own1", "--seed", net.account_key(1).seed.hex())
    cli(net, keyring, "keys", "import", "acc6", "--seed", net.account_key(6).seed.hex())
    edit = json.loads(cli(net, keyring, "tx", "edit-validator", "--commission", "1000", "--max-commission", "2000",
                          "--max-change", "100", "--validator", validator.public_key.hex(), "--from", "own1",
                          "--json").stdout)
    assert edit["status"] == "ok"
    power = c0.validators().validators
    before = next(v.power for v in power if v.address == address)
    sent = json.loads(cli(net, keyring, "tx", "delegate", address, "2000000000", "--from", "acc6", "--json").stdout)
    assert sent["status"] == "ok"
    net.wait_height(sent["height"] + 2, [0], timeout=30)
    after = next(v.power for v in c0.validators(sent["height"] + 2).validators if v.address == address)
    assert after == before + 2_000
    delegator = str(net.account_key(6).address)
    shown = json.loads(cli(net, keyring, "query", "delegations", "acc6", "--json", node=2).stdout)
    assert shown["delegator"] == delegator
    assert [(d["validator"], d["amount"], d["commission_bps"]) for d in shown["delegations"]] == [
        (address, 2_000_000_000, 1_000)]
    net.wait_until("rewards for the delegator",
                   lambda: json.loads(cli(net, keyring, "query", "rewards", delegator, "--json").stdout)["total"] > 0
                   or None, 60)
    withdrawn = json.loads(cli(net, keyring, "tx", "withdraw-rewards", "--from", "acc6", "--json").stdout)
    assert withdrawn["status"] == "ok" and withdrawn["withdrawn"] > 0
    # From all, quoted (the fee is the limit's) and charged by the one delegation held, not by the 16 an
    # account may hold.
    price = int(c0.call("params")["vm"]["gas_withdraw_rewards"])
    assert withdrawn["gas_used"] == c0.call("tx", {"hash": withdrawn["hash"]})["tx"]["gas_limit"] == price
    raised = json.loads(cli(net, keyring, "tx", "edit-validator", "--commission", "1000", "--max-commission", "2000",
                            "--max-change", "100", "--min-self-stake", "200000000", "--validator",
                            validator.public_key.hex(), "--from", "own1", "--json").stdout)
    assert raised["status"] == "ok"
    net.wait_height(raised["height"] + 2, [0], timeout=30)
    floor = next(v.min_self_stake for v in c0.validators(raised["height"] + 2).validators if v.address == address)
    assert floor == 200_000_000
    out = json.loads(cli(net, keyring, "tx", "undelegate", address, "500000000", "--from", "acc6", "--json").stdout)
    assert out["status"] == "ok"
    net.wait_height(out["height"], [1], timeout=30)
    left = c0.call("delegations", {"address": delegator, "height": out["height"]})
    assert [d["amount"] for d in left["delegations"]] == [1_500_000_000]


def _sklearn_models(tmp_path: Path) -> dict[str, tuple[Path, Any]]:
    """StandardScaler + LogisticRegression and a RandomForest fitted on iris, exported by skl2onnx as a user
    would (zipmap=False: ZipMap outputs maps, which the chain refuses; the exporter's default opsets)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    forest = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(x, y)
    out = {}
    for name, estimator, final in (("iris_logistic", pipe, pipe.steps[-1][1]), ("iris_forest", forest, forest)):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(to_onnx(estimator, x[:1], options={id(final): {"zipmap": False}}).SerializeToString())
        out[name] = (path, estimator)
    return out


def test_sklearn_pipelines_register_and_run_through_the_cli(net: RealNet, keyring: Path, tmp_path: Path) -> None:
    """Issue 12 on real processes, through `inferchain model register` and `inferchain infer` as a user runs
    them: the logistic regression with `--output probabilities` (the tolerant class refuses its label, an
    argmax of float scores: tests/node/test_cli_model_outputs.py) and the forest as exported (its tree
    decisions read the transaction's own floats: bit-exact, label included). Each inference commits the same
    outputs on every node, its proof verifies, and they match scikit-learn and raw onnxruntime within the
    declared tolerance (the CLI's defaults: k = 20, t_abs = 32, t_rel = 200 ppm)."""
    import onnxruntime as ort
    from sklearn.datasets import load_iris

    from node.modelprep import upgrade

    cli(net, keyring, "keys", "import", "acc2", "--seed", net.account_key(2).seed.hex())
    x = load_iris(return_X_y=True)[0].astype(np.float32)
    np.savez(tmp_path / "golden.npz", X=x[[0, 60, 120, 140]])
    queries = x[[10, 70, 110, 149]]
    np.savez(tmp_path / "query.npz", X=queries)
    models = _sklearn_models(tmp_path)
    common = ("--class", "tolerant", "--input-shape", "X=4,4", "--golden-inputs", str(tmp_path / "golden.npz"),
              "--from", "acc2", "--json")
    k = 20
    for name, (path, estimator) in models.items():
        keep = ("--output", "probabilities") if name == "iris_logistic" else ()
        reg = json.loads(cli(net, keyring, "model", "register", str(path), "--name", name, *keep, *common).stdout)
        assert reg["status"] == "registered", reg
        done = json.loads(cli(net, keyring, "infer", name, str(tmp_path / "query.npz"), "--from", "acc2", "--json",
                              node=1).stdout)
        assert done["status"] == "ok" and done["proof"].startswith("verified"), done
        net.wait_height(done["height"], timeout=30)
        committed = [[o.to_numpy() for o in net.client(i).tx(done["hash"]).result.outputs] for i in net.indices]
        assert len(committed[0]) == (1 if keep else 2)  # label and probabilities, unless --output drops the label
        for other in committed[1:]:
            assert all(np.array_equal(a, b) for a, b in zip(committed[0], other, strict=True)), name
        probs = committed[0][-1]
        assert np.array_equal(np.asarray(done["outputs"][-1]["values"]) * 2.0 ** k, probs)
        raw = ort.InferenceSession(upgrade(path.read_bytes()).model_bytes,
                                   providers=["CPUExecutionProvider"]).run(None, {"X": queries})
        for expected in (estimator.predict_proba(queries), raw[-1]):
            ref = np.rint(expected.astype(np.float64) * 2.0 ** k).astype(np.int64)
            assert np.all(np.abs(probs - ref) <= 32 + 200e-6 * np.abs(ref)), (name, probs, ref)
        if name == "iris_forest":
            assert np.array_equal(committed[0][0], estimator.predict(queries))
