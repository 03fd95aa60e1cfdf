"""Synthetic canonical models for the gas benches (bench/gas_calibration.py, bench/worst_block.py).

Each builder returns canonical bytes and the input shape it pins; `salt` changes a constant so that many
distinct models (distinct ids) of one shape can be made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.limits import SandboxLimits

OPSET = 17
_NP: dict[int, str] = {TensorProto.FLOAT: "float32", TensorProto.INT32: "int32", TensorProto.INT64: "int64",
                       TensorProto.UINT8: "uint8"}


@dataclass(frozen=True, slots=True)
class Synth:
    name: str
    model_bytes: bytes
    input_name: str
    input_dtype: str  # numpy name
    input_shape: tuple[int, ...]
    output_dtype: str
    output_shape: tuple[int, ...]
    exact: bool

    def sample(self, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if self.input_dtype == "float32":
            return rng.random(self.input_shape, dtype=np.float32)
        return rng.integers(0, 8, self.input_shape).astype(self.input_dtype)


def _finish(name: str, nodes: Sequence[NodeProto], x: tuple[str, int, tuple[int, ...]], y: tuple[str, int, tuple[int, ...]],
            inits: list[TensorProto], limits: SandboxLimits | None = None) -> Synth:
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info(x[0], x[1], list(x[2]))],
                              [helper.make_tensor_value_info(y[0], y[1], list(y[2]))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    raw = model.SerializeToString()
    canonical = canonicalize(raw, {x[0]: x[2]}) if limits is None else canonicalize(raw, {x[0]: x[2]}, limits)
    return Synth(name, canonical, x[0], _NP[x[1]], x[2], _NP[y[1]], y[2],
                 y[1] != TensorProto.FLOAT)


def node_chain(n: int, salt: int = 0) -> Synth:
    """n Add nodes on an int32[1,1]: the cheapest gas per node, the most nodes per byte (the load attack)."""
    c = numpy_helper.from_array(np.array([salt + 1], dtype=np.int32), "c")
    nodes = []
    prev = "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Add", [prev, "c"], [out]))
        prev = out
    return _finish(f"chain{n}", nodes, ("x", TensorProto.INT32, (1, 1)), ("y", TensorProto.INT32, (1, 1)), [c])


def weights(nbytes: int, salt: int = 0, limits: SandboxLimits | None = None) -> Synth:
    """One float MatMul [1,256] x [256,k] whose weights make the file `nbytes` long: bytes-heavy to load,
    cheap to run (ResNet-like weight volume without the compute)."""
    k = max(1, nbytes // (4 * 256))
    w = np.random.default_rng(salt).standard_normal((256, k)).astype(np.float32)
    init = numpy_helper.from_array(w, "w")
    node = helper.make_node("MatMul", ["x", "w"], ["m"])
    red = helper.make_node("ReduceSum", ["m"], ["y"], keepdims=1)
    return _finish(f"weights{nbytes >> 20}MB", [node, red], ("x", TensorProto.FLOAT, (1, 256)),
                   ("y", TensorProto.FLOAT, (1, 1)), [init], limits)


def conv_weights(nbytes: int, salt: int = 0, limits: SandboxLimits | None = None) -> Synth:
    """One float 1x1 Conv of a [1,256,1,1] input with k filters whose weights make the file `nbytes` long: the
    weights of a CNN (ONNX Runtime prepacks a MatMul's or Gemm's weights at session creation, not a Conv's)."""
    k = max(1, nbytes // (4 * 256))
    w = np.random.default_rng(salt).standard_normal((k, 256, 1, 1)).astype(np.float32)
    init = numpy_helper.from_array(w, "w")
    node = helper.make_node("Conv", ["x", "w"], ["m"])
    red = helper.make_node("ReduceSum", ["m"], ["y"], keepdims=1)
    return _finish(f"convweights{nbytes >> 20}MB", [node, red], ("x", TensorProto.FLOAT, (1, 256, 1, 1)),
                   ("y", TensorProto.FLOAT, (1, 1, 1, 1)), [init], limits)


def lookup(entries: int, salt: int = 0, limits: SandboxLimits | None = None) -> Synth:
    """y = table[x] over a 1-D int32 table: the registration check reads every entry (ONNX's data propagation
    of 1-D integer constants), the run one."""
    table = numpy_helper.from_array(np.arange(entries, dtype=np.int32) * 7 + salt, "table")
    node = helper.make_node("Gather", ["table", "x"], ["y"])
    return _finish(f"lookup{entries}", [node], ("x", TensorProto.INT32, (1, 1)), ("y", TensorProto.INT32, (1, 1)),
                   [table], limits)


def elementwise(op: str, n: int, salt: int = 0) -> Synth:
    """`op` on a float32[1,n] (binary ops add a constant), reduced to [1,1] so the output stays small."""
    c = numpy_helper.from_array(np.array([1.0 + salt], dtype=np.float32), "c")
    ins = ["x", "c"] if op in ("Add", "Mul", "Div", "Sub", "Pow") else ["x"]
    nodes = [helper.make_node(op, ins, ["e"]), helper.make_node("ReduceMax", ["e"], ["y"], keepdims=1)]
    return _finish(f"{op.lower()}{n}", nodes, ("x", TensorProto.FLOAT, (1, n)), ("y", TensorProto.FLOAT, (1, 1)),
                   [c])


def expand(n: int, salt: int = 0) -> Synth:
    """int64[1,1] broadcast to n elements, then added to itself: activation bytes written, little work."""
    shape = numpy_helper.from_array(np.array([1, n], dtype=np.int64), "s")
    c = numpy_helper.from_array(np.array([salt], dtype=np.int64), "c")
    nodes = [helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("Add", ["e", "c"], ["a"]),
             helper.make_node("ReduceMax", ["a"], ["y"], keepdims=1)]
    return _finish(f"expand{n}", nodes, ("x", TensorProto.INT64, (1, 1)), ("y", TensorProto.INT64, (1, 1)),
                   [shape, c])


def matmul(m: int, k: int, n: int, integer: bool = False, salt: int = 0) -> Synth:
    """[m,k] x [k,n] (float MatMul, or uint8 MatMulInteger), reduced to one value."""
    rng = np.random.default_rng(salt)
    if integer:
        w = numpy_helper.from_array(rng.integers(0, 255, (k, n)).astype(np.uint8), "w")
        nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["m"]),
                 helper.make_node("ReduceMax", ["m"], ["y"], keepdims=1)]
        return _finish(f"mmi{m}x{k}x{n}", nodes, ("x", TensorProto.UINT8, (m, k)), ("y", TensorProto.INT32, (1, 1)),
                       [w])
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("ReduceMax", ["m"], ["y"], keepdims=1)]
    return _finish(f"mm{m}x{k}x{n}", nodes, ("x", TensorProto.FLOAT, (m, k)), ("y", TensorProto.FLOAT, (1, 1)), [w])


def conv(c_in: int, c_out: int, hw: int, kernel: int = 3, salt: int = 0) -> Synth:
    """A float Conv on [1,c_in,hw,hw] with a kernel x kernel filter, reduced to one value."""
    w = numpy_helper.from_array(
        np.random.default_rng(salt).standard_normal((c_out, c_in, kernel, kernel)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[kernel // 2] * 4),
             helper.make_node("ReduceMax", ["c"], ["y"], keepdims=1)]
    return _finish(f"conv{c_in}x{c_out}x{hw}", nodes, ("x", TensorProto.FLOAT, (1, c_in, hw, hw)),
                   ("y", TensorProto.FLOAT, (1, 1, 1, 1)), [w])


def resnet50(limits: SandboxLimits) -> Synth:
    """ResNet-50 at [1,3,224,224] from onnx's backend test data (`light_resnet50`: the real graph with
    constant weights), upgraded from its old opset to OPSET and canonicalized under `limits` (it needs
    ~18 MB and ~4.1 G MACs, more than the default caps on model bytes allow)."""
    import os

    import onnx
    from onnx import version_converter

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    model = version_converter.convert_version(onnx.load(path), OPSET)
    model.ir_version = 8
    x = model.graph.input[0].name
    shape = (1, 3, 224, 224)
    canonical = canonicalize(model.SerializeToString(), {x: shape}, limits)
    return Synth("resnet50", canonical, x, "float32", shape, "float32", (1, 1000), False)


def batched_matmuls(rows: int = 64, width: int = 4096, salt: int = 0) -> Synth:
    """float32[1,64] broadcast to [rows,64], then [rows,64] x [64,width] x [width,64]: ~2 x rows x 64 x width
    MACs of batched MatMul per call from a 256-byte input (a block of them is bound by gas, not bytes)."""
    rng = np.random.default_rng(salt)
    shape = numpy_helper.from_array(np.array([rows, 64], dtype=np.int64), "s")
    w1 = numpy_helper.from_array((rng.standard_normal((64, width)) * 0.1).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((width, 64)) * 0.1).astype(np.float32), "w2")
    nodes = [helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("MatMul", ["e", "w1"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["m"]), helper.make_node("ReduceMax", ["m"], ["y"], keepdims=1)]
    return _finish(f"bmm{rows}x{width}", nodes, ("x", TensorProto.FLOAT, (1, 64)), ("y", TensorProto.FLOAT, (1, 1)),
                   [shape, w1, w2])
