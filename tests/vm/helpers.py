"""Small models built in tests with onnx.helper (canonicalized by the sandbox), and upload helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.hashing import sha256
from core.keys import PrivateKey
from core.tensor import DType, Tensor
from core.tx import Transaction
from tools.genesis import make_genesis
from vm.execute import chunk_gas, registration_gas
from vm.params import Params
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.golden import make_golden, save_golden
from vm.txs import GoldenVector, ModelClass, ModelMeta, TensorSpec, build_tx, compute_model_id, split_model

OPSET = 17


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: Sequence[TensorProto] = ()) -> bytes:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


def log_model() -> bytes:
    """Tolerant float model y = log(x) + 1: a non-positive input makes its output NaN or -Inf."""
    one = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")
    raw = _model([helper.make_node("Log", ["x"], ["l"]), helper.make_node("Add", ["l", "one"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [one])
    return canonicalize(raw, {"x": (1, 4)})


def memory_hog_model(width: int = 4096) -> bytes:
    """Exact int32 model whose run needs ~192 MiB of activations (within the chain's caps): it exhausts a
    worker with a small address-space limit and runs fine on a normal one. `width` (at most 4096, the tensor
    cap) makes other bytes with about the same need."""
    shape = numpy_helper.from_array(np.array([4096, width], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["e"]),
        helper.make_node("Add", ["e", "e"], ["a"]),
        helper.make_node("Mul", ["a", "e"], ["m"]),
        helper.make_node("ReduceMax", ["m"], ["y"], keepdims=1),
    ]
    raw = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], [shape])
    return canonicalize(raw, {"x": (1, 1)})


def meta_for(name: str, model_bytes: bytes, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
             model_class: ModelClass, golden_inputs: Sequence[Sequence[np.ndarray]], *, grid_k: int = 0,
             tol_abs: int = 0, tol_rel_ppm: int = 0, fee_per_call: int = 0) -> ModelMeta:
    """Registration metadata with golden outputs computed by running the model in-process."""
    from vm.engine import model_spec, sandbox_limits  # noqa: F401  (limits are the defaults here)
    from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

    spec = ModelSpec(tuple(ArraySpec(t.name, t.dtype.numpy.name, tuple(t.shape)) for t in inputs),
                     CompareMode.EXACT if model_class is ModelClass.EXACT else CompareMode.TOLERANT, grid_k,
                     Tolerance(tol_abs, tol_rel_ppm))
    package = ModelPackage(b"golden:" + name.encode(), model_bytes, spec, None)
    executor = LocalExecutor()
    golden = []
    for case in golden_inputs:
        feeds = {t.name: v for t, v in zip(inputs, case, strict=True)}
        result = executor.run_batch([InferJob(package, feeds)])[0]
        assert result.outputs is not None, result.error
        golden.append(GoldenVector(tuple(Tensor.from_numpy(v) for v in case),
                                   tuple(Tensor.from_numpy(v) for v in result.outputs.values())))
    return ModelMeta(name, tuple(inputs), tuple(outputs), model_class, grid_k, tol_abs, tol_rel_ppm,
                     fee_per_call, tuple(golden))


def upload_txs(key: PrivateKey, model_bytes: bytes, meta: ModelMeta, *, params: Params, chain_id: str,
               first_nonce: int, chunk_bytes: int = 256 * 1024) -> list[Transaction]:
    """The chunk transactions of one upload, each with exactly the gas it needs."""
    chunks = split_model(model_bytes, meta, chunk_bytes)
    registration = registration_gas(params, model_bytes, meta)
    txs = []
    for i, chunk in enumerate(chunks):
        gas = chunk_gas(params, chunk, len(model_bytes), i == len(chunks) - 1, registration=registration)
        txs.append(build_tx(key, chunk, chain_id=chain_id, nonce=first_nonce + i, gas_limit=gas,
                            fee=gas * params.vm.min_gas_price))
    return txs


def spec(name: str, dtype: DType, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name, dtype, shape)


def wide_model(width: int = 512) -> bytes:
    """Exact int32 model with a large output: x[1,1] broadcast to [1, width]."""
    shape = numpy_helper.from_array(np.array([1, width], dtype=np.int64), "shape")
    raw = _model([helper.make_node("Expand", ["x", "shape"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.INT32, [1, width])], [shape])
    return canonicalize(raw, {"x": (1, 1)})


def wide_meta(model_bytes: bytes, width: int = 512) -> ModelMeta:
    """`wide_model`'s registration metadata: exact, int32[1,1] -> int32[1,width], one golden input."""
    return meta_for("wide", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, width))],
                    ModelClass.EXACT, [[np.array([[1]], np.int32)]])


def genesis_doc_with(tmp_path: Path, models: dict[str, bytes], vm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The test genesis document plus exact int32[1,1] -> int32[1,1] models, their files in `tmp_path`."""
    doc = make_genesis(4)
    doc["vm"].update(vm or {})
    x = np.array([[3]], np.int32)
    for name, model_bytes in models.items():
        meta = meta_for(name, model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                        ModelClass.EXACT, [[x]])
        (tmp_path / f"{name}.onnx").write_bytes(model_bytes)
        save_golden(tmp_path / f"{name}.golden.npz",
                    make_golden([({"x": x}, {"y": meta.golden[0].outputs[0].to_numpy()})]))
        doc["models"].append({
            "name": name, "id": compute_model_id(sha256(model_bytes), meta).hex(), "poi": False,
            "owner": doc["accounts"][0]["address"], "file": f"{name}.onnx", "golden": f"{name}.golden.npz",
            "class": "exact", "grid_k": 0, "t_abs": 0, "t_rel_ppm": 0, "fee_per_call": 0,
            "inputs": [{"name": "x", "dtype": "int32", "shape": [1, 1]}],
            "outputs": [{"name": "y", "dtype": "int32", "shape": [1, 1]}],
        })
    return doc
