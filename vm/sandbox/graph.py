"""Shared graph plumbing: bounded parsing, dtype names, strict static shape inference, constant detection.

Used by the canonicalizer, the checker and the meter, so that all three see one and the same view of a
model: the types and static shapes that ONNX's own strict shape inference (with data propagation) derives
from the pinned inputs, never the model's own value_info.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from google.protobuf.message import DecodeError as ProtobufDecodeError
from onnx import AttributeProto, ModelProto, NodeProto, TensorProto

from core.errors import InvalidModel
from vm.sandbox.limits import SandboxLimits
from vm.sandbox.ops import NEVER_FOLD

_ONNX_TO_NAME: dict[int, str] = {
    TensorProto.BOOL: "bool",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16",
    TensorProto.UINT16: "uint16",
    TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32",
    TensorProto.INT64: "int64",
    TensorProto.UINT64: "uint64",
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.STRING: "string",
    TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128",
}
NAME_TO_ONNX: dict[str, int] = {v: k for k, v in _ONNX_TO_NAME.items()}


def dtype_name(elem_type: int) -> str:
    """Numpy-style name of an ONNX element type ("elem<N>" for exotic ones, which no rule allows)."""
    return _ONNX_TO_NAME.get(elem_type, f"elem{elem_type}")


def one_line(text: object, limit: int = 200) -> str:
    """A library message made fit for a one-line verdict."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_model(model_bytes: bytes, limits: SandboxLimits) -> ModelProto:
    """Parse untrusted bytes; the size cap is applied before the parser sees them."""
    if not isinstance(model_bytes, bytes | bytearray | memoryview):
        raise InvalidModel("model is not bytes")
    size = len(model_bytes)
    if size == 0:
        raise InvalidModel("not an ONNX model: empty")
    if size > limits.max_model_bytes:
        raise InvalidModel(f"model is {size} bytes, over the cap of {limits.max_model_bytes}")
    model = ModelProto()
    try:
        model.ParseFromString(bytes(model_bytes))
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise InvalidModel(f"not an ONNX model: {one_line(exc, 80)}") from None
    if not model.HasField("graph") or model.ir_version <= 0 or len(model.opset_import) == 0:
        raise InvalidModel("not an ONNX model: no graph, IR version or opset")
    return model


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor's dtype name and static shape as derived by inference (shape None: not static)."""

    dtype: str
    shape: tuple[int, ...] | None

    @property
    def size(self) -> int:
        if self.shape is None:
            raise ValueError("shape is not static")
        size = 1
        for d in self.shape:
            size *= d
        return size

    @property
    def nbytes(self) -> int:
        item = np.dtype(self.dtype).itemsize if self.dtype in NAME_TO_ONNX and self.dtype != "string" else 8
        return self.size * item


TypeTable = dict[str, TensorType]


def _type_of(value: onnx.ValueInfoProto) -> TensorType | None:
    t = value.type
    if not t.HasField("tensor_type"):
        return None
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return TensorType(dtype_name(tt.elem_type), None)
    dims: list[int] = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return TensorType(dtype_name(tt.elem_type), None)
        dims.append(d.dim_value)
    return TensorType(dtype_name(tt.elem_type), tuple(dims))


def initializer_type(init: TensorProto) -> TensorType:
    return TensorType(dtype_name(init.data_type), tuple(int(d) for d in init.dims))


def infer_types(model: ModelProto) -> TypeTable:
    """Types of every tensor by strict ONNX shape inference with data propagation.

    The model's own value_info and declared output shapes are ignored (they are untrusted claims); the
    result holds what the graph computes from its pinned inputs. Raises InvalidModel on any inference error.
    """
    probe = ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for value in probe.graph.output:
        # Declared output shapes are claims, not facts: infer them, the checker compares.
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises several types for malformed graphs; any of them is a verdict
        raise InvalidModel(f"shape inference failed: {one_line(exc)}") from None
    g = inferred.graph
    table: TypeTable = {}
    for init in g.initializer:
        table[init.name] = initializer_type(init)
    for value in (*g.input, *g.value_info, *g.output):
        vt = _type_of(value)
        if vt is not None and value.name not in table:
            table[value.name] = vt
    return table


def iter_graph_attributes(node: NodeProto) -> Iterator[AttributeProto]:
    for attr in node.attribute:
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) or attr.HasField("g") or len(attr.graphs):
            yield attr


def has_external_data(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def node_inputs(node: NodeProto) -> Iterable[str]:
    """Names of the node's present inputs (optional inputs are given as "")."""
    return (name for name in node.input if name)


def find_foldable(
    model: ModelProto, types: TypeTable, limits: SandboxLimits, constants: Iterable[str] = ()
) -> list[int]:
    """Indices of nodes the canonicalizer folds into initializers; a canonical model has none.

    A node is foldable when it is deterministic, has no subgraph, does not produce a graph output, all its
    outputs have static shapes totalling at most `limits.max_fold_bytes`, and either all its inputs are
    constant (initializers or outputs of earlier foldable nodes) or it is Shape/Size of a static tensor.
    """
    g = model.graph
    const = {init.name for init in g.initializer} | set(constants)
    graph_outputs = {o.name for o in g.output}
    found: list[int] = []
    for index, node in enumerate(g.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in NEVER_FOLD:
            continue
        if any(True for _ in iter_graph_attributes(node)):
            continue
        outputs = [o for o in node.output if o]
        if not outputs or any(o in graph_outputs for o in outputs):
            continue
        if node.op_type in ("Shape", "Size"):
            src = types.get(node.input[0]) if node.input else None
            inputs_ok = src is not None and src.shape is not None
        else:
            inputs_ok = all(name in const for name in node_inputs(node))
        if not inputs_ok:
            continue
        total = 0
        for o in outputs:
            t = types.get(o)
            if t is None or t.shape is None or t.dtype not in NAME_TO_ONNX or t.dtype == "string":
                total = -1
                break
            total += t.nbytes
        if 0 <= total <= limits.max_fold_bytes:
            found.append(index)
            const.update(outputs)
    return found
