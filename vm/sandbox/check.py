"""The chain-side model checker: `validate_model(bytes, spec) -> ModelInfo`, or InvalidModel with one line.

Every validator reaches the same verdict from the bytes, the spec and the pinned onnx/onnxruntime versions:
cheap byte and structure rules first (so hostile inputs are refused before any expensive step), then ONNX's
checker, strict static shape inference with the caps, the canonical-form check (the chain never rewrites:
the bytes must equal their canonicalization), the class rules, the static price, and finally ORT must be able
to build a session from the bytes. docs/sandbox.md lists the rules.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import ModelProto, NodeProto, numpy_helper

from core.errors import InvalidModel, LocalFault
from core.hashing import sha256
from vm.sandbox.canonicalize import canonicalize_proto, serialize
from vm.sandbox.graph import (
    INDEXED_OPS,
    NAME_TO_ONNX,
    TensorType,
    TypeTable,
    dtype_name,
    find_foldable,
    has_external_data,
    infer_types,
    initializer_type,
    iter_graph_attributes,
    library_verdict,
    node_inputs,
    one_line,
    parse_model,
)
from vm.sandbox.limits import SandboxLimits
from vm.sandbox.meter import MeterReport, meter_graph
from vm.sandbox.mlrules import validate_ml_node
from vm.sandbox.ops import (
    BIT_EXACT_OPS,
    CANONICALIZED_OPS,
    CONSTANT_INPUTS,
    CONTROL_FLOW_OPS,
    DISCONTINUOUS_ON_FLOAT,
    FLOAT_SCALE_SLOTS,
    ML_DECISIONS,
    ML_DOMAIN,
    ML_FLOAT_LABELS,
    ML_OPS,
    ML_OPSETS,
    PRICED_OPS,
    QUANTIZED_OPERANDS,
    RANDOM_OPS,
    TRAINING_OPS,
)
from vm.sandbox.spec import (
    ALLOWED_DTYPES,
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    ArraySpec,
    CompareMode,
    ModelInfo,
    ModelSpec,
)

_CONTRIB_DOMAINS = frozenset({"com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental", "ai.onnx.contrib"})


def validate_model(model_bytes: bytes, spec: ModelSpec) -> ModelInfo:
    """Accept canonical model bytes that obey every registration rule for `spec`; else raise InvalidModel.

    Total: for any bytes and any spec the outcome is a ModelInfo or InvalidModel with one bounded line
    (a LocalFault only when this node runs out of memory). Any other exception is a bug in the checker.
    """
    return validate_model_session(model_bytes, spec)[0]


def validate_model_session(model_bytes: bytes, spec: ModelSpec) -> tuple[ModelInfo, Any]:
    """`validate_model`, also returning the pinned ORT session the check built (the registration's golden
    inputs run on it, in the same job: no second hand-off of the bytes, no second session)."""
    try:
        return _validate_model(model_bytes, spec)
    except InvalidModel as exc:  # names quoted in a message can be long: the verdict stays one short line
        raise InvalidModel(one_line(exc)) from None


def _validate_model(model_bytes: bytes, spec: ModelSpec) -> tuple[ModelInfo, Any]:
    limits = spec.limits
    validate_spec(spec)
    model = parse_model(model_bytes, limits)
    _validate_structure(model, limits)
    _validate_initializers(model, limits)
    _validate_io(model, spec)
    with library_verdict("ill-formed graph: onnx's checker"):
        # The bytes `model` was parsed from, unchanged: serializing the model again would copy every weight.
        onnx.checker.check_model(bytes(model_bytes))
    types = infer_types(model)
    _validate_static(model, types, limits)
    _validate_canonical(model_bytes, model, types, spec)
    _validate_node_rules(model, types, limits)
    _validate_class(model, types, spec.model_class)
    report = meter_graph(model, types, limits.gas)
    if report.macs > limits.max_macs:
        raise InvalidModel(f"model needs {report.macs} MACs per call, over the cap of {limits.max_macs}")
    if report.gas > limits.max_gas_per_call:
        raise InvalidModel(f"model costs {report.gas} gas per call, over the cap of {limits.max_gas_per_call}")
    session = _validate_runtime_accepts(model_bytes)
    return _info(model_bytes, model, types, spec, report), session


def validate_spec(spec: ModelSpec) -> None:
    """Registration metadata rules: IO declarations, class, grid exponent and protocol minimum tolerances."""
    limits = spec.limits
    if not isinstance(spec.model_class, CompareMode):
        raise InvalidModel(f"unknown model class {spec.model_class!r}")
    if not spec.inputs or len(spec.inputs) > limits.max_inputs:
        raise InvalidModel(f"a model declares 1 to {limits.max_inputs} inputs")
    names = [t.name for t in spec.inputs]
    if len(set(names)) != len(names):
        raise InvalidModel("input names must be unique")
    for t in spec.inputs:
        if len(t.shape) > limits.max_rank:
            raise InvalidModel(f"input {t.name!r} has rank {len(t.shape)}, over the cap of {limits.max_rank}")
        if t.size > limits.max_tensor_elements or t.nbytes > limits.max_tensor_bytes:
            raise InvalidModel(f"input {t.name!r} is over the tensor cap")
    k, tol = spec.grid_k, spec.tolerance
    if spec.model_class is CompareMode.EXACT:
        if k != 0 or tol.t_abs != 0 or tol.t_rel_ppm != 0:
            raise InvalidModel("an exact model declares no grid and no tolerance")
        return
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= limits.max_grid_k:
        raise InvalidModel(f"grid exponent k must be an int in [0, {limits.max_grid_k}]")
    if tol.t_abs < limits.min_t_abs(k):
        raise InvalidModel(f"t_abs {tol.t_abs} is below the protocol minimum {limits.min_t_abs(k)} for k={k}")
    if not limits.min_t_rel_ppm <= tol.t_rel_ppm <= limits.max_t_rel_ppm:
        raise InvalidModel(
            f"t_rel_ppm {tol.t_rel_ppm} is outside [{limits.min_t_rel_ppm}, {limits.max_t_rel_ppm}]"
        )


def _op_name(node: NodeProto) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain else node.op_type


def _validate_structure(model: ModelProto, limits: SandboxLimits) -> None:
    if not limits.min_ir_version <= model.ir_version <= limits.max_ir_version:
        raise InvalidModel(
            f"IR version {model.ir_version} outside [{limits.min_ir_version}, {limits.max_ir_version}]"
        )
    if len(model.functions):
        raise InvalidModel("model-local functions are not allowed")
    if len(model.training_info):
        raise InvalidModel("training info is not allowed")
    domains: dict[str, int] = {}
    for opset_id in model.opset_import:
        domain = "" if opset_id.domain == "ai.onnx" else opset_id.domain
        if domain in domains:
            raise InvalidModel(f"opset domain {domain or 'ai.onnx'!r} is imported twice")
        domains[domain] = int(opset_id.version)
        if domain in _CONTRIB_DOMAINS:
            raise InvalidModel(f"contrib domain {domain!r} is not allowed")
        if domain == ML_DOMAIN:
            if int(opset_id.version) not in ML_OPSETS:
                raise InvalidModel(f"ai.onnx.ml opset {opset_id.version} outside [{ML_OPSETS[0]}, {ML_OPSETS[-1]}]")
            continue
        if domain != "":
            raise InvalidModel(f"custom domain {domain!r} is not allowed")
    if "" not in domains:
        raise InvalidModel("model imports no default ONNX opset")
    if not limits.min_opset <= domains[""] <= limits.max_opset:
        raise InvalidModel(f"opset {domains['']} outside [{limits.min_opset}, {limits.max_opset}]")
    g = model.graph
    if len(g.node) > limits.max_nodes:
        raise InvalidModel(f"graph has {len(g.node)} nodes, over the cap of {limits.max_nodes}")
    if len(g.initializer) > limits.max_initializers:
        raise InvalidModel(f"graph has {len(g.initializer)} initializers, over the cap of {limits.max_initializers}")
    if len(g.sparse_initializer):
        raise InvalidModel("sparse initializers are not allowed")
    for node in g.node:
        if node.domain in _CONTRIB_DOMAINS:
            raise InvalidModel(f"contrib op {_op_name(node)} is not allowed")
        op = node.op_type
        if node.domain == ML_DOMAIN and ML_DOMAIN in domains:
            if op == "ZipMap":
                raise InvalidModel("ai.onnx.ml.ZipMap outputs maps, not tensors: export with zipmap=False")
            if op not in ML_OPS:
                raise InvalidModel(f"op {_op_name(node)} has no price")
        elif node.domain not in ("", "ai.onnx"):
            raise InvalidModel(f"custom op {_op_name(node)} is not allowed")
        priced = op in ML_OPS if node.domain == ML_DOMAIN else op in PRICED_OPS
        if op in CONTROL_FLOW_OPS or any(True for _ in iter_graph_attributes(node)):
            raise InvalidModel(f"control flow op {op} is not allowed")
        if op in RANDOM_OPS:
            raise InvalidModel(f"random op {op} is not allowed")
        if op in TRAINING_OPS:
            raise InvalidModel(f"training-only op {op} is not allowed")
        if op in CANONICALIZED_OPS:
            raise InvalidModel(f"not canonical: {op} must be rewritten by the canonicalizer")
        if not priced:
            raise InvalidModel(f"op {op} has no price")
        for attr in node.attribute:
            tensor_attr = attr.HasField("t") or len(attr.tensors) or attr.HasField("sparse_tensor")
            if tensor_attr or attr.ref_attr_name:
                allowed = op == "ConstantOfShape" and attr.name == "value" and not has_external_data(attr.t)
                if not allowed:
                    raise InvalidModel(f"{op}: tensor attribute {attr.name!r} is not allowed")


def _validate_initializers(model: ModelProto, limits: SandboxLimits) -> None:
    """Initializers must carry exactly the bytes their dims declare, as raw data, in an allowed dtype."""
    total = 0
    for init in model.graph.initializer:
        if has_external_data(init):
            raise InvalidModel(f"external data is not allowed (initializer {init.name!r})")
        dtype = dtype_name(init.data_type)
        if dtype not in ALLOWED_DTYPES:
            raise InvalidModel(f"initializer {init.name!r} has dtype {dtype}, which is not allowed")
        if len(init.dims) > limits.max_rank or any(d < 0 for d in init.dims):
            raise InvalidModel(f"initializer {init.name!r} has an invalid shape")
        t = initializer_type(init)
        if not init.HasField("raw_data"):
            raise InvalidModel(f"not canonical: initializer {init.name!r} is not in raw form")
        # Its length equals t.nbytes: graph.validate_tensor checked it when the model was parsed.
        total += t.nbytes
    if total > limits.max_parameter_bytes:
        raise InvalidModel(f"parameters take {total} bytes, over the cap of {limits.max_parameter_bytes}")


def _io_type(value: onnx.ValueInfoProto, what: str) -> tuple[str, tuple[int, ...]]:
    t = value.type
    if not t.HasField("tensor_type"):
        kind = t.WhichOneof("value") or "untyped"
        raise InvalidModel(f"{what} {value.name!r} is a {kind}, not a tensor")
    dtype = dtype_name(t.tensor_type.elem_type)
    if dtype not in ALLOWED_DTYPES:
        raise InvalidModel(f"{what} {value.name!r} has dtype {dtype}, which is not allowed")
    if not t.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in t.tensor_type.shape.dim):
        raise InvalidModel(f"{what} {value.name!r} has a shape that is not static")
    return dtype, tuple(int(d.dim_value) for d in t.tensor_type.shape.dim)


def _validate_io(model: ModelProto, spec: ModelSpec) -> None:
    g = model.graph
    limits = spec.limits
    if not 1 <= len(g.output) <= limits.max_outputs:
        raise InvalidModel(f"a model has 1 to {limits.max_outputs} outputs")
    init_names = {i.name for i in g.initializer}
    for value in g.input:
        if value.name in init_names:
            raise InvalidModel(f"input {value.name!r} is also an initializer")
    declared = [ArraySpec(v.name, *_io_type(v, "input")) for v in g.input]
    if tuple(declared) != spec.inputs:
        raise InvalidModel(
            f"model inputs {_describe(declared)} differ from the declared inputs {_describe(spec.inputs)}"
        )
    names = [o.name for o in g.output]
    if len(set(names)) != len(names) or any(not n for n in names):
        raise InvalidModel("output names must be unique and non-empty")
    for value in g.output:
        _io_type(value, "output")


def _describe(specs: tuple[ArraySpec, ...] | list[ArraySpec]) -> str:
    return ", ".join(f"{t.name}:{t.dtype}{list(t.shape)}" for t in specs)


def _validate_static(model: ModelProto, types: TypeTable, limits: SandboxLimits) -> None:
    """Every computed tensor has an allowed dtype and a static shape within the tensor caps."""
    for value in model.graph.output:
        t = types.get(value.name)
        declared = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        if t is None or t.shape is None:
            raise InvalidModel(f"output {value.name!r} has no static shape")
        if t.shape != declared or t.dtype != dtype_name(value.type.tensor_type.elem_type):
            raise InvalidModel(
                f"output {value.name!r} is declared {list(declared)} but computes {t.dtype}{list(t.shape)}"
            )
    total = 0
    for node in model.graph.node:
        for name in node.output:
            if not name:
                continue
            t = types.get(name)
            if t is None or t.shape is None:
                raise InvalidModel(f"tensor {name!r} ({node.op_type}) has no static shape")
            if t.dtype not in ALLOWED_DTYPES:
                raise InvalidModel(f"tensor {name!r} ({node.op_type}) has dtype {t.dtype}, which is not allowed")
            if len(t.shape) > limits.max_rank:
                raise InvalidModel(f"tensor {name!r} ({node.op_type}) has rank {len(t.shape)}, over the cap")
            if t.size > limits.max_tensor_elements or t.nbytes > limits.max_tensor_bytes:
                raise InvalidModel(
                    f"tensor {name!r} ({node.op_type}) has shape {list(t.shape)}, over the tensor cap"
                )
            total += t.nbytes
    if total > limits.max_activation_bytes:
        raise InvalidModel(f"activations take {total} bytes, over the cap of {limits.max_activation_bytes}")


def _validate_canonical(model_bytes: bytes, model: ModelProto, types: TypeTable, spec: ModelSpec) -> None:
    foldable = find_foldable(model, types, spec.limits)
    if foldable:
        node = model.graph.node[foldable[0]]
        raise InvalidModel(f"not canonical: constant node {node.op_type} -> {node.output[0]!r} must be folded")
    # Canonicalized in place, not on a copy (a copy of every weight, ~0.7 ns per byte): if the result serializes
    # to `model_bytes` it is `model` unchanged (a message is determined by its serialization), and the later
    # rules read it as parsed; if not, the model is refused and never read again.
    canonical = serialize(canonicalize_proto(model, spec.input_shapes, spec.limits, allow_eval=False))
    if canonical != bytes(model_bytes):
        raise InvalidModel("not canonical: bytes differ from their canonical form (run the canonicalizer)")


def _constant(model: ModelProto, name: str) -> onnx.TensorProto | None:
    return next((i for i in model.graph.initializer if i.name == name), None)


def _validate_node_rules(model: ModelProto, types: TypeTable, limits: SandboxLimits) -> None:
    """Op-specific rules that keep every allowed op total and identical across CPUs."""
    for node in model.graph.node:
        op = node.op_type
        if op in ("Div", "Mod") and types[node.input[0]].dtype in INTEGER_DTYPES:
            # Integer division by 0 fails and INT_MIN / -1 kills the process (SIGFPE): divisors are constants.
            divisor = _constant(model, node.input[1])
            if divisor is None:
                raise InvalidModel(f"integer {op} needs a constant divisor")
            values = numpy_helper.to_array(divisor)
            if (values == 0).any() or (values.dtype.kind == "i" and (values == -1).any()):
                raise InvalidModel(f"integer {op} divisor must not contain 0 or -1")
        if op == "Pow" and any(types[name].dtype in INTEGER_DTYPES for name in node_inputs(node)):
            # ORT computes integer Pow through doubles: overflowing casts differ between CPU families.
            raise InvalidModel("integer Pow is not allowed")
        slots = QUANTIZED_OPERANDS.get(op)
        if slots is not None:
            for operand, zero_point in slots:
                for index in (operand, zero_point):
                    if index < len(node.input) and node.input[index]:
                        dtype = types[node.input[index]].dtype
                        if dtype != "uint8":
                            raise InvalidModel(f"{op} operand {node.input[index]!r} is {dtype}; it must be uint8")
            weight_index = slots[1][0]
            if op in ("MatMulInteger", "QLinearMatMul"):
                shape = types[node.input[0]].shape
                k = shape[-1] if shape else 1
            else:
                w_shape = types[node.input[weight_index]].shape or ()
                k = 1
                for d in w_shape[1:]:
                    k *= d
            if k > limits.max_integer_reduction:
                raise InvalidModel(f"{op} reduces over {k} products, over the cap of {limits.max_integer_reduction}")
        if op == "BatchNormalization":
            training = next((a.i for a in node.attribute if a.name == "training_mode"), 0)
            if training or len([o for o in node.output if o]) != 1:
                raise InvalidModel("BatchNormalization in training mode is not allowed")
        if node.domain == ML_DOMAIN:
            validate_ml_node(model, node, types)
            continue
        if op in INDEXED_OPS:
            _validate_indices(model, types, node)
        if op == "PRelu" and not _broadcasts_to(types[node.input[1]].shape or (), types[node.input[0]].shape or ()):
            # ONNX's shape inference only copies X's shape; ORT then fails on every call (an opset-6 slope of
            # one value per channel, kept by the version converter, does not broadcast from the last axis).
            raise InvalidModel(f"PRelu slope {list(types[node.input[1]].shape or ())} does not broadcast to "
                               f"{list(types[node.input[0]].shape or ())}")
        for slot in sorted(CONSTANT_INPUTS.get(op, ())):
            if slot < len(node.input) and node.input[slot] and _constant(model, node.input[slot]) is None:
                raise InvalidModel(f"{op} input {slot} must be a constant")
        if op == "Resize":
            _validate_resize(model, node, types)
        if op == "LRN":
            # ORT's kernel refuses (a generic failure, so a local fault) an even or non-positive window and
            # non-positive alpha or beta: refused here first, as a verdict.
            size = next((int(a.i) for a in node.attribute if a.name == "size"), 0)
            if size < 1 or size % 2 == 0 or _attr_f(node, "alpha", 1e-4) <= 0 or _attr_f(node, "beta", 0.75) <= 0:
                raise InvalidModel("LRN needs an odd size >= 1 and positive alpha and beta")


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether `shape` broadcasts to `target` unidirectionally (numpy rules, `target` unchanged)."""
    if len(shape) > len(target):
        return False
    return all(d in (1, t) for d, t in zip(reversed(shape), reversed(target), strict=False))


_RESIZE_STRINGS = {
    "mode": ("nearest", frozenset({"nearest", "linear", "cubic"})),
    "coordinate_transformation_mode": ("half_pixel", frozenset({
        "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_crop_and_resize"})),
    "nearest_mode": ("round_prefer_floor", frozenset({"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})),
    "keep_aspect_ratio_policy": ("stretch", frozenset({"stretch", "not_larger", "not_smaller"})),
}


def _validate_resize(model: ModelProto, node: NodeProto, types: TypeTable) -> None:
    """Resize's string attributes name known modes (ORT fails generically on others), and integers use
    nearest (interpolated integers are rounded from float weights: only nearest keeps them exact)."""
    for name, (default, allowed) in _RESIZE_STRINGS.items():
        if _attr_s(node, name, default) not in allowed:
            raise InvalidModel(f"Resize {name} is not one of {sorted(allowed)}")
    mode = _attr_s(node, "mode", "nearest")
    if types[node.input[0]].dtype in INTEGER_DTYPES and mode != "nearest":
        raise InvalidModel("Resize of integers must use mode 'nearest'")
    if mode != "nearest" and not _interpolation_axes_supported(mode, _resize_unit_axes(model, node, types)):
        # ORT's kernel refuses these at session build with a generic failure (a local fault on every node).
        raise InvalidModel(f"Resize mode {mode!r} interpolates only the inner 2 axes of a 4-D input (or the "
                           "inner 3 of 5-D; linear also any 2-D or 3-D input)")


def _resize_unit_axes(model: ModelProto, node: NodeProto, types: TypeTable) -> tuple[bool, ...]:
    """For each axis of Resize's input, whether its scale is exactly 1 (from the constant scales, else from
    the static output shape: ORT derives scales from sizes as out / in)."""
    scales = _constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scales is not None:
        values = numpy_helper.to_array(scales).reshape(-1)
        return tuple(bool(v == 1.0) for v in values)
    shape_in, shape_out = types[node.input[0]].shape or (), types[node.output[0]].shape or ()
    return tuple(i == o for i, o in zip(shape_in, shape_out, strict=False))


def _interpolation_axes_supported(mode: str, unit: tuple[bool, ...]) -> bool:
    """ORT's ScalesValidation (upsamplebase.h) for 'linear' and 'cubic'."""
    rank = len(unit)
    if mode == "cubic":
        return rank == 2 or (rank == 4 and unit[0] and unit[1])
    return (rank in (2, 3) or (rank == 4 and unit[0] and (unit[1] or unit[3]))
            or (rank == 5 and unit[0] and unit[1]))


def _attr_s(node: NodeProto, name: str, default: str) -> str:
    value = next((a.s for a in node.attribute if a.name == name), None)
    return default if value is None else value.decode("utf-8", "replace")


def _attr_f(node: NodeProto, name: str, default: float) -> float:
    return next((float(a.f) for a in node.attribute if a.name == name), default)


def _validate_indices(model: ModelProto, types: TypeTable, node: NodeProto) -> None:
    """Gather/GatherElements fail inside ONNX Runtime on an index out of range, which the executor could not
    tell from an environment fault. So indices are constants (checked here) or come straight from a graph
    input into declared data (checked by the executor before each run, a verdict of our own)."""
    data, indices = node.input[0], node.input[1]
    shape = types[data].shape or ()
    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
    bound = shape[axis] if -len(shape) <= axis < len(shape) else 0
    constant = _constant(model, indices)
    if constant is not None:
        values = numpy_helper.to_array(constant)
        if values.size and (int(values.min()) < -bound or int(values.max()) >= bound):
            raise InvalidModel(f"{node.op_type} index out of range [-{bound}, {bound})")
        return
    declared = {v.name for v in model.graph.input} | {i.name for i in model.graph.initializer}
    if indices not in {v.name for v in model.graph.input} or data not in declared:
        raise InvalidModel(f"{node.op_type} indices must be a constant, or a graph input indexing a declared "
                           "tensor (an index computed at run time could fail inside the runtime)")


def _is_float(types: TypeTable, name: str) -> bool:
    t = types.get(name)
    return t is not None and t.dtype in FLOAT_DTYPES


def _validate_class(model: ModelProto, types: TypeTable, model_class: CompareMode) -> None:
    g = model.graph
    if model_class is CompareMode.EXACT:
        for value in g.input:
            if _is_float(types, value.name):
                raise InvalidModel(f"exact model has a float input {value.name!r}")
        consumers: dict[str, list[tuple[NodeProto, int]]] = {}
        for node in g.node:
            for i, name in enumerate(node.input):
                consumers.setdefault(name, []).append((node, i))
            for name in node.output:
                if name and _is_float(types, name):
                    raise InvalidModel(f"exact model computes a float tensor {name!r} ({node.op_type})")
        for init in g.initializer:
            if dtype_name(init.data_type) not in FLOAT_DTYPES:
                continue
            for node, slot in consumers.get(init.name, []):
                if slot not in FLOAT_SCALE_SLOTS.get(node.op_type, frozenset()):
                    raise InvalidModel(
                        f"exact model uses float constant {init.name!r} in {node.op_type} (only quantization scales)"
                    )
        return
    read = {name for node in g.node for name in node_inputs(node)} | {o.name for o in g.output}
    exact = _bit_exact_tensors(model)
    for node in g.node:
        op = node.op_type
        float_in = any(_is_float(types, name) for name in node_inputs(node))
        if node.domain == ML_DOMAIN:  # classifiers compute float scores from integer inputs too
            _validate_ml_class(node, exact, read, float_in)
            continue
        if not float_in:
            continue
        if op == "TopK" and not (len(node.output) > 1 and node.output[1] in read):
            continue  # the k largest values are continuous in the input; only their indices jump at ties
        if op == "Shrink" and _attr_f(node, "bias", 0.0) != _attr_f(node, "lambd", 0.5):
            # y jumps by lambd - bias at |x| = lambd: continuous only when bias == lambd (soft shrink).
            raise InvalidModel("tolerant model applies discontinuous Shrink (bias != lambd) to float values")
        if op in DISCONTINUOUS_ON_FLOAT:
            raise InvalidModel(f"tolerant model applies discontinuous {op} to float values")
        if op == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), 0)
            if dtype_name(to) not in FLOAT_DTYPES:
                raise InvalidModel(f"tolerant model casts float values to {dtype_name(to)}")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            raise InvalidModel("tolerant model takes MaxPool indices of float values")


def _bit_exact_tensors(model: ModelProto) -> set[str]:
    """Tensors bit-identical on every CPU: the graph inputs, and the outputs of `BIT_EXACT_OPS` whose inputs
    all are (constants are too). Discontinuous steps on them cannot split honest nodes."""
    g = model.graph
    exact = {v.name for v in g.input} | {i.name for i in g.initializer}
    for node in g.node:
        if node.op_type not in BIT_EXACT_OPS or not all(name in exact for name in node_inputs(node)):
            continue
        if node.op_type in ML_DECISIONS and _attr_s(node, "post_transform", "NONE") != "NONE":
            continue  # a logistic or softmax transform goes through exp, whose last bit differs between libms
        exact.update(o for o in node.output if o)
    return exact


def _validate_ml_class(node: NodeProto, exact: set[str], read: set[str], float_in: bool) -> None:
    """Tolerant rules of the ai.onnx.ml ops on float values: tree decisions and LabelEncoder lookups only on
    bit-exact inputs; no label (an argmax or vote of float scores) from linear or SVM classifiers, no SVM
    probabilities (libsvm's coupling solver stops on a float test), no one-class SVM sign."""
    op = node.op_type
    if op in ML_DECISIONS and float_in and not all(name in exact for name in node_inputs(node)):
        what = "key lookups" if op == "LabelEncoder" else "decisions"
        raise InvalidModel(f"tolerant model applies {op} {what} to computed float values (bit-exact inputs only)")
    if op in ML_FLOAT_LABELS and node.output and node.output[0] in read:
        raise InvalidModel(f"tolerant model reads the label of {op} (discontinuous on float scores): "
                           "commit the probabilities, not the label")
    probabilities = any(a.name == "prob_a" and len(a.floats) for a in node.attribute)
    if op == "SVMClassifier" and probabilities and len(node.output) > 1 and node.output[1] in read:
        raise InvalidModel("tolerant model reads SVMClassifier probabilities: libsvm's pairwise coupling stops on a "
                           "float test and jumps there (by 0.005 for two classes): commit the decision scores "
                           "(export without probability=True)")
    one_class = any(a.name == "one_class" and a.i for a in node.attribute)
    if op == "SVMRegressor" and one_class and node.output[0] in read:
        raise InvalidModel("tolerant model reads a one-class SVMRegressor (the sign of a float score)")


def _validate_runtime_accepts(model_bytes: bytes) -> Any:
    """ORT (pinned) must build a session: a checked model never fails to load later.

    Only ORT's model refusals (a closed list of status types) are a verdict; any other failure to build
    the session is this node's fault.
    """
    from vm.sandbox.errors import RuntimeFault
    from vm.sandbox.session import MODEL_REFUSALS, create_session

    try:
        return create_session(bytes(model_bytes))
    except MODEL_REFUSALS as exc:
        raise InvalidModel(f"runtime refuses the model: {one_line(exc)}") from None
    except LocalFault:
        raise
    except Exception as exc:  # not a refusal of the bytes: memory, threads, files, a runtime bug
        raise RuntimeFault(f"runtime failed to build a session: {type(exc).__name__}: {one_line(exc)}") from None


def _info(model_bytes: bytes, model: ModelProto, types: TypeTable, spec: ModelSpec, report: MeterReport) -> ModelInfo:
    outputs = []
    for value in model.graph.output:
        t: TensorType = types[value.name]
        assert t.shape is not None and t.dtype in NAME_TO_ONNX
        outputs.append(ArraySpec(value.name, t.dtype, t.shape))
    parameter_bytes = sum(initializer_type(i).nbytes for i in model.graph.initializer)
    opset = next(int(op.version) for op in model.opset_import if op.domain in ("", "ai.onnx"))
    return ModelInfo(
        sha256=bytes(sha256(bytes(model_bytes))),
        model_class=spec.model_class,
        inputs=spec.inputs,
        outputs=tuple(outputs),
        opset=opset,
        gas_per_call=report.gas,
        macs=report.macs,
        elementwise_ops=report.elementwise,
        activation_bytes=report.activation_bytes,
        parameter_bytes=parameter_bytes,
        node_count=len(model.graph.node),
        op_histogram=report.op_histogram,
    )
