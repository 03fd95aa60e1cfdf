"""Shared graph plumbing: bounded parsing, dtype names, strict static shape inference, constant detection.

Used by the canonicalizer, the checker and the meter, so that all three see one and the same view of a
model: the types and static shapes that ONNX's own strict shape inference (with data propagation) derives
from the pinned inputs, never the model's own value_info.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from onnx import AttributeProto, ModelProto, NodeProto, TensorProto, ValueInfoProto

from core.errors import InvalidModel, LocalFault
from vm.sandbox.limits import SandboxLimits
from vm.sandbox.ops import ML_DOMAIN, ML_OPS, NEVER_FOLD, MlShape

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
# Bytes per element of each named dtype (strings count as 8: they are refused, this only bounds work).
_ITEMSIZE: dict[str, int] = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "string": 8, "complex64": 8, "complex128": 16,
}


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
    validate_declared(model, limits)
    return model


@contextlib.contextmanager
def library_verdict(what: str) -> Iterator[None]:
    """Turn a refusal by onnx's own checks (shape inference, checker, inliner) into InvalidModel.

    Used only around library calls on bytes that `validate_declared` already accepted: onnx raises several
    types for ill-formed graphs and any of them is the same verdict on every node (pinned onnx). Running
    out of memory is not a verdict: it is this node's fault.
    """
    try:
        yield
    except MemoryError:
        raise LocalFault(f"out of memory in {what}") from None
    except InvalidModel:
        raise
    except Exception as exc:  # onnx's refusals have no common base class
        raise InvalidModel(f"{what} failed: {one_line(exc)}") from None


# ---- declared metadata, validated before any type is built from it --------------------------------------

_DATA_TYPES = frozenset(_ONNX_TO_NAME)
_ATTRIBUTE_TYPES = frozenset(AttributeProto.AttributeType.values()) - {AttributeProto.UNDEFINED}
_MAX_OPSET_VERSION = (1 << 31) - 1
# Which typed field carries a tensor's values, how many per element, and the range an integer value must
# fit (numpy refuses to cast an out-of-range Python int, so a payload is checked before it is decoded).
_TYPED_FIELD: dict[int, tuple[str, int, tuple[int, int] | None]] = {
    TensorProto.FLOAT: ("float_data", 1, None),
    TensorProto.DOUBLE: ("double_data", 1, None),
    TensorProto.COMPLEX64: ("float_data", 2, None),
    TensorProto.COMPLEX128: ("double_data", 2, None),
    TensorProto.BOOL: ("int32_data", 1, (0, 1)),
    TensorProto.INT8: ("int32_data", 1, (-(1 << 7), (1 << 7) - 1)),
    TensorProto.UINT8: ("int32_data", 1, (0, (1 << 8) - 1)),
    TensorProto.INT16: ("int32_data", 1, (-(1 << 15), (1 << 15) - 1)),
    TensorProto.UINT16: ("int32_data", 1, (0, (1 << 16) - 1)),
    TensorProto.FLOAT16: ("int32_data", 1, (0, (1 << 16) - 1)),
    TensorProto.BFLOAT16: ("int32_data", 1, (0, (1 << 16) - 1)),
    TensorProto.INT32: ("int32_data", 1, None),
    TensorProto.INT64: ("int64_data", 1, None),
    TensorProto.UINT32: ("uint64_data", 1, (0, (1 << 32) - 1)),
    TensorProto.UINT64: ("uint64_data", 1, None),
    TensorProto.STRING: ("string_data", 1, None),
}
_VALUE_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def validate_declared(model: ModelProto, limits: SandboxLimits) -> None:
    """Refuse a model whose declared metadata no later step may read as given; else return.

    Runs right after parsing, before any name, dimension, dtype or payload is used to build a value: every
    string is UTF-8; opset imports are unique with sane versions; graph inputs, outputs and initializers
    have non-empty unique names, known element types and dimensions in [0, cap]; every tensor (initializer
    or attribute) has a payload that matches its dims and dtype, with integer values in range; every node
    of the default domain names a known op with an input and output count its schema allows, and its
    attributes have unique names and known types. Later rules (the checker's, the canonicalizer's) may
    refuse more, but none of them can meet a malformed declaration.
    """
    _validate_text(model)
    default_opset = _validate_opsets(model)
    g = model.graph
    _validate_values(g.input, "input", limits)
    _validate_values(g.output, "output", limits)
    names: set[str] = set()
    for init in g.initializer:
        validate_tensor(init, limits, "initializer")
        if init.name in names:
            raise InvalidModel(f"initializer {init.name!r} is defined twice")
        names.add(init.name)
    for node in g.node:
        _validate_node(node, default_opset, limits)
    for function in model.functions:
        for node in function.node:
            _validate_node(node, None, limits)


def _validate_text(message: Message) -> None:
    """Every string field anywhere in the message is valid UTF-8 (the parser hands back bytes otherwise).

    Only string and message fields are read: reading a bytes field (an initializer's raw data) would copy it.
    """
    stack = [message]
    while stack:
        current = stack.pop()
        strings, messages = _text_fields(current.DESCRIPTOR)
        for name, repeated in strings:
            if repeated:
                if any(not isinstance(v, str) for v in getattr(current, name)):
                    raise InvalidModel(f"{current.DESCRIPTOR.name}.{name} is not valid UTF-8")
            elif current.HasField(name) and not isinstance(getattr(current, name), str):
                raise InvalidModel(f"{current.DESCRIPTOR.name}.{name} is not valid UTF-8")
        for name, repeated in messages:
            if repeated:
                stack.extend(getattr(current, name))
            elif current.HasField(name):
                stack.append(getattr(current, name))


@functools.cache
def _text_fields(descriptor: Any) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]:
    """(string fields, message fields) of a message type, each as (name, is repeated)."""
    strings = tuple((f.name, f.is_repeated) for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING)
    messages = tuple((f.name, f.is_repeated) for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE)
    return strings, messages


def _validate_opsets(model: ModelProto) -> int:
    """Opset imports: each domain once ("ai.onnx" is the default domain), versions in [1, 2^31)."""
    seen: dict[str, int] = {}
    for opset_id in model.opset_import:
        domain = "" if opset_id.domain == "ai.onnx" else opset_id.domain
        if domain in seen:
            raise InvalidModel(f"opset domain {domain or 'ai.onnx'!r} is imported twice")
        if not 1 <= opset_id.version <= _MAX_OPSET_VERSION:
            raise InvalidModel(f"opset {domain or 'ai.onnx'!r} has version {opset_id.version}")
        seen[domain] = int(opset_id.version)
    if "" not in seen:
        raise InvalidModel("model imports no default ONNX opset")
    return seen[""]


def _validate_values(values: Iterable[ValueInfoProto], what: str, limits: SandboxLimits) -> None:
    names: set[str] = set()
    for value in values:
        if not value.name:
            raise InvalidModel(f"a graph {what} has an empty name")
        if value.name in names:
            raise InvalidModel(f"graph {what} {value.name!r} is declared twice")
        names.add(value.name)
        if not value.type.HasField("tensor_type"):
            continue  # the checker refuses sequences, maps and optionals by name
        tt = value.type.tensor_type
        if tt.elem_type not in _DATA_TYPES:
            raise InvalidModel(f"{what} {value.name!r} has an unknown element type {tt.elem_type}")
        if len(tt.shape.dim) > limits.max_rank:
            raise InvalidModel(f"{what} {value.name!r} has rank {len(tt.shape.dim)}, over the cap of {limits.max_rank}")
        # An input's dims become its type; an output's are a claim the checker compares with what the graph
        # computes (so a huge one is refused there, naming both).
        cap = limits.max_tensor_elements if what == "input" else (1 << 63) - 1
        for d in tt.shape.dim:
            if d.HasField("dim_value") and not 0 <= d.dim_value <= cap:
                raise InvalidModel(f"{what} {value.name!r} declares dimension {d.dim_value}")


def validate_tensor(tensor: TensorProto, limits: SandboxLimits, what: str) -> None:
    """A tensor whose dims, dtype and payload agree, so that decoding it cannot fail or allocate much."""
    if has_external_data(tensor):
        raise InvalidModel(f"external data is not allowed ({what} {tensor.name!r})")
    if tensor.data_type not in _DATA_TYPES:
        raise InvalidModel(f"{what} {tensor.name!r} has an unknown element type {tensor.data_type}")
    if len(tensor.dims) > limits.max_rank:
        raise InvalidModel(f"{what} {tensor.name!r} has rank {len(tensor.dims)}, over the cap of {limits.max_rank}")
    count = 1
    for d in tensor.dims:
        if d < 0:
            raise InvalidModel(f"{what} {tensor.name!r} has a negative dimension")
        count *= d
    field, per_element, bounds = _TYPED_FIELD[tensor.data_type]
    item = _ITEMSIZE[dtype_name(tensor.data_type)]
    if count * item > limits.max_parameter_bytes:
        raise InvalidModel(f"{what} {tensor.name!r} declares {count} elements, over the parameter cap")
    if any(d > limits.max_tensor_elements for d in tensor.dims):  # e.g. (0, 2^62): empty, yet no real shape
        raise InvalidModel(f"{what} {tensor.name!r} declares a dimension over {limits.max_tensor_elements}")
    if tensor.HasField("raw_data"):
        if any(len(getattr(tensor, f)) for f in _VALUE_FIELDS) or tensor.data_type == TensorProto.STRING:
            raise InvalidModel(f"{what} {tensor.name!r} carries both raw and typed values")
        if len(tensor.raw_data) != count * item:
            raise InvalidModel(
                f"{what} {tensor.name!r} declares {count} elements but carries {len(tensor.raw_data)} bytes")
        return
    if any(len(getattr(tensor, f)) for f in _VALUE_FIELDS if f != field):
        raise InvalidModel(f"{what} {tensor.name!r} carries values in a field its dtype does not use")
    values = getattr(tensor, field)
    if len(values) != count * per_element:
        raise InvalidModel(f"{what} {tensor.name!r} declares {count} elements but carries {len(values)} values")
    if bounds is not None and len(values) and not bounds[0] <= min(values) <= max(values) <= bounds[1]:
        raise InvalidModel(f"{what} {tensor.name!r} holds values outside its dtype's range")


def _validate_node(node: NodeProto, default_opset: int | None, limits: SandboxLimits) -> None:
    if not node.op_type:
        raise InvalidModel("a node has no op type")
    if default_opset is not None and node.domain in ("", "ai.onnx"):
        try:
            schema = onnx.defs.get_schema(node.op_type, default_opset, "")
        except onnx.defs.SchemaError:
            raise InvalidModel(f"unknown op {node.op_type} (opset {default_opset})") from None
        if not schema.min_input <= len(node.input) <= schema.max_input:
            raise InvalidModel(f"{node.op_type} has {len(node.input)} inputs")
        if not schema.min_output <= len(node.output) <= schema.max_output:
            raise InvalidModel(f"{node.op_type} has {len(node.output)} outputs")
    attribute_names: set[str] = set()
    for attr in node.attribute:
        if not attr.name or attr.name in attribute_names:
            raise InvalidModel(f"{node.op_type} has an empty or repeated attribute name {attr.name!r}")
        attribute_names.add(attr.name)
        if attr.type not in _ATTRIBUTE_TYPES:
            raise InvalidModel(f"{node.op_type} attribute {attr.name!r} has an unknown type {attr.type}")
        if attr.HasField("t"):
            validate_tensor(attr.t, limits, f"{node.op_type} attribute")
        for t in attr.tensors:
            validate_tensor(t, limits, f"{node.op_type} attribute")


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
        return self.size * _ITEMSIZE.get(self.dtype, 8)


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


# Initializers of at least this many bytes lose their values in `skeleton`, except 0-D and 1-D int32/int64
# tensors: ONNX's data propagation reads any of those (Add, Mul, Concat, Gather of shape values). Its
# shape-inference functions read the values of shape parameters only (Reshape/Expand shapes, Slice and Pad
# lists, axes, scales, Range and TopK scalars): at most 2 x max_rank int64 (128 bytes at max_rank 8). A read
# of a stripped tensor fails ("data size mismatch"): a refusal, the same on every node, never another shape.
SKELETON_MIN_BYTES = 256
PROPAGATED_TYPES = frozenset({TensorProto.INT32, TensorProto.INT64})


def strippable(init: TensorProto) -> bool:
    """Whether `skeleton` drops the values of this (raw, size-checked) initializer."""
    if not init.HasField("raw_data") or (init.data_type in PROPAGATED_TYPES and len(init.dims) <= 1):
        return False
    return initializer_type(init).nbytes >= SKELETON_MIN_BYTES


def skeleton(model: ModelProto) -> ModelProto:
    """A copy of `model` whose large initializers keep their name, dtype and dims but not their values
    (`raw_data` set empty): what shape inference needs. Inference of a 100 MB model otherwise serializes and
    parses every weight again (most of the registration check's time went there). A rule that read such
    values fails on the empty payload, a refusal the same on every node, never a different shape."""
    probe = ModelProto()
    _copy_fields(model, probe, skip="graph")
    _copy_fields(model.graph, probe.graph, skip="initializer")
    for init in model.graph.initializer:
        copy = probe.graph.initializer.add()
        if strippable(init):
            _copy_fields(init, copy, skip="raw_data")
            copy.raw_data = b""
        else:
            copy.CopyFrom(init)
    return probe


def _copy_fields(src: Message, dst: Message, skip: str) -> None:
    """Copy every field of `src` but `skip` into the empty message `dst`, without reading `skip`."""
    for field in src.DESCRIPTOR.fields:
        name = field.name
        if name == skip:
            continue
        if field.is_repeated:
            if len(getattr(src, name)):
                getattr(dst, name).extend(getattr(src, name))
        elif src.HasField(name):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(dst, name).CopyFrom(getattr(src, name))
            else:
                setattr(dst, name, getattr(src, name))


def infer_types(model: ModelProto) -> TypeTable:
    """Types of every tensor by strict ONNX shape inference with data propagation.

    The model's own value_info and declared output shapes are ignored (they are untrusted claims); the
    result holds what the graph computes from its pinned inputs. `ai.onnx.ml` ops, whose batch dimension ONNX
    loses, get their shapes from `ops.ML_OPS` and inference runs again from them (once per such op at most).
    Raises InvalidModel on any inference error.
    """
    probe = skeleton(model)
    del probe.graph.value_info[:]
    for value in probe.graph.output:
        # Declared output shapes are claims, not facts: infer them, the checker compares.
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    ml_nodes = sum(1 for n in probe.graph.node if n.domain == ML_DOMAIN)
    for _ in range(ml_nodes + 1):
        table = _infer_once(probe)
        ruled = _ml_shapes(probe, table)
        if not ruled:
            return table
        outputs = {o.name: o for o in probe.graph.output}
        for name, t in ruled.items():
            typed = onnx.helper.make_tensor_type_proto(NAME_TO_ONNX[t.dtype], list(t.shape or ()))
            if name in outputs:
                outputs[name].type.CopyFrom(typed)
            else:
                probe.graph.value_info.append(onnx.helper.make_value_info(name, typed))
    return table


def _infer_once(probe: ModelProto) -> TypeTable:
    with library_verdict("shape inference"):
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True, data_prop=True)
    g = inferred.graph
    table: TypeTable = {}
    for init in g.initializer:
        table[init.name] = initializer_type(init)
    for value in (*g.input, *g.value_info, *g.output):
        vt = _type_of(value)
        if vt is not None and value.name not in table:
            table[value.name] = vt
    return table


def _ml_shapes(model: ModelProto, table: TypeTable) -> dict[str, TensorType]:
    """Static types, by `ops.ML_OPS`, of the `ai.onnx.ml` outputs inference left without one (their input 0
    must be static already: the rule of an op that follows another one waits for the next round). A wrong
    rule cannot pass registration: the golden runs compare ORT's real outputs with the declared shapes."""
    ruled: dict[str, TensorType] = {}
    for node in model.graph.node:
        entry = ML_OPS.get(node.op_type) if node.domain == ML_DOMAIN else None
        x = table.get(node.input[0]) if entry is not None and node.input else None
        if entry is None or x is None or x.shape is None:
            continue
        outputs = [o for o in node.output if o and (o not in table or table[o].shape is None)]
        if not outputs:
            continue
        rows = x.shape[0] if len(x.shape) == 2 else 1
        attrs = {a.name: a for a in node.attribute}
        kind = entry[1]
        if kind is MlShape.SAME:
            for name in outputs:
                ruled[name] = TensorType("float32", x.shape)
        elif kind is MlShape.FEATURES:
            indices = table.get(node.input[1]) if len(node.input) > 1 else None
            if indices is not None and indices.shape is not None:
                ruled[node.output[0]] = TensorType(x.dtype, (*x.shape[:-1], indices.size))
        elif kind is MlShape.MAPPED:
            values = "int64" if "values_int64s" in attrs else "float32" if "values_floats" in attrs else ""
            if values:
                ruled[node.output[0]] = TensorType(values, x.shape)
        elif kind is MlShape.SVM_CLASSES:
            ints, strings = attrs.get("classlabels_ints"), attrs.get("classlabels_strings")
            classes = len(ints.ints) if ints is not None else len(strings.strings) if strings is not None else 0
            vectors = sum(attrs["vectors_per_class"].ints) if "vectors_per_class" in attrs else 0
            probabilities = "prob_a" in attrs and len(attrs["prob_a"].floats) > 0
            scores = classes if probabilities or vectors <= 0 else classes * (classes - 1) // 2 if classes > 2 else 2
            if node.output[0] and classes:  # string labels get their type, refused by the dtype rule
                ruled[node.output[0]] = TensorType("int64" if ints is not None else "string", (rows,))
            if len(node.output) > 1 and node.output[1] and classes:
                ruled[node.output[1]] = TensorType("float32", (rows, scores))
        elif kind is MlShape.TARGETS:
            targets = next((int(attrs[n].i) for n in ("n_targets", "targets") if n in attrs), 1)
            if targets >= 1:
                ruled[node.output[0]] = TensorType("float32", (rows, targets))
        else:
            ints, strings = attrs.get("classlabels_ints") or attrs.get("classlabels_int64s"), \
                attrs.get("classlabels_strings")
            classes = len(ints.ints) if ints is not None else len(strings.strings) if strings is not None else 0
            if ints is not None and node.output[0]:
                ruled[node.output[0]] = TensorType("int64", (rows,))
            if len(node.output) > 1 and node.output[1] and classes:
                ruled[node.output[1]] = TensorType("float32", (rows, classes))
    return {name: t for name, t in ruled.items()
            if t.dtype in NAME_TO_ONNX and (name not in table or table[name].shape is None)}


def iter_graph_attributes(node: NodeProto) -> Iterator[AttributeProto]:
    for attr in node.attribute:
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) or attr.HasField("g") or len(attr.graphs):
            yield attr


def has_external_data(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def node_inputs(node: NodeProto) -> Iterable[str]:
    """Names of the node's present inputs (optional inputs are given as "")."""
    return (name for name in node.input if name)


INDEXED_OPS = frozenset({"Gather", "GatherElements"})


def find_index_inputs(model: ModelProto) -> tuple[tuple[str, int], ...]:
    """Graph inputs read as Gather/GatherElements indices, each with its bound n (valid: -n <= i < n).

    The bound is the indexed axis of the data operand, read from its declaration (an initializer's dims or
    a graph input's pinned shape), so no shape inference is needed. The checker only accepts run-time
    indices that come straight from a graph input into such data, and the executor checks them before
    each run: an out-of-range index is our own verdict, never an error inside ONNX Runtime.
    """
    g = model.graph
    inputs = {v.name for v in g.input}
    dims: dict[str, tuple[int, ...]] = {i.name: tuple(int(d) for d in i.dims) for i in g.initializer}
    for value in g.input:
        if value.type.HasField("tensor_type"):
            dims[value.name] = tuple(int(d.dim_value) for d in value.type.tensor_type.shape.dim)
    bounds: dict[str, int] = {}
    for node in g.node:
        if node.op_type not in INDEXED_OPS or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        indices, shape = node.input[1], dims.get(node.input[0])
        if indices not in inputs or not shape:
            continue
        axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
        if -len(shape) <= axis < len(shape):
            bound = shape[axis]
            bounds[indices] = min(bound, bounds.get(indices, bound))
    return tuple(sorted(bounds.items()))


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
