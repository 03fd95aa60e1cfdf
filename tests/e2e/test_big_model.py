"""Deferred activation on a real 4-validator devnet (real processes, tests/realnet), through the real CLI.

SqueezeNet with seeded random weights (tools/random_weights.py on onnx's shipped `light` model) is registered
with `inferchain model register` on a chain whose `vm.defer_check_gas_over` is below its check's gas, so its
completing chunk queues it: the CLI says "pending, activates at height N", waits, and reports it registered
at N; `inferchain model status` on another node says the same; every node holds the same record; one
inference through `inferchain infer` matches raw onnxruntime within the declared tolerance.

The threshold is lowered so that a 5 MB model takes the deferred path in seconds; the path is the one a
100 MB model (ResNet-50 with random weights: its check alone is ~400M gas, twice max_tx_gas) takes. That
model is not run here: its first call (a cold load, its golden run and the call: 736 ms of CPU on a fresh
worker, priced 460M gas at a measured margin of 3.1) cannot fit max_tx_gas at honest prices, so the CLI
refuses it (docs/sandbox.md, "The cold load of a 100 MB model"); its upload alone would take at least 98
blocks (391 chunks of 256 KiB, 4 to a 1152 KiB block).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.keyfile import save_key
from tests.e2e.test_real_models import assert_within_tolerance, raw_onnxruntime
from tests.realnet import RealNet, realnet_fixture
from tests.vm.backend_corpus import DATA, load_case
from tools.random_weights import randomize_weights

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SEED = 2027
GRID_K, TOL_ABS, TOL_REL_PPM = 24, 32, 200
# SqueezeNet's check is ~22M gas: over this threshold, it is deferred, 2-4 blocks of background budget out.
VM = {"defer_check_gas_over": 10_000_000, "background_gas_per_block": 10_000_000}

net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2, accounts=6, genesis={"vm": VM})


def cli(net: RealNet, keyring: Path, *args: str, node: int = 0) -> tuple[Any, str]:
    env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(node).rpc_url}
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, f"inferchain {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}"
    return json.loads(done.stdout), done.stderr


def test_a_deferred_registration_through_the_cli_activates_and_runs(net: RealNet, tmp_path: Path) -> None:
    keyring = tmp_path / "keys"
    keyring.mkdir(mode=0o700)
    save_key(keyring / "dev5.json", net.account_key(5))
    path = tmp_path / "squeeze.onnx"
    path.write_bytes(randomize_weights((DATA / "light" / "light_squeezenet.onnx").read_bytes(), SEED))
    case = load_case("light/light_squeezenet")
    rng = np.random.default_rng(SEED)
    golden = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in case.inputs.items()}
    inputs = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in case.inputs.items()}
    np.savez(tmp_path / "golden.npz", **golden)
    np.savez(tmp_path / "input.npz", **inputs)
    shapes = [f"--input-shape={k}={','.join(str(d) for d in v.shape)}" for k, v in inputs.items()]

    registered, progress = cli(net, keyring, "model", "register", str(path), "--name", "squeeze", "--class",
                               "tolerant", "--grid-k", str(GRID_K), "--tol-abs", str(TOL_ABS), "--tol-rel-ppm",
                               str(TOL_REL_PPM), *shapes, "--golden-inputs", str(tmp_path / "golden.npz"),
                               "--from", "dev5", "--timeout", "120", "--json")
    activated_at = registered["activated_at"]
    assert registered["status"] == "registered" and activated_at > registered["height"], registered
    assert f"pending, activates at height {activated_at}" in progress, progress

    status, _ = cli(net, keyring, "model", "status", registered["model_id"], "--json", node=2)
    assert status["status"] == "registered" and status["deferred"] is True
    assert status["activates_at"] == status["registered_at"] == activated_at and status["queued_at"] > 0
    net.wait_height(activated_at, timeout=60)
    records = {net.client(i).model(registered["model_id"]).raw for i in range(4)}
    assert len(records) == 1  # every node wrote the same verdict

    inferred, _ = cli(net, keyring, "infer", "squeeze", str(tmp_path / "input.npz"), "--from", "dev5",
                      "--timeout", "120", "--json", node=1)
    assert inferred["status"] == "ok" and inferred["proof"].startswith("verified"), inferred
    net.wait_height(inferred["height"], timeout=60)
    q = net.client(3).tx(inferred["hash"]).result.outputs[0].to_numpy()
    assert_within_tolerance(q, raw_onnxruntime(path, inputs))
