"""Client-side canonicalizer run by `inferchain model register` (docs/design.md §2.1); the chain only checks its output.

`canonicalize(bytes, input_shapes)` returns the one canonical form of a model: local functions inlined,
input shapes pinned, Constant nodes and constant subgraphs folded into initializers (with ORT's pinned
kernels), Dropout made Identity, Softmax/LogSoftmax split into ReduceMax/Sub/Exp/ReduceSum/Div(/Log),
int8 operands of integer matrix ops moved to uint8 with zero point +128, dead nodes and unused initializers
and opsets dropped, names/doc strings/metadata/value_info removed, initializers in raw form sorted by name,
graph outputs typed with their inferred static shapes, deterministic serialization. It is idempotent, and on
an already canonical model it evaluates nothing, so the chain's check `bytes == canonicalize(bytes)` never
depends on the CPU it runs on.
"""

from __future__ import annotations

import contextlib
import heapq
import struct
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx.inliner
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from vm.sandbox.graph import (
    NAME_TO_ONNX,
    TypeTable,
    find_foldable,
    has_external_data,
    infer_types,
    iter_graph_attributes,
    library_verdict,
    node_inputs,
    one_line,
    parse_model,
    validate_declared,
)
from vm.sandbox.limits import DEFAULT_LIMITS, SandboxLimits
from vm.sandbox.ops import QUANTIZED_OPERANDS

_MAX_FOLD_ROUNDS = 64
# The first IR version in which an initializer need not also be listed as a graph input.
_IR_INITIALIZERS_NOT_INPUTS = 4
_CONSTANT_ATTRIBUTES = {
    "value": onnx.AttributeProto.TENSOR,
    "value_float": onnx.AttributeProto.FLOAT,
    "value_floats": onnx.AttributeProto.FLOATS,
    "value_int": onnx.AttributeProto.INT,
    "value_ints": onnx.AttributeProto.INTS,
}


def canonicalize(
    model_bytes: bytes,
    input_shapes: Mapping[str, Sequence[int]],
    limits: SandboxLimits = DEFAULT_LIMITS,
) -> bytes:
    """The canonical bytes of a model with its inputs pinned to `input_shapes` (name -> static shape).

    Total like the checker: the canonical bytes, or InvalidModel with one bounded line.
    """
    try:
        model = parse_model(model_bytes, limits)
        return serialize(canonicalize_proto(model, input_shapes, limits, allow_eval=True))
    except InvalidModel as exc:
        raise InvalidModel(one_line(exc)) from None


def serialize(model: ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def canonicalize_proto(
    model: ModelProto,
    input_shapes: Mapping[str, Sequence[int]],
    limits: SandboxLimits,
    *,
    allow_eval: bool,
) -> ModelProto:
    """Rewrite `model` (in place) into canonical form and return it.

    With allow_eval=False (the chain's check) nothing is ever evaluated: a model that still needs constant
    folding raises InvalidModel as not canonical instead.
    """
    model.DiscardUnknownFields()
    _refuse_uncanonicalizable(model)
    if len(model.functions):
        with library_verdict("inlining local functions"):
            model.CopyFrom(onnx.inliner.inline_local_functions(model))
        del model.functions[:]
        validate_declared(model, limits)  # the inlined nodes are new declarations
    _strip(model)
    _pin_inputs(model, input_shapes)
    _constants_to_initializers(model)
    _normalize_initializers(model)
    _dropout_to_identity(model)
    _split_softmax(model)
    _toposort(model)
    _eliminate_dead(model)
    for _ in range(_MAX_FOLD_ROUNDS):
        types = infer_types(model)
        foldable = find_foldable(model, types, limits)
        if not foldable:
            break
        if not allow_eval:
            node = model.graph.node[foldable[0]]
            raise InvalidModel(f"not canonical: constant node {node.op_type} -> {node.output[0]!r} must be folded")
        _fold(model, foldable, types)
        _eliminate_dead(model)
    else:
        raise InvalidModel("constant folding did not converge")
    _uint8_operands(model, types)
    _eliminate_dead(model)
    _finish(model)
    return model


def _refuse_uncanonicalizable(model: ModelProto) -> None:
    if len(model.training_info):
        raise InvalidModel("training info is not allowed")
    g = model.graph
    if len(g.sparse_initializer):
        raise InvalidModel("sparse initializers are not allowed")
    tensors = list(g.initializer)
    nodes = list(g.node)
    for f in model.functions:
        nodes.extend(f.node)
    for node in nodes:
        for attr in iter_graph_attributes(node):
            raise InvalidModel(f"control flow is not allowed: {node.op_type} has subgraph {attr.name!r}")
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
        tensors.extend(t for a in node.attribute for t in a.tensors)
        if any(a.HasField("sparse_tensor") or len(a.sparse_tensors) for a in node.attribute):
            raise InvalidModel(f"sparse tensor attribute in {node.op_type} is not allowed")
    for t in tensors:
        if has_external_data(t):
            raise InvalidModel(f"external data is not allowed (tensor {t.name!r})")
        if t.data_type == TensorProto.STRING:
            raise InvalidModel(f"string tensors are not allowed ({t.name!r})")


def _strip(model: ModelProto) -> None:
    for name in ("producer_name", "producer_version", "domain", "doc_string", "model_version"):
        model.ClearField(name)
    del model.metadata_props[:]
    g = model.graph
    g.name = "main"
    g.ClearField("doc_string")
    del g.value_info[:]
    del g.quantization_annotation[:]
    del g.metadata_props[:]
    for node in g.node:
        node.ClearField("name")
        node.ClearField("doc_string")
        del node.metadata_props[:]
        for attr in node.attribute:
            attr.ClearField("doc_string")
        node.attribute.sort(key=lambda a: a.name)
        if node.domain in ("", "ai.onnx"):
            node.ClearField("domain")  # absent, explicit "" and the alias mean the same domain
    for value in (*g.input, *g.output):
        value.ClearField("doc_string")
        del value.metadata_props[:]
        value.type.ClearField("denotation")
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            for dim in value.type.tensor_type.shape.dim:
                dim.ClearField("denotation")
    for init in g.initializer:
        init.ClearField("doc_string")
        del init.metadata_props[:]


def _pin_inputs(model: ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> None:
    g = model.graph
    init_names = {i.name for i in g.initializer}
    real = [v for v in g.input if v.name not in init_names]
    if len(real) != len(g.input) and model.ir_version < _IR_INITIALIZERS_NOT_INPUTS:
        # Before IR 4 an initializer had to be a graph input, and shape inference of such a model takes an
        # initializer's type from its input entry only. The entries go, so the IR version rises first
        # (`_finish` later sets the version the opsets need).
        model.ir_version = _IR_INITIALIZERS_NOT_INPUTS
    del g.input[:]
    g.input.extend(real)
    names = [v.name for v in real]
    missing = [n for n in names if n not in input_shapes]
    unknown = [n for n in input_shapes if n not in names]
    if missing or unknown:
        raise InvalidModel(f"input shapes do not match the model inputs {names}: missing {missing}, unknown {unknown}")
    for value in g.input:
        if not value.type.HasField("tensor_type"):
            raise InvalidModel(f"input {value.name!r} is not a tensor")
        dims = input_shapes[value.name]
        if any(isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0 for d in dims):
            raise InvalidModel(f"input {value.name!r}: shape must be ints >= 0")
        # Rebuilt, not edited: no field of the old type survives with or without presence.
        value.type.CopyFrom(helper.make_tensor_type_proto(value.type.tensor_type.elem_type, [int(d) for d in dims]))


def _constants_to_initializers(model: ModelProto) -> None:
    g = model.graph
    keep: list[NodeProto] = []
    for node in g.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            keep.append(node)
            continue
        if len(node.attribute) != 1:
            raise InvalidModel("Constant node must have exactly one value attribute")
        attr = node.attribute[0]
        value: np.ndarray
        if _CONSTANT_ATTRIBUTES.get(attr.name) != attr.type or (attr.name == "value" and not attr.HasField("t")):
            raise InvalidModel(f"Constant attribute {attr.name!r} is not allowed or does not carry its value")
        if attr.name == "value":
            value = numpy_helper.to_array(attr.t)
        elif attr.name == "value_float":
            value = np.array(attr.f, dtype=np.float32)
        elif attr.name == "value_floats":
            value = np.array(list(attr.floats), dtype=np.float32)
        elif attr.name == "value_int":
            value = np.array(attr.i, dtype=np.int64)
        elif attr.name == "value_ints":
            value = np.array(list(attr.ints), dtype=np.int64)
        else:
            raise InvalidModel(f"Constant attribute {attr.name!r} is not allowed")
        g.initializer.append(numpy_helper.from_array(value, node.output[0]))
    del g.node[:]
    g.node.extend(keep)


# Element types whose raw little-endian bytes numpy reads and writes unchanged (to_array/from_array is the
# identity on them, tests/vm/test_sandbox_check_copies.py); bool and the types numpy has no native form of
# (bfloat16, float8, int4) still take the rebuild.
_RAW_IDENTITY = frozenset({
    TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.INT16,
    TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32,
    TensorProto.UINT64,
})
_BARE_FIELDS = frozenset({"name", "dims", "data_type", "raw_data"})


def _bare(init: TensorProto) -> bool:
    """Whether the tensor sets no field but the ones `numpy_helper.from_array` writes (by presence: reading
    the raw data would copy it)."""
    for field in TensorProto.DESCRIPTOR.fields:
        if field.name in _BARE_FIELDS:
            continue
        if len(getattr(init, field.name)) if field.is_repeated else init.HasField(field.name):
            return False
    return True


def _normalize_initializers(model: ModelProto) -> None:
    """Every initializer in one representation: raw little-endian bytes, no doc string."""
    g = model.graph
    seen: set[str] = set()
    fresh: list[TensorProto] = []
    for init in g.initializer:
        if init.name in seen:
            raise InvalidModel(f"initializer {init.name!r} is defined twice")
        seen.add(init.name)
        if init.data_type in _RAW_IDENTITY and init.HasField("raw_data") and _bare(init):
            fresh.append(init)  # from_array(to_array(init)) would rebuild the same bytes: skip the copy
            continue
        try:
            array = numpy_helper.to_array(init)
        except Exception as exc:  # malformed tensor payloads raise several types
            raise InvalidModel(f"initializer {init.name!r} is malformed: {one_line(exc, 80)}") from None
        fresh.append(numpy_helper.from_array(np.asarray(array, order="C"), init.name))
    if any(new is not old for new, old in zip(fresh, g.initializer, strict=True)):  # else: no copy of the weights
        del g.initializer[:]
        g.initializer.extend(fresh)


def _dropout_to_identity(model: ModelProto) -> None:
    g = model.graph
    init = {i.name: i for i in g.initializer}
    consumed = {name for node in g.node for name in node.input} | {o.name for o in g.output}
    for node in g.node:
        if node.op_type != "Dropout" or node.domain != "":
            continue
        if len(node.input) >= 3 and node.input[2]:
            mode = init.get(node.input[2])
            if mode is None or bool(numpy_helper.to_array(mode).any()):
                raise InvalidModel("Dropout in training mode is not allowed")
        if len(node.output) >= 2 and node.output[1] and node.output[1] in consumed:
            raise InvalidModel("Dropout mask output is not allowed")
        x, y = node.input[0], node.output[0]
        del node.input[:], node.output[:], node.attribute[:]
        node.op_type = "Identity"
        node.input.append(x)
        node.output.append(y)


def _fresh_name(taken: set[str], base: str) -> str:
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _all_names(model: ModelProto) -> set[str]:
    g = model.graph
    names = {v.name for v in (*g.input, *g.output)} | {i.name for i in g.initializer}
    for node in g.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _opset(model: ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise InvalidModel("model imports no default ONNX opset")


def _split_softmax(model: ModelProto) -> None:
    """Softmax/LogSoftmax as primitive ops: their fused ORT kernels differ between CPUs, the pieces do not."""
    g = model.graph
    if not any(n.op_type in ("Softmax", "LogSoftmax") and n.domain == "" for n in g.node):
        return
    opset = _opset(model)
    if opset < 13:
        raise InvalidModel(f"Softmax before opset 13 is not supported (opset {opset})")
    taken = _all_names(model)
    out: list[NodeProto] = []
    for node in g.node:
        if node.op_type not in ("Softmax", "LogSoftmax") or node.domain != "":
            out.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        x, y = node.input[0], node.output[0]
        base = f"{y}/{node.op_type.lower()}"
        axes = _fresh_name(taken, f"{base}/axes")
        g.initializer.append(numpy_helper.from_array(np.array([axis], dtype=np.int64), axes))
        mx, d, e, s = (_fresh_name(taken, f"{base}/{p}") for p in ("max", "sub", "exp", "sum"))
        if opset >= 18:
            out.append(helper.make_node("ReduceMax", [x, axes], [mx], keepdims=1))
        else:
            out.append(helper.make_node("ReduceMax", [x], [mx], axes=[axis], keepdims=1))
        out.append(helper.make_node("Sub", [x, mx], [d]))
        out.append(helper.make_node("Exp", [d], [e]))
        out.append(helper.make_node("ReduceSum", [e, axes], [s], keepdims=1))
        if node.op_type == "Softmax":
            out.append(helper.make_node("Div", [e, s], [y]))
        else:
            log = _fresh_name(taken, f"{base}/log")
            out.append(helper.make_node("Log", [s], [log]))
            out.append(helper.make_node("Sub", [d, log], [y]))
    del g.node[:]
    g.node.extend(out)


def _toposort(model: ModelProto) -> None:
    """Stable topological order (identity on a sorted graph); refuses cycles and undefined inputs."""
    g = model.graph
    nodes = list(g.node)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for o in node.output:
            if not o:
                continue
            if o in producer:
                raise InvalidModel(f"tensor {o!r} is produced twice")
            producer[o] = i
    available = {v.name for v in g.input} | {i.name for i in g.initializer}
    for name in available & producer.keys():
        raise InvalidModel(f"tensor {name!r} is both a graph input/initializer and a node output")
    waiting: list[int] = []
    deps: list[set[int]] = []
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, node in enumerate(nodes):
        need: set[int] = set()
        for name in node_inputs(node):
            if name in producer:
                need.add(producer[name])
            elif name not in available:
                raise InvalidModel(f"node {node.op_type} reads undefined tensor {name!r}")
        deps.append(need)
        for j in need:
            users[j].append(i)
        if not need:
            waiting.append(i)
    heapq.heapify(waiting)
    order: list[int] = []
    while waiting:
        i = heapq.heappop(waiting)
        order.append(i)
        for u in users[i]:
            deps[u].discard(i)
            if not deps[u]:
                heapq.heappush(waiting, u)
    if len(order) != len(nodes):
        raise InvalidModel("graph has a cycle")
    if order != list(range(len(nodes))):
        del g.node[:]
        g.node.extend(nodes[i] for i in order)


def _eliminate_dead(model: ModelProto) -> None:
    """Drop nodes that no graph output needs, then initializers no node reads."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep: list[NodeProto] = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(node_inputs(node))
    keep.reverse()
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    if len(inits) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(inits)


def _fold(model: ModelProto, foldable: list[int], types: TypeTable) -> None:
    """Evaluate foldable nodes with ORT's pinned kernels and replace them by initializers."""
    from vm.sandbox.session import create_session

    g = model.graph
    values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    folded = set(foldable)
    for index in foldable:
        node = g.node[index]
        outputs = [o for o in node.output if o]
        if node.op_type in ("Shape", "Size"):
            shape = types[node.input[0]].shape
            assert shape is not None
            if node.op_type == "Size":
                results = [np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)]
            else:
                start = next((a.i for a in node.attribute if a.name == "start"), 0)
                end = next((a.i for a in node.attribute if a.name == "end"), len(shape))
                results = [np.array(shape[slice(start, end)], dtype=np.int64)]
        else:
            inits = [numpy_helper.from_array(values[name], name) for name in dict.fromkeys(node_inputs(node))]
            out_info = [
                helper.make_tensor_value_info(o, NAME_TO_ONNX[types[o].dtype], types[o].shape) for o in outputs
            ]
            mini = helper.make_model(
                helper.make_graph([node], "fold", [], out_info, initializer=inits),
                opset_imports=list(model.opset_import),
                ir_version=model.ir_version,
            )
            try:
                session = create_session(serialize(mini))
                results = [np.asarray(r) for r in session.run(None, {})]
            except Exception as exc:  # any ORT failure here means the model cannot be canonicalized
                raise InvalidModel(f"cannot fold constant node {node.op_type}: {one_line(exc, 120)}") from None
        for name, value in zip(outputs, results, strict=True):
            values[name] = value
            g.initializer.append(numpy_helper.from_array(np.asarray(value, order="C"), name))
    keep = [n for i, n in enumerate(g.node) if i not in folded]
    del g.node[:]
    g.node.extend(keep)


def _uint8_operands(model: ModelProto, types: TypeTable) -> None:
    """int8 operands of integer matrix ops -> uint8 (w + 128, zero point + 128): exact, and correct on AVX2."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    taken = _all_names(model)
    converted: dict[str, str] = {}

    def shifted(name: str) -> str:
        if name not in converted:
            value = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            new = _fresh_name(taken, f"{name}/u8")
            g.initializer.append(numpy_helper.from_array(value.astype(np.uint8), new))
            converted[name] = new
        return converted[name]

    for node in g.node:
        slots = QUANTIZED_OPERANDS.get(node.op_type)
        if slots is None or node.domain != "":
            continue
        for operand, zero_point in slots:
            if operand >= len(node.input):
                continue
            name = node.input[operand]
            t = types.get(name)
            if t is None or t.dtype != "int8":
                continue
            if name not in inits:
                raise InvalidModel(
                    f"{node.op_type} has a run-time int8 operand {name!r}: activations must be uint8"
                )
            zp = node.input[zero_point] if zero_point < len(node.input) else ""
            if zp and zp not in inits:
                raise InvalidModel(f"{node.op_type} zero point {zp!r} must be a constant")
            node.input[operand] = shifted(name)
            while len(node.input) <= zero_point:
                node.input.append("")
            if zp:
                node.input[zero_point] = shifted(zp)
            else:
                zname = _fresh_name(taken, f"{name}/zero_point/u8")
                g.initializer.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), zname))
                node.input[zero_point] = zname


_VALUE_ATTRIBUTES = frozenset({
    onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING,
    onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS,
})


def _attribute_key(attr: onnx.AttributeProto) -> tuple[object, ...]:
    """What an attribute means: its type and value (floats by their bits: -0.0 is not 0.0)."""
    value = helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.FLOAT:
        value = struct.pack("<f", value)
    elif attr.type == onnx.AttributeProto.FLOATS:
        value = struct.pack(f"<{len(value)}f", *value)
    elif attr.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS):
        value = tuple(value)
    return (attr.type, value)


def _normalize_nodes(model: ModelProto) -> None:
    """One encoding per node meaning: default domain absent, no trailing empty optional inputs or outputs,
    no attribute at its schema default, attribute tensors in raw form without a name, attributes by name."""
    opset = _opset(model)
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx"):
            node.ClearField("domain")
        if node.HasField("overload") and not node.overload:
            node.ClearField("overload")
        while len(node.input) and not node.input[-1]:
            del node.input[-1]
        while len(node.output) and not node.output[-1]:
            del node.output[-1]
        schema = None
        if not node.domain:
            with contextlib.suppress(onnx.defs.SchemaError):  # an unknown op: the checker refuses it
                schema = onnx.defs.get_schema(node.op_type, opset, "")
        kept = []
        for attr in sorted(node.attribute, key=lambda a: a.name):
            if attr.HasField("t"):
                attr.t.CopyFrom(numpy_helper.from_array(np.asarray(numpy_helper.to_array(attr.t), order="C")))
            spec = schema.attributes.get(attr.name) if schema is not None else None
            default = spec.default_value if spec is not None else None
            if (default is not None and attr.type in _VALUE_ATTRIBUTES and default.type == attr.type
                    and not attr.ref_attr_name and _attribute_key(attr) == _attribute_key(default)):
                continue
            kept.append(attr)
        if len(kept) != len(node.attribute) or [a.name for a in node.attribute] != [a.name for a in kept]:
            copies = [onnx.AttributeProto() for _ in kept]
            for copy, attr in zip(copies, kept, strict=True):
                copy.CopyFrom(attr)
            del node.attribute[:]
            node.attribute.extend(copies)


def _finish(model: ModelProto) -> None:
    """Opsets actually used, the matching IR version, one encoding per node, typed outputs, sorted
    initializers."""
    g = model.graph
    _normalize_nodes(model)
    used = {n.domain for n in g.node} | {""}
    imports = sorted(
        ((("" if op.domain == "ai.onnx" else op.domain), int(op.version)) for op in model.opset_import),
        key=lambda p: p[0],
    )
    kept = {d: v for d, v in imports if d in used}
    if "" not in kept:
        raise InvalidModel("model imports no default ONNX opset")
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(kept.items()))
    with contextlib.suppress(ValueError):  # an opset onnx does not know; the checker refuses it
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    types = infer_types(model)
    for value in g.output:
        t = types.get(value.name)
        if t is None or t.shape is None or t.dtype not in NAME_TO_ONNX:
            continue
        value.type.Clear()
        value.type.CopyFrom(helper.make_tensor_type_proto(NAME_TO_ONNX[t.dtype], list(t.shape)))
    g.initializer.sort(key=lambda i: i.name)
