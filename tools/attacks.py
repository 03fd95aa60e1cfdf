"""A corpus of hostile or broken models that registration must refuse, each built on demand as real bytes.

It is the executable form of docs/design.md §2.11 (what registration refuses) and of the attacks measured
in §2.12: tests/vm/test_sandbox_attacks.py checks every entry is refused with its
expected reason, and bench/vm_sandbox.py times each refusal. `expect` is a fragment of the one-line message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import FunctionProto, ModelProto, TensorProto, TrainingInfoProto, helper, numpy_helper

from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.limits import DEFAULT_LIMITS, SandboxLimits
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

F, I64, U8 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8
TOLERANT: dict[str, Any] = {"model_class": CompareMode.TOLERANT, "grid_k": 16, "tolerance": Tolerance(2, 100)}


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    about: str
    build: Callable[[], tuple[bytes, ModelSpec]]
    expect: str


def make_model(
    nodes: Sequence[Any],
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    inits: Sequence[TensorProto] = (),
    *,
    opset: int = 17,
    ir: int = 8,
    extra_opsets: Sequence[tuple[str, int]] = (),
    functions: Sequence[FunctionProto] = (),
) -> ModelProto:
    graph = helper.make_graph(list(nodes), "main", list(inputs), list(outputs), initializer=list(inits))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir, functions=list(functions))


def tensor(name: str, elem: int, shape: Sequence[int | str] | None) -> Any:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def spec(*inputs: tuple[str, str, tuple[int, ...]], limits: SandboxLimits = DEFAULT_LIMITS, **kw: Any) -> ModelSpec:
    args: dict[str, Any] = {"model_class": CompareMode.EXACT, **kw}
    return ModelSpec(tuple(ArraySpec(n, d, s) for n, d, s in inputs), limits=limits, **args)


def canonical(model: ModelProto, model_spec: ModelSpec) -> bytes:
    return canonicalize(model.SerializeToString(), model_spec.input_shapes, model_spec.limits)


def _raw(model: ModelProto) -> bytes:
    return model.SerializeToString()


def _float_spec(shape: tuple[int, ...] = (1, 4), **kw: Any) -> ModelSpec:
    return spec(("x", "float32", shape), **{**TOLERANT, **kw})


def _relu_model(shape: tuple[int, ...] = (1, 4)) -> ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", F, shape)], [tensor("y", F, shape)])


def _canonical_float(nodes: list[Any], out: Any, inits: Sequence[TensorProto] = ()) -> tuple[bytes, ModelSpec]:
    s = _float_spec()
    return canonical(make_model(nodes, [tensor("x", F, (1, 4))], [out], inits), s), s


# ---- builders ------------------------------------------------------------------------------------------


def _random_bytes() -> tuple[bytes, ModelSpec]:
    return np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(), _float_spec()


def _text() -> tuple[bytes, ModelSpec]:
    return b"this is a text file, not an ONNX model\n" * 20, _float_spec()


def _truncated() -> tuple[bytes, ModelSpec]:
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", F, (1, 64))], [tensor("y", F, (1, 64))], [w]
    )
    data = _raw(model)
    return data[: len(data) // 2], _float_spec((1, 64))


def _empty() -> tuple[bytes, ModelSpec]:
    return b"", _float_spec()


def _oversized() -> tuple[bytes, ModelSpec]:
    # A 2 MiB initializer against a 1 MiB cap (the research case was 200 MB against the default cap).
    w = numpy_helper.from_array(np.zeros((512, 1024), np.float32), "w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", F, (1, 512))], [tensor("y", F, (1, 1024))], [w]
    )
    return _raw(model), _float_spec((1, 512), limits=SandboxLimits(max_model_bytes=1 << 20))


def _oversized_garbage() -> tuple[bytes, ModelSpec]:
    return b"\xff" * (2 << 20), _float_spec(limits=SandboxLimits(max_model_bytes=1 << 20))


def _declared_output_2_40() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [tensor("x", F, (2, 2))], [tensor("y", F, (1 << 40, 1 << 40))]
    )
    return _raw(model), _float_spec((2, 2))


def _constant_of_shape_12gb() -> tuple[bytes, ModelSpec]:
    shape = numpy_helper.from_array(np.array([3_000_000_000], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    s = _float_spec()
    return canonical(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [shape]), s), s


def _tile_over_cap() -> tuple[bytes, ModelSpec]:
    reps = numpy_helper.from_array(np.array([1, 1 << 23], np.int64), "reps")
    nodes = [helper.make_node("Tile", ["x", "reps"], ["t"]), helper.make_node("ReduceSum", ["t"], ["y"], keepdims=1)]
    s = _float_spec()
    return canonical(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 1))], [reps]), s), s


def _matmul_30000() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [tensor("a", F, (30000, 30000)), tensor("b", F, (30000, 30000))],
        [tensor("y", F, (30000, 30000))],
    )
    return _raw(model), spec(("a", "float32", (30000, 30000)), ("b", "float32", (30000, 30000)), **TOLERANT)


def _work_over_cap() -> tuple[bytes, ModelSpec]:
    n = 2048
    s = spec(("a", "float32", (n, n)), ("b", "float32", (n, n)), **TOLERANT)
    model = make_model(
        [helper.make_node("Gemm", ["a", "b"], ["y"])], [tensor("a", F, (n, n)), tensor("b", F, (n, n))], [tensor("y", F, (n, n))]
    )
    return canonical(model, s), s


def _activation_cap() -> tuple[bytes, ModelSpec]:
    s = _float_spec((1, 256), limits=SandboxLimits(max_activation_bytes=1500))
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])]
    model = make_model(nodes, [tensor("x", F, (1, 256))], [tensor("y", F, (1, 256))])
    return canonical(model, s), s


def _loop() -> tuple[bytes, ModelSpec]:
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [tensor("i", I64, ()), tensor("c_in", TensorProto.BOOL, ()), tensor("v_in", F, (1, 4))],
        [tensor("c_out", TensorProto.BOOL, ()), tensor("v_out", F, (1, 4))],
    )
    trips = numpy_helper.from_array(np.array(10**12, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    model = make_model(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        [tensor("x", F, (1, 4))],
        [tensor("y", F, (1, 4))],
        [trips, cond],
    )
    return _raw(model), _float_spec()


def _branch(name: str) -> Any:
    return helper.make_graph([helper.make_node("Relu", ["x"], [name])], name, [], [tensor(name, F, (1, 4))])


def _if() -> tuple[bytes, ModelSpec]:
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Less", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=_branch("t"), else_branch=_branch("e")),
    ]
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [zero])), _float_spec()


def _scan() -> tuple[bytes, ModelSpec]:
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_i"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["o"])],
        "body",
        [tensor("s_in", F, (4,)), tensor("x_i", F, (4,))],
        [tensor("s_out", F, (4,)), tensor("o", F, (4,))],
    )
    init = numpy_helper.from_array(np.zeros(4, np.float32), "s0")
    node = helper.make_node("Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1)
    return _raw(make_model([node], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [init])), _float_spec()


def _external_data() -> tuple[bytes, ModelSpec]:
    w = TensorProto()
    w.name, w.data_type = "w", F
    w.dims.extend([4, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/hostname"), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [w])
    return _raw(model), _float_spec()


def _custom_domain() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Foo", ["x"], ["y"], domain="my.custom")],
        [tensor("x", F, (1, 4))],
        [tensor("y", F, (1, 4))],
        extra_opsets=[("my.custom", 1)],
    )
    return _raw(model), _float_spec()


def _contrib_gelu() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        [tensor("x", F, (1, 4))],
        [tensor("y", F, (1, 4))],
        extra_opsets=[("com.microsoft", 1)],
    )
    return _raw(model), _float_spec()


def _custom_op_without_import() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Foo", ["x"], ["y"], domain="my.custom")], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))]
    )
    return _raw(model), _float_spec()


def _random_normal_like() -> tuple[bytes, ModelSpec]:
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])), _float_spec()


def _random_in_function() -> tuple[bytes, ModelSpec]:
    fn = helper.make_function(
        "local.fns",
        "Noisy",
        ["a"],
        ["b"],
        [helper.make_node("RandomNormalLike", ["a"], ["r"]), helper.make_node("Add", ["a", "r"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    model = make_model(
        [helper.make_node("Noisy", ["x"], ["y"], domain="local.fns")],
        [tensor("x", F, (1, 4))],
        [tensor("y", F, (1, 4))],
        extra_opsets=[("local.fns", 1)],
        functions=[fn],
    )
    return _raw(model), _float_spec()


def _dropout_training() -> tuple[bytes, ModelSpec]:
    ratio = numpy_helper.from_array(np.array(0.5, np.float32), "ratio")
    mode = numpy_helper.from_array(np.array(True), "mode")
    model = make_model(
        [helper.make_node("Dropout", ["x", "ratio", "mode"], ["y"])],
        [tensor("x", F, (1, 4))],
        [tensor("y", F, (1, 4))],
        [ratio, mode],
    )
    return _raw(model), _float_spec()


def _training_info() -> tuple[bytes, ModelSpec]:
    model = _relu_model()
    info = TrainingInfoProto()
    info.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))
    model.training_info.append(info)
    return _raw(model), _float_spec()


def _lying_initializer() -> tuple[bytes, ModelSpec]:
    w = TensorProto()
    w.name, w.data_type = "w", F
    w.dims.extend([1_000_000_000])
    w.raw_data = b"\0" * 16
    nodes = [helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
    model = make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [w])
    return _raw(model), _float_spec()


def _node_chain(n: int = 20_000) -> tuple[bytes, ModelSpec]:
    nodes = [helper.make_node("Neg", [f"t{i}" if i else "x"], [f"t{i + 1}" if i < n - 1 else "y"]) for i in range(n)]
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])), _float_spec()


def _string_input() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [tensor("x", TensorProto.STRING, (1, 4))],
        [tensor("y", TensorProto.STRING, (1, 4))],
    )
    return _raw(model), _float_spec()


def _sequence_input() -> tuple[bytes, ModelSpec]:
    seq = helper.make_tensor_sequence_value_info("x", F, (1, 4))
    out = helper.make_tensor_sequence_value_info("y", F, (1, 4))
    return _raw(make_model([helper.make_node("Identity", ["x"], ["y"])], [seq], [out])), _float_spec()


def _zipmap_output() -> tuple[bytes, ModelSpec]:
    labels = numpy_helper.from_array(np.arange(4, dtype=np.int64), "labels")
    out = helper.make_value_info(
        "y", helper.make_sequence_type_proto(helper.make_map_type_proto(I64, helper.make_tensor_type_proto(F, [])))
    )
    node = helper.make_node("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2, 3])
    model = make_model([node], [tensor("x", F, (1, 4))], [out], [labels], extra_opsets=[("ai.onnx.ml", 3)])
    return _raw(model), _float_spec()


def _opset_99() -> tuple[bytes, ModelSpec]:
    model = _relu_model()
    model.opset_import[0].version = 99
    return _raw(model), _float_spec()


def _opset_old() -> tuple[bytes, ModelSpec]:
    return _raw(make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], opset=9, ir=4)), _float_spec()


def _ir_99() -> tuple[bytes, ModelSpec]:
    model = _relu_model()
    model.ir_version = 99
    return _raw(model), _float_spec()


def _dynamic_input() -> tuple[bytes, ModelSpec]:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", F, ("N", 4))], [tensor("y", F, ("N", 4))])
    return _raw(model), _float_spec()


def _dynamic_reshape() -> tuple[bytes, ModelSpec]:
    model = make_model(
        [helper.make_node("Reshape", ["x", "s"], ["y"])],
        [tensor("x", F, (1, 4)), tensor("s", I64, (2,))],
        [tensor("y", F, (1, 4))],
    )
    return _raw(model), spec(("x", "float32", (1, 4)), ("s", "int64", (2,)), **TOLERANT)


def _undefined_input() -> tuple[bytes, ModelSpec]:
    model = make_model([helper.make_node("Add", ["x", "ghost"], ["y"])], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])
    return _raw(model), _float_spec()


def _cycle() -> tuple[bytes, ModelSpec]:
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Neg", ["a"], ["y"])]
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])), _float_spec()


def _produced_twice() -> tuple[bytes, ModelSpec]:
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])), _float_spec()


def _sparse_initializer() -> tuple[bytes, ModelSpec]:
    model = _relu_model()
    values = numpy_helper.from_array(np.ones(1, np.float32), "w")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "w_idx")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    return _raw(model), _float_spec()


def _initializer_shadows_input() -> tuple[bytes, ModelSpec]:
    x = numpy_helper.from_array(np.ones((1, 4), np.float32), "x")
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [x])
    return _raw(model), _float_spec()


def _typed_field_initializer() -> tuple[bytes, ModelSpec]:
    s = _float_spec()
    data = canonical(_relu_model(), s)
    model = ModelProto()
    model.ParseFromString(data)
    model.graph.node.append(helper.make_node("Add", ["y", "w"], ["z"]))
    model.graph.output[0].name = "z"
    model.graph.initializer.append(helper.make_tensor("w", F, [4], [1.0, 2.0, 3.0, 4.0]))
    return _raw(model), s


def _doc_string() -> tuple[bytes, ModelSpec]:
    s = _float_spec()
    model = ModelProto()
    model.ParseFromString(canonical(_relu_model(), s))
    model.doc_string = "innocent"
    return _raw(model), s


def _unsplit_softmax() -> tuple[bytes, ModelSpec]:
    model = make_model([helper.make_node("Softmax", ["x"], ["y"])], [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))])
    return _raw(model), _float_spec()


def _unfolded_constant() -> tuple[bytes, ModelSpec]:
    a = numpy_helper.from_array(np.ones(4, np.float32), "a")
    b = numpy_helper.from_array(np.ones(4, np.float32), "b")
    nodes = [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Mul", ["x", "c"], ["y"])]
    return _raw(make_model(nodes, [tensor("x", F, (1, 4))], [tensor("y", F, (1, 4))], [a, b])), _float_spec()


def _unpinned_output_shape() -> tuple[bytes, ModelSpec]:
    s = _float_spec()
    model = ModelProto()
    model.ParseFromString(canonical(_relu_model(), s))
    model.graph.output[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return _raw(model), s


def _spec_mismatch() -> tuple[bytes, ModelSpec]:
    data = canonical(_relu_model(), _float_spec())
    return data, spec(("x", "float32", (1, 5)), **TOLERANT)


def _tolerance_too_small() -> tuple[bytes, ModelSpec]:
    s = _float_spec()
    return canonical(_relu_model(), s), _float_spec(tolerance=Tolerance(2, 10))


def _exact_float() -> tuple[bytes, ModelSpec]:
    s = spec(("x", "float32", (1, 4)))
    return canonical(_relu_model(), s), s


def _exact_float_inside() -> tuple[bytes, ModelSpec]:
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=F),
        helper.make_node("Mul", ["xf", "scale"], ["h"]),
        helper.make_node("Cast", ["h"], ["y"], to=I64),
    ]
    s = spec(("x", "int64", (1, 4)))
    return canonical(make_model(nodes, [tensor("x", I64, (1, 4))], [tensor("y", I64, (1, 4))], [scale]), s), s


def _tolerant_argmax() -> tuple[bytes, ModelSpec]:
    return _canonical_float([helper.make_node("ArgMax", ["x"], ["y"], axis=1)], tensor("y", I64, (1, 1)))


def _tolerant_float_to_int() -> tuple[bytes, ModelSpec]:
    return _canonical_float([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)], tensor("y", TensorProto.INT32, (1, 4)))


def _tolerant_comparison() -> tuple[bytes, ModelSpec]:
    zero = numpy_helper.from_array(np.zeros(1, np.float32), "zero")
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["c"]),
        helper.make_node("Where", ["c", "x", "zero"], ["y"]),
    ]
    return _canonical_float(nodes, tensor("y", F, (1, 4)), [zero])


def _tolerant_round() -> tuple[bytes, ModelSpec]:
    return _canonical_float([helper.make_node("Round", ["x"], ["y"])], tensor("y", F, (1, 4)))


def _tolerant_quantize() -> tuple[bytes, ModelSpec]:
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zp = numpy_helper.from_array(np.array(0, np.uint8), "zp")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"]),
    ]
    return _canonical_float(nodes, tensor("y", F, (1, 4)), [scale, zp])


def _float16_compute() -> tuple[bytes, ModelSpec]:
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16), helper.make_node("Cast", ["h"], ["y"], to=F)]
    return _canonical_float(nodes, tensor("y", F, (1, 4)))


def _integer_runtime_divisor() -> tuple[bytes, ModelSpec]:
    # INT_MIN / -1 kills ORT with SIGFPE: an integer divisor must be a constant without 0 and -1.
    s = spec(("a", "int32", (1, 4)), ("b", "int32", (1, 4)))
    model = make_model(
        [helper.make_node("Div", ["a", "b"], ["y"])],
        [tensor("a", TensorProto.INT32, (1, 4)), tensor("b", TensorProto.INT32, (1, 4))],
        [tensor("y", TensorProto.INT32, (1, 4))],
    )
    return canonical(model, s), s


def _integer_divisor_minus_one() -> tuple[bytes, ModelSpec]:
    s = spec(("a", "int64", (1, 4)))
    d = numpy_helper.from_array(np.array([3, -1, 5, 7], np.int64), "d")
    model = make_model([helper.make_node("Mod", ["a", "d"], ["y"])], [tensor("a", I64, (1, 4))], [tensor("y", I64, (1, 4))], [d])
    return canonical(model, s), s


def _integer_pow() -> tuple[bytes, ModelSpec]:
    s = spec(("a", "int64", (1, 4)))
    e = numpy_helper.from_array(np.array(70, np.int64), "e")
    model = make_model([helper.make_node("Pow", ["a", "e"], ["y"])], [tensor("a", I64, (1, 4))], [tensor("y", I64, (1, 4))], [e])
    return canonical(model, s), s


def _int8_activation() -> tuple[bytes, ModelSpec]:
    w = numpy_helper.from_array(np.ones((4, 4), np.uint8), "w")
    model = make_model(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        [tensor("a", TensorProto.INT8, (1, 4))],
        [tensor("y", TensorProto.INT32, (1, 4))],
        [w],
    )
    return _raw(model), spec(("a", "int8", (1, 4)))


def _integer_reduction_cap() -> tuple[bytes, ModelSpec]:
    k = 40_000
    s = spec(("a", "uint8", (1, k)))
    w = numpy_helper.from_array(np.ones((k, 2), np.uint8), "w")
    model = make_model(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        [tensor("a", U8, (1, k))],
        [tensor("y", TensorProto.INT32, (1, 2))],
        [w],
    )
    return canonical(model, s), s


def _unpriced_op() -> tuple[bytes, ModelSpec]:
    model = make_model([helper.make_node("Det", ["x"], ["y"])], [tensor("x", F, (1, 4, 4))], [tensor("y", F, (1,))])
    return _raw(model), _float_spec((1, 4, 4))


def _batchnorm_training() -> tuple[bytes, ModelSpec]:
    params = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("sc", "bi", "mu", "va")]
    node = helper.make_node("BatchNormalization", ["x", "sc", "bi", "mu", "va"], ["y", "m", "v"], training_mode=1)
    s = _float_spec((1, 4, 2))
    model = make_model([node], [tensor("x", F, (1, 4, 2))], [tensor("y", F, (1, 4, 2))], params, opset=15)
    return canonical(model, s), s


ATTACKS: tuple[Attack, ...] = (
    Attack("random_bytes", "4 KiB of random bytes", _random_bytes, "not an ONNX model"),
    Attack("text", "a text file", _text, "not an ONNX model"),
    Attack("truncated", "a valid model cut in half", _truncated, "not an ONNX model"),
    Attack("empty", "zero bytes", _empty, "not an ONNX model: empty"),
    Attack("oversized", "model over the size cap", _oversized, "over the cap"),
    Attack("oversized_garbage", "garbage over the size cap: refused before parsing", _oversized_garbage, "over the cap"),
    Attack("declared_output_2^40", "output declared 2^40 x 2^40", _declared_output_2_40, "but computes"),
    Attack("constant_of_shape_12gb", "ConstantOfShape of 3e9 floats", _constant_of_shape_12gb, "over the tensor cap"),
    Attack("tile_over_cap", "Tile to 2^25 elements", _tile_over_cap, "over the tensor cap"),
    Attack("matmul_30000", "MatMul 30000 x 30000 inputs", _matmul_30000, "over the tensor cap"),
    Attack("work_over_cap", "Gemm 2048^3 = 8.6e9 MACs", _work_over_cap, "MACs per call, over the cap"),
    Attack("activation_cap", "activations over the total cap", _activation_cap, "activations take"),
    Attack("loop_1e12", "Loop with 10^12 trips", _loop, "control flow op Loop"),
    Attack("if", "If on a float comparison", _if, "control flow op If"),
    Attack("scan", "Scan", _scan, "control flow op Scan"),
    Attack("external_data", "initializer at ../../etc/hostname", _external_data, "external data"),
    Attack("custom_domain", "op in a custom domain", _custom_domain, "custom domain 'my.custom'"),
    Attack("custom_op_unimported", "custom-domain op without opset import", _custom_op_without_import, "custom op"),
    Attack("contrib_gelu", "com.microsoft Gelu", _contrib_gelu, "contrib domain"),
    Attack("random_normal_like", "RandomNormalLike", _random_normal_like, "random op RandomNormalLike"),
    Attack("random_in_function", "RandomNormalLike inside a model-local function", _random_in_function, "model-local functions"),
    Attack("dropout_training", "Dropout(training_mode=1)", _dropout_training, "training-only op Dropout"),
    Attack("training_info", "training info attached", _training_info, "training info"),
    Attack("lying_initializer", "1e9 declared elements carried in 16 bytes", _lying_initializer, "declares 1000000000 elements"),
    Attack("node_chain_20000", "20,000-node chain", _node_chain, "20000 nodes, over the cap"),
    Attack("string_input", "string tensors", _string_input, "dtype string"),
    Attack("sequence_input", "sequence instead of tensor", _sequence_input, "not a tensor"),
    Attack("zipmap_output", "ZipMap map output (ai.onnx.ml)", _zipmap_output, "ai.onnx.ml"),
    Attack("opset_99", "opset 99", _opset_99, "opset 99 outside"),
    Attack("opset_9", "opset 9 (pre-13 semantics)", _opset_old, "outside"),
    Attack("ir_99", "IR version 99", _ir_99, "IR version 99"),
    Attack("dynamic_input", "input with a symbolic dimension", _dynamic_input, "not static"),
    Attack("dynamic_reshape", "Reshape to a run-time shape", _dynamic_reshape, "no static shape"),
    Attack("undefined_input", "node reads an undefined tensor", _undefined_input, "ill-formed graph"),
    Attack("cycle", "graph with a cycle", _cycle, "ill-formed graph"),
    Attack("produced_twice", "two nodes write one tensor", _produced_twice, "ill-formed graph"),
    Attack("sparse_initializer", "sparse initializer", _sparse_initializer, "sparse initializers"),
    Attack("initializer_shadows_input", "input overridable by an initializer", _initializer_shadows_input, "also an initializer"),
    Attack("typed_field_initializer", "initializer not in raw form", _typed_field_initializer, "not in raw form"),
    Attack("doc_string", "canonical model plus a doc string", _doc_string, "not canonical"),
    Attack("unsplit_softmax", "fused Softmax", _unsplit_softmax, "not canonical: Softmax"),
    Attack("unfolded_constant", "constant subgraph left unfolded", _unfolded_constant, "must be folded"),
    Attack("unpinned_output", "output shape left symbolic", _unpinned_output_shape, "not static"),
    Attack("spec_mismatch", "declared input shape differs from the model", _spec_mismatch, "differ from the declared inputs"),
    Attack("tolerance_too_small", "t_rel below the protocol minimum", _tolerance_too_small, "t_rel_ppm 10 is outside"),
    Attack("exact_float_input", "exact class with a float model", _exact_float, "exact model has a float input"),
    Attack("exact_float_inside", "exact class computing floats inside", _exact_float_inside, "exact model computes a float"),
    Attack("tolerant_argmax", "ArgMax of floats", _tolerant_argmax, "discontinuous ArgMax"),
    Attack("tolerant_float_to_int", "float -> int Cast", _tolerant_float_to_int, "casts float values"),
    Attack("tolerant_comparison", "Greater on floats", _tolerant_comparison, "discontinuous Greater"),
    Attack("tolerant_round", "Round of floats", _tolerant_round, "discontinuous Round"),
    Attack("qdq", "QuantizeLinear of run-time floats (QDQ)", _tolerant_quantize, "discontinuous QuantizeLinear"),
    Attack("float16", "float16 computation", _float16_compute, "float16"),
    Attack("integer_runtime_divisor", "integer Div by a run-time tensor", _integer_runtime_divisor, "constant divisor"),
    Attack("integer_divisor_minus_one", "integer Mod by a constant holding -1", _integer_divisor_minus_one, "must not contain 0 or -1"),
    Attack("integer_pow", "Pow on int64 (overflow through doubles)", _integer_pow, "integer Pow"),
    Attack("int8_activation", "MatMulInteger with a run-time int8 operand", _int8_activation, "int8"),
    Attack("integer_reduction_cap", "MatMulInteger over 40,000 products (int32 overflow)", _integer_reduction_cap, "reduces over 40000"),
    Attack("unpriced_op", "Det (no price)", _unpriced_op, "op Det has no price"),
    Attack("batchnorm_training", "BatchNormalization(training_mode=1)", _batchnorm_training, "training mode"),
)
