"""Static metering (docs/design.md §2.9): the gas of one inference, computed from the graph before anything runs.

Shapes come from strict ONNX shape inference with data propagation on the pinned inputs (the model's own
value_info is dropped), so every count below is exact for the run that follows. Per node:

    macs        MatMul family: prod(out) * K;  Gemm: M * N * K;  Conv family: prod(out) * prod(W.shape[1:])
    elementwise element-wise ops: prod(out) * weight;  reductions: prod(in0) * weight;
                pools: prod(out) * prod(kernel_shape) * weight;  views (Reshape...): 0;
                MatMul, Gemm and Conv families: prod(B or W) * weight (each weight read once per call:
                what a matrix-vector product spends its time on)
    bytes       the node's output bytes (activation memory it writes)
    gas         per_node + ceil((macs * per_mac + elementwise + bytes * per_activation_byte) / work_units_per_gas)

and the model's gas per call is per_call + the sum over nodes. An op without a rule has no price and is
refused, as is any node whose output shape is not static.

Loading a model is priced apart (`load_gas`): a session is built from the bytes (its cost grows with the
node count and the file size) and the golden vectors run once, each costing one call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from onnx import ModelProto, NodeProto

from core.errors import InvalidModel
from vm.sandbox.graph import PROPAGATED_TYPES, TensorType, TypeTable, infer_types, parse_model
from vm.sandbox.limits import DEFAULT_LIMITS, GasSchedule, SandboxLimits, load_gas
from vm.sandbox.ops import ML_DOMAIN, ML_OPS, PRICED_OPS, SVM_COUPLING_WEIGHT, SVM_KERNEL_WEIGHT, Cost


@dataclass(frozen=True, slots=True)
class NodeCost:
    index: int
    op_type: str
    macs: int
    elementwise: int
    output_bytes: int
    gas: int


@dataclass(frozen=True, slots=True)
class MeterReport:
    """Per-node costs and totals of one inference (gas includes the per-call base)."""

    nodes: tuple[NodeCost, ...]
    macs: int
    elementwise: int
    activation_bytes: int
    gas: int
    op_histogram: tuple[tuple[str, int], ...]


def _shape(types: TypeTable, name: str, node: NodeProto) -> tuple[int, ...]:
    t = types.get(name)
    if t is None or t.shape is None:
        raise InvalidModel(f"{node.op_type}: tensor {name!r} has no static shape")
    return t.shape


def _prod(dims: Sequence[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _node_work(node: NodeProto, types: TypeTable) -> tuple[int, int]:
    """(macs, elementwise work) of one node."""
    rule = PRICED_OPS.get(node.op_type) if node.domain == "" else None
    if node.domain == ML_DOMAIN and node.op_type in ML_OPS:
        rule = ML_OPS[node.op_type][0]
    if rule is None:
        raise InvalidModel(f"op {node.domain or 'ai.onnx'}.{node.op_type} has no price")
    out = _prod(_shape(types, node.output[0], node))
    if rule.cost is Cost.MATMUL:
        a = _shape(types, node.input[0], node)
        b = _shape(types, node.input[rule.weight_input], node)
        return out * (a[-1] if a else 1), _prod(b) * rule.weight
    if rule.cost is Cost.GEMM:
        a = _shape(types, node.input[0], node)
        b = _shape(types, node.input[1], node)
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return out * k, _prod(b) * rule.weight
    if rule.cost is Cost.CONV:
        w = _shape(types, node.input[rule.weight_input], node)
        return out * _prod(w[1:]), _prod(w) * rule.weight
    if rule.cost is Cost.CONV_TRANSPOSE:
        x = _shape(types, node.input[0], node)
        w = _shape(types, node.input[rule.weight_input], node)
        return _prod(x) * _prod(w[1:]), _prod(w) * rule.weight
    if rule.cost is Cost.EINSUM:
        return _einsum_macs(node, types), 0
    if rule.cost is Cost.ML_LINEAR:
        x = _shape(types, node.input[0], node)
        rows = x[0] if len(x) == 2 else 1
        params = sum(len(a.floats) for a in node.attribute if a.name in ("coefficients", "support_vectors"))
        return rows * params * rule.weight, 0
    if rule.cost is Cost.ML_SVM:
        return _svm_work(node, types, rule.weight)
    if rule.cost is Cost.ML_TREES:
        x = _shape(types, node.input[0], node)
        rows = x[0] if len(x) == 2 else 1
        nodes = next((len(a.ints) for a in node.attribute if a.name == "nodes_nodeids"), 0)
        return 0, rows * nodes * rule.weight
    if rule.cost is Cost.ELEMENTWISE:
        total = sum(_prod(_shape(types, o, node)) for o in node.output if o)
        return 0, total * rule.weight
    if rule.cost is Cost.REDUCE:
        return 0, _prod(_shape(types, node.input[0], node)) * rule.weight
    if rule.cost is Cost.POOL:
        attr = next((x for x in node.attribute if x.name == rule.kernel_attr), None)
        kernel = (list(attr.ints) or [attr.i]) if attr is not None else None
        if not kernel or any(k < 1 for k in kernel):
            raise InvalidModel(f"{node.op_type} needs a positive {rule.kernel_attr}")
        return 0, out * _prod(kernel) * rule.weight
    return 0, 0  # Cost.VIEW


def _svm_work(node: NodeProto, types: TypeTable, loop_weight: int) -> tuple[int, int]:
    """(macs, work) of SVMClassifier/SVMRegressor, per ONNX Runtime's kernel: kernel values against every
    support vector (a GEMM, or RBF's scalar distance loop), the kernel function per value, the dual sums (a
    scalar loop over the coefficients) and, with prob_a, libsvm's pairwise coupling (classes^2 per sweep)."""
    x = _shape(types, node.input[0], node)
    rows = x[0] if len(x) == 2 else 1
    attrs = {a.name: a for a in node.attribute}
    support = len(attrs["support_vectors"].floats) if "support_vectors" in attrs else 0
    coefficients = len(attrs["coefficients"].floats) if "coefficients" in attrs else 0
    vectors = (sum(attrs["vectors_per_class"].ints) if "vectors_per_class" in attrs
               else attrs["n_supports"].i if "n_supports" in attrs else 0)
    kernel = attrs["kernel_type"].s.decode("ascii", "replace") if "kernel_type" in attrs else "LINEAR"
    if not support or vectors <= 0:  # ORT's linear mode: one GEMM of the input by the coefficients
        return rows * coefficients, 0
    macs = 0 if kernel == "RBF" else rows * support
    work = rows * (coefficients + (support if kernel == "RBF" else 0)) * loop_weight
    if kernel != "LINEAR":
        work += rows * vectors * SVM_KERNEL_WEIGHT
    if node.op_type == "SVMClassifier" and "prob_a" in attrs and len(attrs["prob_a"].floats):
        classes = len(attrs["classlabels_ints"].ints) if "classlabels_ints" in attrs else 0
        work += rows * classes * classes * SVM_COUPLING_WEIGHT
    return macs, work


def _einsum_macs(node: NodeProto, types: TypeTable) -> int:
    """The naive loop count of an Einsum: every distinct index letter once, at its size (no ellipsis)."""
    equation = next((x.s.decode("ascii", "replace") for x in node.attribute if x.name == "equation"), "")
    lhs = equation.replace(" ", "").split("->")[0]
    terms = lhs.split(",")
    if "." in equation or len(terms) != len([n for n in node.input if n]):
        raise InvalidModel("Einsum needs an equation without ellipsis, one term per input")
    sizes: dict[str, int] = {}
    for term, name in zip(terms, node.input, strict=True):
        shape = _shape(types, name, node)
        if len(term) != len(shape) or not term.isalpha():
            raise InvalidModel(f"Einsum term {term!r} does not match its input's rank {len(shape)}")
        for letter, dim in zip(term, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), dim)
    return _prod(list(sizes.values()))


def meter_graph(model: ModelProto, types: TypeTable, schedule: GasSchedule) -> MeterReport:
    """Meter a model whose tensor types were inferred by `graph.infer_types` on pinned inputs."""
    costs: list[NodeCost] = []
    for index, node in enumerate(model.graph.node):
        macs, elementwise = _node_work(node, types)
        out_bytes = 0
        for o in node.output:
            if o:
                _shape(types, o, node)
                out_bytes += types[o].nbytes
        work = macs * schedule.per_mac + elementwise + out_bytes * schedule.per_activation_byte
        gas = schedule.per_node + -(-work // schedule.work_units_per_gas)
        costs.append(NodeCost(index, node.op_type, macs, elementwise, out_bytes, gas))
    histogram = Counter(c.op_type for c in costs)
    return MeterReport(
        nodes=tuple(costs),
        macs=sum(c.macs for c in costs),
        elementwise=sum(c.elementwise for c in costs),
        activation_bytes=sum(c.output_bytes for c in costs),
        gas=schedule.per_call + sum(c.gas for c in costs),
        op_histogram=tuple(sorted(histogram.items())),
    )


def meter(
    model_bytes: bytes,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    limits: SandboxLimits = DEFAULT_LIMITS,
) -> MeterReport:
    """Meter model bytes; `input_shapes` pins the inputs first (not needed for canonical models)."""
    model = parse_model(model_bytes, limits)
    if input_shapes is not None:
        for value in model.graph.input:
            if value.name in input_shapes:
                shape = value.type.tensor_type.shape
                shape.Clear()
                for d in input_shapes[value.name]:
                    shape.dim.add().dim_value = int(d)
    return meter_graph(model, infer_types(model), limits.gas)


def node_count(model_bytes: bytes) -> int:
    """Nodes of the model's main graph, from the protobuf alone (no checks); 0 if the bytes do not parse."""
    return check_facts(model_bytes)[0]


def check_facts(model_bytes: bytes) -> tuple[int, int]:
    """(nodes, propagated elements) of the model, from the protobuf alone (no checks; (0, 0) if the bytes do
    not parse): the VM prices a registration check by them before the checker runs. Propagated elements are
    those of the initializers shape inference keeps whole (`graph.strippable`: 0-D and 1-D int32/int64, whose
    values ONNX's data propagation reads element by element, ~340 ns each)."""
    model = ModelProto()
    try:
        model.ParseFromString(model_bytes)
    except Exception:  # protobuf's DecodeError; hostile bytes are refused by the checker, cheaply
        return 0, 0
    elements = 0
    for init in model.graph.initializer:
        if init.data_type in PROPAGATED_TYPES and len(init.dims) <= 1:
            elements += max(0, init.dims[0]) if init.dims else 1
    return len(model.graph.node), elements


__all__ = ["MeterReport", "NodeCost", "TensorType", "check_facts", "load_gas", "meter", "meter_graph", "node_count"]
