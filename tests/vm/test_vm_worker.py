"""Real sandbox worker processes: agreement whatever the environment says, and local faults that leave the
node running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.types import Amount
from tests.vm.devnet import Devnet
from tests.vm.helpers import memory_hog_model, meta_for, spec
from tools.genesis import make_genesis
from vm.execute import InferWork
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.sandbox.golden import make_golden, save_golden
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.txs import Infer, ModelClass, compute_model_id

pytestmark = pytest.mark.vm

THREAD_ENV = {
    "OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8", "KMP_AFFINITY": "compact",
    "ORT_DISABLE_ALL_OPTIMIZATION": "0", "OMP_WAIT_POLICY": "ACTIVE", "DNNL_MAX_CPU_ISA": "AVX2",
}


def _model_ids(net: Devnet) -> dict[str, bytes]:
    return {m.name: m.model_id for m in net.genesis.models}


@pytest.fixture
def pooled(tmp_path: Path, genesis: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Devnet]:
    """Node 0 builds with default settings; node 1's workers start under a hostile thread environment."""
    pools: list[WorkerPool] = []

    def default_pool() -> WorkerPool:
        pool = WorkerPool(1)
        pool.start()
        pools.append(pool)
        return pool

    def hostile_pool() -> WorkerPool:
        with monkeypatch.context() as m:
            for key, value in THREAD_ENV.items():
                m.setenv(key, value)
            pool = WorkerPool(1)
            pool.start()
        pools.append(pool)
        return pool

    net = Devnet.start(tmp_path, genesis, executors=[default_pool, hostile_pool])  # type: ignore[arg-type]
    yield net
    net.close()


def test_build_and_validate_agree_whatever_the_environment(pooled: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    net = pooled
    ids = _model_ids(net)
    user = net.account(6)
    rng = np.random.default_rng(3)
    txs = []
    for _ in range(4):
        u = Tensor.from_numpy(rng.integers(0, 256, (1, 64)).astype(np.uint8))
        x = Tensor.from_numpy(rng.random((1, 64), dtype=np.float32))
        txs.append(net.tx(user, Infer(ids["digits_int8"], (u,), Amount(0)), gas_limit=2_000_000))  # type: ignore[arg-type]
        txs.append(net.tx(user, Infer(ids["digits_mlp"], (x,), Amount(0)), gas_limit=2_000_000))  # type: ignore[arg-type]
    for key, value in THREAD_ENV.items():  # also this process's environment while validating
        monkeypatch.setenv(key, value)
    for _ in range(3):  # reach heights with PoI reveals too
        block = net.step(txs if net.height == 2 else [])
    assert all(r.status is TxStatus.OK for r in block.results) and len(block.results) == 8
    # Exact outputs are bit-identical: node 1 recomputes them in its own (hostile-env) workers.
    view = net.apps[1].view(net.height - 1)
    work = []
    for i, tx in enumerate(block.txs):
        payload = Infer.decode(tx.payload)
        record = view.model(payload.model_id)
        assert record is not None
        work.append(InferWork(i, payload.model_id, record, payload.inputs))
    local, _ = net.apps[1].engine.resolve(work, view.params())
    for i in range(0, 8, 2):
        assert local[i].outputs[0].data == block.results[i].outputs[0].data  # type: ignore[union-attr]
    workers = net.apps[1].executor.describe()  # type: ignore[attr-defined]
    assert workers[0]["env"] == [] and workers[0]["intra_op_threads"] == 1


def _genesis_with_hog(tmp_path: Path) -> object:
    """The test genesis plus a model that needs ~192 MiB of activations to run."""
    model_bytes = memory_hog_model()
    x = np.array([[3]], np.int32)
    meta = meta_for("hog", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[x]])
    (tmp_path / "hog.onnx").write_bytes(model_bytes)
    save_golden(tmp_path / "hog.golden.npz",
                make_golden([({"x": x}, {"y": meta.golden[0].outputs[0].to_numpy()})]))
    doc = make_genesis(4)
    # Its first use in a block pays a call plus a load that runs its golden input: ~160 M gas.
    doc["vm"]["max_tx_gas"] = doc["consensus"]["max_block_gas"] = 200_000_000
    doc["models"].append({
        "name": "hog", "id": compute_model_id(sha256(model_bytes), meta).hex(), "poi": False,
        "owner": doc["accounts"][0]["address"], "file": "hog.onnx", "golden": "hog.golden.npz",
        "class": "exact", "grid_k": 0, "t_abs": 0, "t_rel_ppm": 0, "fee_per_call": 0,
        "inputs": [{"name": "x", "dtype": "int32", "shape": [1, 1]}],
        "outputs": [{"name": "y", "dtype": "int32", "shape": [1, 1]}],
    })
    return parse_genesis(json.loads(json.dumps(doc)), base_dir=tmp_path)


def test_a_model_that_exhausts_its_worker_is_a_local_fault_and_the_node_goes_on(tmp_path: Path) -> None:
    genesis = _genesis_with_hog(tmp_path)
    tight = WorkerLimits(memory_bytes=300 << 20)
    net = Devnet.start(tmp_path, genesis, executors=[LocalExecutor, lambda: WorkerPool(1, tight)])  # type: ignore[arg-type]
    try:
        hog = next(m.model_id for m in net.genesis.models if m.name == "hog")
        user = net.account(6)
        tx = net.tx(user, Infer(hog, (Tensor.from_numpy(np.array([[5]], np.int32)),), Amount(0)),
                    gas_limit=200_000_000)
        block = net.propose([tx])  # node 0 runs it without limits
        assert block.results[0].status is TxStatus.OK
        (verdict,) = net.validate(block)
        # ORT's allocation failure is not recognised by its text any more: whatever the worker met is a fault.
        assert verdict.kind.value == "local_fault" and verdict.reason.startswith("worker")
        assert any(verdict.reason[:40] in line for line in net.alarms)
        # As proposer, node 1 leaves the transaction out instead of stalling.
        own = net.apps[1].build_block(net.template(), [tx])
        assert own.txs == ()
        # The node goes on: its next validations succeed with a fresh worker.
        net.commit(block)
        net.step()
        net.step()
    finally:
        net.close()


def test_a_quarantined_model_is_left_out_by_the_proposer_and_a_local_fault_for_the_validator(
        tmp_path: Path) -> None:
    """Golden vectors that do not reproduce on this node (here: a genesis that lies about them)."""
    from vm.models import MODELS_DIR, load_model

    real = load_model("digits_int8")
    case = real.golden.cases[0]
    lying = make_golden([(dict(case.inputs), {k: v + 1 for k, v in case.outputs.items()})])
    save_golden(tmp_path / "lying.golden.npz", lying)
    (tmp_path / "digits.onnx").write_bytes((MODELS_DIR / "digits_int8.onnx").read_bytes())
    doc = make_genesis(4)
    entry = next(m for m in doc["models"] if m["name"] == "digits_int8")
    entry.update(file="digits.onnx", golden="lying.golden.npz")
    from core.types import Amount as A
    from vm.genesis import _golden, _tensor_specs
    from vm.txs import ModelMeta

    inputs, outputs = _tensor_specs(entry["inputs"], "i"), _tensor_specs(entry["outputs"], "o")
    meta = ModelMeta("digits_int8", inputs, outputs, ModelClass.EXACT, 0, 0, 0, A(0),
                     _golden(tmp_path / "lying.golden.npz", inputs, outputs, "g"))
    entry["id"] = compute_model_id(sha256(real.model_bytes), meta).hex()
    genesis = parse_genesis(json.loads(json.dumps(doc)), base_dir=tmp_path)
    net = Devnet.start(tmp_path, genesis, nodes=2)
    try:
        model = next(m.model_id for m in genesis.models if m.name == "digits_int8")
        u = Tensor.from_numpy(np.zeros((1, 64), np.uint8))
        tx = net.tx(net.account(6), Infer(model, (u,), Amount(0)), gas_limit=2_000_000)
        own = net.apps[1].build_block(net.template(), [tx])
        assert own.txs == ()  # left out, not a verdict
        assert any("golden" in line for line in net.alarms)
        # Node 0 skips golden checks (as a node whose vectors reproduce would): its block carries the tx,
        # which node 1 cannot judge.
        engine = net.apps[0].engine
        original = engine.package
        engine.package = lambda mid, meta, limits, **kw: replace(original(mid, meta, limits, **kw), golden=None)  # type: ignore[method-assign]
        block = net.propose([tx])
        assert len(block.txs) == 1 and block.results[0].status is TxStatus.OK
        (verdict,) = net.validate(block)
        assert verdict.kind.value == "local_fault" and "golden" in verdict.reason
        net.commit(block)  # applying a committed block never runs the model
        net.step()
    finally:
        net.close()
