"""onnx's shipped `light` CNNs on a real 4-validator devnet (real processes, tests/realnet), through the real
CLI as a user runs it (`inferchain model register` and `inferchain infer` as subprocesses).

1. SqueezeNet, ShuffleNet, Inception v1 and v2 and ResNet-50 (every light CNN but VGG-19, AlexNet and ZFNet,
   over the tensor cap, and DenseNet-121, proved in tests/node/test_cli_model_gas.py) register exactly as shipped (IR 3, opset 9: the CLI converts
   them), tolerant, input shape pinned, onnx's own test input as the golden input; one inference transaction
   on each with that input commits, its proof verifies, every node holds the same committed outputs, and
   they match onnx's expected outputs within the declared tolerance.
2. The shipped weights are constants (expected outputs are uniform, 0.001 per class), so SqueezeNet and
   ShuffleNet are registered again with seeded random weights (tools/random_weights.py) and called on a
   seeded random image; the chain's committed grid values match raw onnxruntime (default session, no
   sandbox) on the converted model within the declared tolerance, and are far from uniform. (ResNet-50 with
   random weights is 100 MB canonical: over the default gas cap, see MAX_TX_GAS.)
3. A model whose registration is over the per-transaction gas cap is refused by the CLI before any chunk
   is paid for.

The devnet runs the default genesis's gas limits (tools/genesis.py): no override.

Wall time on the shared 2-core machine: 279 s for the module at load average 12, 326-391 s at 15-17 (245 s at load 8
before, with a 500M gas override); Inception v2 46 s, ResNet-50 34 s, the refusal 24 s, each small model
7-12 s, the devnet's start 9 s at load 8; the uploads of the 13-21 MB canonical models and the CLI's local
preparation of each model dominate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from node.modelprep import upgrade
from tests.realnet import RealNet, realnet_fixture
from tests.vm.backend_corpus import DATA, load_case
from tools.genesis import DEFAULT_PARAMS
from tools.random_weights import randomize_weights
from vm.sandbox.canonicalize import canonicalize

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODELS = ("light_squeezenet", "light_shufflenet")
# DenseNet-121 registers (189M) and its first call in a block fits (194M of max_tx_gas 200M, docs/sandbox.md,
# "DenseNet-121: what bounds it"), but its 26 MB upload and its preparation would add about a minute to this
# module: tests/node/test_cli_model_gas.py proves it through the same client path, the CLI's gas quote and the
# real VM on the default genesis, and tests/vm/test_onnx_backend_corpus.py its outputs through a worker.
SHIPPED = (*MODELS, "light_inception_v1", "light_inception_v2", "light_resnet50")
# Declared at registration (what a user passes for a float image classifier): a fine grid, so a comparison
# within the tolerance is tight (32 / 2^24 ~ 2e-6 absolute, plus 200 ppm).
GRID_K, TOL_ABS, TOL_REL_PPM = 24, 32, 200
SEED = 2026

# The default genesis's gas limits (max_tx_gas = max_block_gas = 200M): a model's last upload chunk pays
# for its registration, the check (4 gas per canonical byte, 40k per node) and its golden runs on the check's
# session (docs/sandbox.md, "Registration of big models", "DenseNet-121: what bounds it"). ResNet-50 with
# random weights (100 MB canonical, over 400M) stays over it: the last test shows the CLI's refusal of such a
# model.
MAX_TX_GAS = DEFAULT_PARAMS["vm"]["max_tx_gas"]
net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory, net: RealNet) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys"
    cli(net, path, "keys", "import", "dev0", "--seed", net.account_key(0).seed.hex())
    return path


def cli(net: RealNet, keyring: Path, *args: str, node: int = 0, timeout: float = 240) -> Any:
    env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(node).rpc_url}
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"inferchain {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}"
    return json.loads(done.stdout) if "--json" in args else done.stdout


def register(net: RealNet, keyring: Path, path: Path, name: str, inputs: dict[str, np.ndarray],
             golden: dict[str, np.ndarray]) -> dict[str, Any]:
    np.savez(path.with_suffix(".golden.npz"), **golden)
    shapes = [f"--input-shape={k}={','.join(str(d) for d in v.shape)}" for k, v in inputs.items()]
    doc: dict[str, Any] = cli(net, keyring, "model", "register", str(path), "--name", name, "--class", "tolerant",
                              "--grid-k", str(GRID_K), "--tol-abs", str(TOL_ABS), "--tol-rel-ppm", str(TOL_REL_PPM),
                              *shapes, "--golden-inputs", str(path.with_suffix(".golden.npz")),
                              "--from", "dev0", "--timeout", "120", "--json")
    assert doc["status"] == "registered" and doc["height"] >= 1, doc
    return doc


def infer(net: RealNet, keyring: Path, name: str, inputs: dict[str, np.ndarray], tmp: Path) -> np.ndarray:
    """One inference transaction through the CLI: committed, proved, the same on every node; its outputs'
    committed grid values (q = round(y * 2^k))."""
    np.savez(tmp / f"{name}.input.npz", **inputs)
    doc = cli(net, keyring, "infer", name, str(tmp / f"{name}.input.npz"), "--from", "dev0", "--timeout", "120",
              "--json", node=1)
    assert doc["status"] == "ok" and doc["proof"].startswith("verified"), doc
    net.wait_height(doc["height"], timeout=60)
    committed = [net.client(i).tx(doc["hash"]) for i in range(4)]
    assert {c.height for c in committed} == {doc["height"]}
    grids = [[o.to_numpy() for o in c.result.outputs] for c in committed]
    for other in grids[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(grids[0], other, strict=True))
    q = grids[0][0]
    assert np.array_equal(np.asarray(doc["outputs"][0]["values"]) * 2.0 ** GRID_K, q)  # the CLI decodes q / 2^k
    return q


def assert_within_tolerance(q: np.ndarray, expected: np.ndarray) -> None:
    """The chain's agreement rule (docs/sandbox.md): |q - q_ref| <= t_abs + t_rel * |q_ref|, q_ref on the grid."""
    ref = np.rint(expected.astype(np.float64) * 2.0 ** GRID_K).astype(np.int64)
    assert q.shape == ref.shape
    diff = np.abs(q.astype(np.int64) - ref)
    allowed = TOL_ABS + TOL_REL_PPM * np.abs(ref) / 1e6
    assert np.all(diff <= allowed), f"max diff {diff.max()} grid units (allowed {allowed[diff.argmax()]:.1f})"


@pytest.mark.parametrize("model", SHIPPED)
def test_a_shipped_light_cnn_registers_as_shipped_and_runs_as_a_transaction(
        net: RealNet, keyring: Path, tmp_path: Path, model: str) -> None:
    case = load_case(f"light/{model}")
    register(net, keyring, DATA / "light" / f"{model}.onnx", model, case.inputs, case.inputs)
    q = infer(net, keyring, model, case.inputs, tmp_path)
    assert_within_tolerance(q, case.expected[0])


@pytest.mark.parametrize("model", MODELS)
def test_random_weights_in_the_same_architecture_match_raw_onnxruntime(
        net: RealNet, keyring: Path, tmp_path: Path, model: str) -> None:
    shipped = DATA / "light" / f"{model}.onnx"
    path = tmp_path / f"{model}_random.onnx"
    path.write_bytes(randomize_weights(shipped.read_bytes(), SEED))
    shapes = {k: v.shape for k, v in load_case(f"light/{model}").inputs.items()}
    rng = np.random.default_rng(SEED)
    golden = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    image = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    name = f"{model}_random"
    register(net, keyring, path, name, image, golden)
    q = infer(net, keyring, name, image, tmp_path)
    # Raw onnxruntime on the converted model (the CLI's conversion, shapes pinned), default session options.
    converted = canonicalize(upgrade(path.read_bytes()).model_bytes, {k: list(s) for k, s in shapes.items()})
    session = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    expected = session.run(None, image)[0]
    assert_within_tolerance(q, expected)
    # Not uniform: the classes' probabilities spread over orders of magnitude.
    assert expected.max() > 20 * expected.min() and expected.std() > 1e-3


def test_a_model_whose_registration_is_over_the_transaction_gas_cap_is_refused_before_anything_is_paid(
        net: RealNet, keyring: Path, tmp_path: Path) -> None:
    """A model with 64 MiB of weights (one MatMul) would need ~470M gas in its last chunk (as would ResNet-50
    with random weights, 100 MB canonical): the CLI refuses it with one line before signing anything, instead
    of uploading chunks the chain then cannot complete; --dry-run says the same."""
    rng = np.random.default_rng(SEED)
    weight = numpy_helper.from_array(rng.standard_normal((4096, 4096)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])], initializer=[weight])
    path = tmp_path / "big.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
                     .SerializeToString())
    sender = net.account_key(0).address
    before = net.client(0).account(sender).nonce
    env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(0).rpc_url}
    for extra in ((), ("--dry-run",)):
        done = subprocess.run([sys.executable, "-m", "node.cli", "model", "register", str(path), "--name", "big",
                               "--class", "tolerant", "--from", "dev0", *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 1
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("error: this model's registration needs "), done.stderr
        assert error.endswith(f"over the chain's per-transaction maximum {MAX_TX_GAS} (vm.max_tx_gas): "
                              "this chain cannot register it"), done.stderr
    assert net.client(0).account(sender).nonce == before
    assert "big" not in {m.name for m in net.client(0).models()}
