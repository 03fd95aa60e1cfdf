"""A resident model on a real 4-validator devnet (real processes, tests/realnet), through the real CLI.

ResNet-50 with seeded random weights (tools/random_weights.py on onnx's shipped `light_resnet50`: 102.5 MB
canonical, every weight random) is registered with `inferchain model register`. Its check (~410M gas) is over
`vm.defer_check_gas_over`, so its completing chunk queues it as a deferred, so resident, registration
(vm/resident.py): the check and the model's cold load (~360M) are paid in tokens, the CLI says "pending,
activates at height N", waits, and reports it registered at N; `inferchain model status` on another node says
the same; every node holds the same record, whose load charge has no per-KiB term. One inference through
`inferchain infer` (its first call in a block: ~100M gas, where a non-resident model of this size would need
~460M, over max_tx_gas) matches raw onnxruntime on the file as written within the declared tolerance, and
its class probabilities are far from uniform.

The deferral threshold is lowered (10M, as before this model replaced SqueezeNet here) and the background
budget is the default genesis's (200M per block). The random file is written in its own process while the
devnet starts (an autouse fixture, so it comes first). Its upload is 391 chunks of 256 KiB, about four to a
block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.keyfile import save_key
from tests.e2e.test_real_models import assert_within_tolerance, raw_onnxruntime
from tests.realnet import RealNet, realnet_fixture
from tools.backend_corpus import DATA, load_case
from tools.genesis import DEFAULT_PARAMS
from vm.params import MAX_RELAY_BLOCK_BYTES
from vm.state import ModelRecord

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SEED = 2027
GRID_K, TOL_ABS, TOL_REL_PPM = 24, 32, 200
MODEL = "light_resnet50"
VM = {"defer_check_gas_over": 10_000_000}
# Blocks of up to 4 MiB less the relay's reserve (vm.params.MAX_RELAY_BLOCK_BYTES): ~15 chunks of 256 KiB a
# block instead of 4, so the upload takes ~27 blocks, not ~98 (the module's wall time is mostly blocks).
CONSENSUS = {"max_block_bytes": MAX_RELAY_BLOCK_BYTES}


@pytest.fixture(scope="module", autouse=True)
def random_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """ResNet-50's random variant, written by `python -m tools.random_weights` in its own process while the
    devnet starts (autouse: this fixture comes first); stopped when the module ends."""
    path = tmp_path_factory.mktemp("random") / "resnet50_random.onnx"
    proc = subprocess.Popen([sys.executable, "-m", "tools.random_weights", str(DATA / "light" / f"{MODEL}.onnx"),
                             str(path), "--seed", str(SEED)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2, accounts=6, genesis={"vm": VM, "consensus": CONSENSUS})


def cli(net: RealNet, keyring: Path, *args: str, node: int = 0) -> tuple[Any, str]:
    env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(node).rpc_url}
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"inferchain {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}"
    return json.loads(done.stdout), done.stderr


def test_resnet50_with_random_weights_registers_as_a_resident_model_and_runs(
        net: RealNet, tmp_path: Path, random_file: tuple[Path, subprocess.Popen[bytes]]) -> None:
    keyring = tmp_path / "keys"
    keyring.mkdir(mode=0o700)
    save_key(keyring / "dev5.json", net.account_key(5))
    path, proc = random_file
    _, err = proc.communicate(timeout=480)
    assert proc.returncode == 0, f"tools.random_weights failed: {err.decode(errors='replace')[-2000:]}"
    case = load_case(f"light/{MODEL}")
    rng = np.random.default_rng(SEED)
    golden = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in case.inputs.items()}
    inputs = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in case.inputs.items()}
    np.savez(tmp_path / "golden.npz", **golden)
    np.savez(tmp_path / "input.npz", **inputs)
    shapes = [f"--input-shape={k}={','.join(str(d) for d in v.shape)}" for k, v in inputs.items()]

    started = time.monotonic()
    registered, progress = cli(net, keyring, "model", "register", str(path), "--name", "resnet50", "--class",
                               "tolerant", "--grid-k", str(GRID_K), "--tol-abs", str(TOL_ABS), "--tol-rel-ppm",
                               str(TOL_REL_PPM), *shapes, "--golden-inputs", str(tmp_path / "golden.npz"),
                               "--from", "dev5", "--timeout", "120", "--json")
    registered_s = time.monotonic() - started
    activated_at = registered["activated_at"]
    assert registered["status"] == "registered" and activated_at > registered["height"], registered
    assert f"pending, activates at height {activated_at}" in progress, progress

    status, _ = cli(net, keyring, "model", "status", registered["model_id"], "--json", node=2)
    assert status["status"] == "registered" and status["deferred"] is True
    assert status["activates_at"] == status["registered_at"] == activated_at and status["queued_at"] > 0
    net.wait_height(activated_at, timeout=60)
    records = {net.client(i).model(registered["model_id"]).raw for i in range(4)}
    assert len(records) == 1  # every node wrote the same verdict
    record = ModelRecord.decode(net.client(0).model(registered["model_id"]).raw)
    # Resident: the first use in a block pays no per-KiB load (~360M for these 100 MB).
    assert int(record.gas_load) < 3584 * (registered["bytes"] // 1024) // 2, record

    started = time.monotonic()
    inferred, _ = cli(net, keyring, "infer", "resnet50", str(tmp_path / "input.npz"), "--from", "dev5",
                      "--timeout", "120", "--json", node=1)
    inferred_s = time.monotonic() - started
    assert inferred["status"] == "ok" and inferred["proof"].startswith("verified"), inferred
    net.wait_height(inferred["height"], timeout=60)
    result = net.client(3).tx(inferred["hash"]).result
    assert int(result.gas_used) < DEFAULT_PARAMS["vm"]["max_tx_gas"]
    q = result.outputs[0].to_numpy()
    expected = raw_onnxruntime(path, inputs)
    assert_within_tolerance(q, expected)
    # Not uniform: the classes' probabilities spread over orders of magnitude.
    assert expected.max() > 20 * expected.min() and expected.std() > 1e-3
    print(f"resnet50 random: {registered['bytes']} B, registered (upload and activation) in {registered_s:.0f} s, "
          f"one inference in {inferred_s:.1f} s, first call {int(result.gas_used)} gas")
