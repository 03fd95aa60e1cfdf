"""Client-side model preparation for `inferchain model register`: upgrade old models, then pre-check the
registration with the chain's own functions before anything is paid for.

`upgrade` takes any model from IR >= 3 and default opset >= 6 into the chain's supported range (onnx's
version converter, plus the repairs it does not make) and lists what it changed; a model it cannot convert is
refused with the op and opset that stopped it. `precheck` runs the VM's registration verdict
(`vm.engine.Engine.resolve_with_limits`: the static metadata rules, the graph checker, the price, the golden
runs) in this process, with the caps and prices the chain publishes. None of this is consensus code: the chain
only checks what it receives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx
import onnx.version_converter
from onnx import ModelProto, helper, numpy_helper

from core.errors import InvalidModel
from core.types import Address, Hash32
from vm.apply import RegisterResolution
from vm.engine import Engine
from vm.execute import RegisterWork
from vm.sandbox.check import validate_model
from vm.sandbox.executor import LocalExecutor
from vm.sandbox.graph import dtype_name, one_line, parse_model
from vm.sandbox.limits import DEFAULT_LIMITS, GasSchedule, SandboxLimits
from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo, ModelSpec, Tolerance
from vm.txs import ModelChunk, ModelMeta, split_model

# The oldest models the client converts: IR 3 (initializers listed as inputs) and opset 6 (pytorch's old
# exports, onnx's backend corpus), with the one repair onnx's converter does not make (PRelu slopes).
MIN_SOURCE_IR = 3
MIN_SOURCE_OPSET = 6
# The opset before PRelu's slope became numpy-broadcast (opset 7): a 1-D slope meant one value per channel.
_PRELU_CHANNEL_SLOPE_OPSET = 7


@dataclass(frozen=True, slots=True)
class Upgraded:
    """A model brought into the chain's range, and a line per change (empty: it was already in range)."""

    model_bytes: bytes
    changes: tuple[str, ...]


def _default_opset(model: ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise InvalidModel("model imports no default ONNX opset")


def upgrade(model_bytes: bytes, limits: SandboxLimits = DEFAULT_LIMITS) -> Upgraded:
    """`model_bytes` converted into [limits.min_opset, limits.max_opset] (InvalidModel, one line, if not)."""
    changes: list[str] = []
    model_bytes = _drop_repeated_opsets(model_bytes, limits, changes)
    model = parse_model(model_bytes, limits)
    if model.ir_version < MIN_SOURCE_IR:
        raise InvalidModel(f"IR version {model.ir_version} is too old to convert (the client converts IR >= 3)")
    opset = _default_opset(model)
    if opset < MIN_SOURCE_OPSET:
        raise InvalidModel(f"opset {opset} is too old to convert (the client converts opset >= {MIN_SOURCE_OPSET})")
    for value in (*model.graph.input, *model.graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type == onnx.TensorProto.STRING:
            raise InvalidModel(f"{value.name!r} is a string tensor: the chain runs numeric tensors only")
    target = min(max(opset, limits.min_opset), limits.max_opset)
    if target != opset:
        if opset < _PRELU_CHANNEL_SLOPE_OPSET:
            changes += _prelu_channel_slopes(model)
        model = _convert(model, opset, target)
        changes.append(f"opset {opset} -> {target} (onnx.version_converter)")
    if model.ir_version > limits.max_ir_version or model.ir_version < limits.min_ir_version:
        ir = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
        ir = max(ir, limits.min_ir_version)
        changes.append(f"IR version {model.ir_version} -> {ir}")
        model.ir_version = ir
    return Upgraded(model.SerializeToString(), tuple(changes))


def _drop_repeated_opsets(model_bytes: bytes, limits: SandboxLimits, changes: list[str]) -> bytes:
    """skl2onnx imports the default domain twice at the same version; one import of it means the same."""
    if len(model_bytes) > limits.max_model_bytes:
        return model_bytes  # parse_model refuses it
    model = ModelProto()
    try:
        model.ParseFromString(bytes(model_bytes))
    except Exception:  # protobuf's DecodeError and friends: parse_model gives the verdict
        return model_bytes
    seen: dict[str, int] = {}
    kept = []
    for op in model.opset_import:
        domain = "" if op.domain == "ai.onnx" else op.domain
        if seen.get(domain) == op.version:
            changes.append(f"repeated import of opset {domain or 'ai.onnx'} {op.version} dropped")
            continue
        seen.setdefault(domain, op.version)
        kept.append(helper.make_opsetid(op.domain, op.version))
    if len(kept) == len(model.opset_import):
        return model_bytes
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model.SerializeToString()


def _convert(model: ModelProto, opset: int, target: int) -> ModelProto:
    try:
        converted = onnx.version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/ConvertError: one line either way
        raise InvalidModel(f"cannot convert opset {opset} -> {target}: {_blocker(model, opset, target, exc)}") from None
    return converted


def _blocker(model: ModelProto, opset: int, target: int, exc: Exception) -> str:
    """The first op (in graph order) that onnx cannot convert alone, with its opset; else onnx's message."""
    try:
        typed = onnx.shape_inference.infer_shapes(model)  # best effort: types for the one-node probes
    except Exception:  # an ill-typed model: probes go without intermediate types
        typed = model
    g = typed.graph
    infos = {v.name: v for v in (*g.input, *g.value_info, *g.output)}
    inits = {i.name: i for i in g.initializer}
    seen: set[tuple[str, str]] = set()
    for node in g.node:
        key = (node.domain, node.op_type)
        if key in seen:
            continue
        seen.add(key)
        ins = [infos.get(n) or helper.make_empty_tensor_value_info(n) for n in node.input if n and n not in inits]
        outs = [infos.get(n) or helper.make_empty_tensor_value_info(n) for n in node.output if n]
        used = [inits[n] for n in dict.fromkeys(node.input) if n in inits]
        probe = helper.make_model(helper.make_graph([node], "probe", ins, outs, used),
                                  opset_imports=list(model.opset_import), ir_version=model.ir_version)
        with contextlib.suppress(Exception):
            onnx.version_converter.convert_version(probe, target)
            continue
        return f"op {node.domain + '.' if node.domain else ''}{node.op_type} (opset {opset}) has no conversion"
    return one_line(exc, 160)


def _prelu_channel_slopes(model: ModelProto) -> list[str]:
    """Opset-6 PRelu: a 1-D slope of C values applies per channel (axis 1). Numpy broadcasting (opset 7 on)
    would apply it on the last axis, and the version converter keeps the shape: reshape it to [C, 1, ...]."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    from vm.sandbox.graph import infer_types

    try:
        types = infer_types(model)
    except InvalidModel:
        return []
    changes = []
    for node in g.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        slope = inits.get(node.input[1])
        x = types.get(node.input[0])
        if slope is None or x is None or x.shape is None or len(slope.dims) != 1 or len(x.shape) < 3:
            continue
        value = numpy_helper.to_array(slope)
        shaped = value.reshape((value.size,) + (1,) * (len(x.shape) - 2))
        slope.CopyFrom(numpy_helper.from_array(shaped, slope.name))
        for entry in g.input:  # before IR 4 the initializer is also a graph input, with its shape
            if entry.name == slope.name:
                entry.type.CopyFrom(helper.make_tensor_type_proto(slope.data_type, list(shaped.shape)))
        changes.append(f"PRelu slope {slope.name!r} reshaped to {list(shaped.shape)} (per channel, as in opset 6)")
    return changes


def check_graph(canonical: bytes, model_class: str, grid_k: int, tol_abs: int, tol_rel_ppm: int,
                limits: SandboxLimits = DEFAULT_LIMITS) -> ModelInfo:
    """The chain's graph checker (`vm.sandbox.validate_model`) on canonical bytes, with the inputs they
    declare: refuses with the chain's own message before the client builds a session or computes anything."""
    model = onnx.load_from_string(canonical)
    inputs = []
    for value in model.graph.input:
        tt = value.type.tensor_type
        inputs.append(ArraySpec(value.name, dtype_name(tt.elem_type), tuple(int(d.dim_value) for d in tt.shape.dim)))
    exact = model_class == "exact"
    spec = ModelSpec(tuple(inputs), CompareMode.EXACT if exact else CompareMode.TOLERANT,
                     0 if exact else grid_k, Tolerance(0, 0) if exact else Tolerance(tol_abs, tol_rel_ppm), limits)
    return validate_model(canonical, spec)


def limits_from_vm_params(vm: Mapping[str, Any] | None) -> SandboxLimits:
    """The sandbox caps and gas prices in a node's published VM parameters (RPC `params` or genesis form);
    the protocol defaults where a node publishes none."""
    if not vm:
        return DEFAULT_LIMITS

    def named(key: str) -> dict[str, int]:
        items = vm.get(key) or {}
        if isinstance(items, list):  # the RPC's form: [{"name": ..., "value": ...}]
            items = {item["name"]: item["value"] for item in items}
        return {str(k): int(v) for k, v in items.items()}

    gas = GasSchedule(**{k: v for k, v in named("gas_schedule").items() if k in GasSchedule.__dataclass_fields__})
    fields = {k: v for k, v in named("sandbox_limits").items() if k in SandboxLimits.__dataclass_fields__}
    return SandboxLimits(**fields, gas=gas)


def _no_registered_models(model_id: Hash32) -> bytes:
    raise LookupError("the pre-check resolves a registration only")


def precheck(canonical: bytes, meta: ModelMeta, limits: SandboxLimits, owner: Address,
             chunks: list[ModelChunk] | None = None) -> RegisterResolution:
    """The chain's registration verdict for these bytes and metadata, computed here: the same engine code
    the VM runs in a block (metadata rules, graph checker, declared outputs, price, golden runs). `chunks`:
    `split_model(canonical, meta)` when the caller has them (splitting hashes the whole model)."""
    chunks = chunks or split_model(canonical, meta)
    work = RegisterWork(0, chunks[0].model_id, owner, meta, canonical, len(chunks), gas_left=2**62)
    engine = Engine(LocalExecutor(), _no_registered_models)
    try:
        resolutions, _ = engine.resolve_with_limits([work], limits)
    finally:
        engine.close()
    resolution = resolutions[0]
    assert isinstance(resolution, RegisterResolution)
    return resolution


def refusal(resolution: RegisterResolution) -> str | None:
    """Why the chain would refuse this registration, or None."""
    if resolution.accepted:
        return None
    return resolution.log or "refused"

