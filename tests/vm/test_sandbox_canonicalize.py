"""The client-side canonicalizer: pinned shapes, folding, Softmax split, uint8 operands, stripping, idempotence.

Every rewrite must keep the model's outputs (exactly for integer rewrites) and must be a fixed point on its
own output, because the chain accepts exactly the bytes with `canonicalize(bytes) == bytes`.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from tools.attacks import make_model, tensor
from vm.models import load_model, model_names
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model
from vm.sandbox.session import create_session
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

pytestmark = pytest.mark.vm

F = TensorProto.FLOAT
TOL = {"model_class": CompareMode.TOLERANT, "grid_k": 20, "tolerance": Tolerance(16, 200)}


def _run(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(r) for r in create_session(model_bytes).run(None, feeds)]


def _ops(model_bytes: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(model_bytes).graph.node]


def _mlp_with_everything() -> onnx.ModelProto:
    """Float MLP with dynamic batch, a Constant, a constant subgraph, Dropout, Softmax and metadata."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["w", "two"], ["w2"], name="scale weights", doc_string="folded away"),
        helper.make_node("MatMul", ["x", "w2"], ["h"]),
        helper.make_node("Dropout", ["h"], ["d"]),
        helper.make_node("Softmax", ["d"], ["p"], axis=-1),
        helper.make_node("ArgMax", ["p"], ["label"], axis=1),
    ]
    model = make_model(nodes, [tensor("x", F, ("N", 8))], [tensor("p", F, ("N", 5))], [w])
    model.producer_name, model.doc_string = "someone", "a model"
    helper.set_model_props(model, {"author": "me"})
    model.graph.value_info.append(tensor("h", F, (999, 999)))  # a lie the canonicalizer must drop
    return model


def test_rewrites_into_checked_canonical_form() -> None:
    raw = _mlp_with_everything().SerializeToString()
    canonical = canonicalize(raw, {"x": (3, 8)})
    assert _ops(canonical) == ["MatMul", "Identity", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div"]
    model = onnx.load_from_string(canonical)
    assert model.producer_name == "" and model.doc_string == "" and len(model.metadata_props) == 0
    assert len(model.graph.value_info) == 0
    assert all(n.name == "" and n.doc_string == "" for n in model.graph.node)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [3, 8]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [3, 5]
    assert [o.domain for o in model.opset_import] == [""]
    spec = ModelSpec((ArraySpec("x", "float32", (3, 8)),), **TOL)
    assert validate_model(canonical, spec).outputs == (ArraySpec("p", "float32", (3, 5)),)


def test_split_softmax_matches_the_fused_op() -> None:
    raw = _mlp_with_everything()
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    fused = _run(raw.SerializeToString(), {"x": x})[0]
    split = _run(canonicalize(raw.SerializeToString(), {"x": (3, 8)}), {"x": x})[0]
    np.testing.assert_allclose(split, fused, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(split.sum(axis=1), 1.0, rtol=1e-6)


def test_log_softmax_split_matches_the_fused_op() -> None:
    model = make_model([helper.make_node("LogSoftmax", ["x"], ["y"], axis=0)], [tensor("x", F, (4, 3))], [tensor("y", F, (4, 3))])
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32) * 10
    canonical = canonicalize(model.SerializeToString(), {"x": (4, 3)})
    assert "LogSoftmax" not in _ops(canonical) and "Log" in _ops(canonical)
    np.testing.assert_allclose(_run(canonical, {"x": x})[0], _run(model.SerializeToString(), {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_softmax_split_at_opset_18_uses_axes_input() -> None:
    model = make_model([helper.make_node("Softmax", ["x"], ["y"])], [tensor("x", F, (2, 3))], [tensor("y", F, (2, 3))], opset=18)
    canonical = onnx.load_from_string(canonicalize(model.SerializeToString(), {"x": (2, 3)}))
    reduce_max = next(n for n in canonical.graph.node if n.op_type == "ReduceMax")
    assert len(reduce_max.input) == 2 and not any(a.name == "axes" for a in reduce_max.attribute)


def test_int8_weights_move_to_uint8_with_identical_outputs() -> None:
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, size=(16, 6), dtype=np.int8)
    zp = np.array([-3, 0, 5, -128, 127, 1], np.int8)
    nodes = [helper.make_node("MatMulInteger", ["a", "w", "", "zp"], ["y"])]
    model = make_model(
        nodes,
        [tensor("a", TensorProto.UINT8, (2, 16))],
        [tensor("y", TensorProto.INT32, (2, 6))],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(zp, "zp")],
    )
    canonical = canonicalize(model.SerializeToString(), {"a": (2, 16)})
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(canonical).graph.initializer}
    assert all(v.dtype == np.uint8 for v in inits.values())
    a = rng.integers(0, 256, size=(2, 16), dtype=np.uint8)
    expected = (a.astype(np.int64) @ (w.astype(np.int64) - zp.astype(np.int64))).astype(np.int32)
    np.testing.assert_array_equal(_run(canonical, {"a": a})[0], expected)
    validate_model(canonical, ModelSpec((ArraySpec("a", "uint8", (2, 16)),), CompareMode.EXACT))


def test_int8_weight_without_zero_point_gets_zero_point_128() -> None:
    w = np.array([[-128, 127], [5, -6]], np.int8)
    model = make_model(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        [tensor("a", TensorProto.UINT8, (1, 2))],
        [tensor("y", TensorProto.INT32, (1, 2))],
        [numpy_helper.from_array(w, "w")],
    )
    canonical = canonicalize(model.SerializeToString(), {"a": (1, 2)})
    node = onnx.load_from_string(canonical).graph.node[0]
    assert len(node.input) == 4 and node.input[2] == ""
    a = np.array([[3, 250]], np.uint8)
    np.testing.assert_array_equal(_run(canonical, {"a": a})[0], (a.astype(np.int32) @ w.astype(np.int32)))


def test_shape_chain_folds_to_static_reshape() -> None:
    """Exporter-style Shape -> Gather -> Concat -> Reshape folds away once inputs are pinned."""
    idx = numpy_helper.from_array(np.array(0, np.int64), "idx")
    minus_one = numpy_helper.from_array(np.array([-1], np.int64), "m1")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "idx"], ["n"]),
        helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    axes = numpy_helper.from_array(np.array([0], np.int64), "zero_axes")
    model = make_model(nodes, [tensor("x", F, ("N", 2, 3))], [tensor("y", F, ("N", 6))], [idx, minus_one, axes])
    canonical = canonicalize(model.SerializeToString(), {"x": (4, 2, 3)})
    assert _ops(canonical) == ["Reshape"]
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.testing.assert_array_equal(_run(canonical, {"x": x})[0], x.reshape(4, 6))


def test_large_constant_results_are_not_folded() -> None:
    """Folding stops at max_fold_bytes: a big ConstantOfShape stays a (priced) node."""
    shape = numpy_helper.from_array(np.array([1 << 19], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    model = make_model(nodes, [tensor("x", F, (1,))], [tensor("y", F, (1,))], [shape])
    canonical = canonicalize(model.SerializeToString(), {"x": (1,)})
    assert _ops(canonical) == ["ConstantOfShape", "ReduceSum", "Add"]
    assert _run(canonical, {"x": np.zeros(1, np.float32)})[0].tolist() == [float(1 << 19)]


def test_local_functions_are_inlined() -> None:
    fn = helper.make_function(
        "local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])], [helper.make_opsetid("", 17)]
    )
    model = make_model(
        [helper.make_node("Twice", ["x"], ["y"], domain="local")],
        [tensor("x", F, (1, 2))],
        [tensor("y", F, (1, 2))],
        extra_opsets=[("local", 1)],
        functions=[fn],
    )
    canonical = canonicalize(model.SerializeToString(), {"x": (1, 2)})
    parsed = onnx.load_from_string(canonical)
    assert len(parsed.functions) == 0 and _ops(canonical) == ["Add"]
    assert [o.domain for o in parsed.opset_import] == [""]


def test_dead_nodes_and_unused_initializers_are_dropped() -> None:
    unused = numpy_helper.from_array(np.ones(3, np.float32), "unused")
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["dead"])]
    model = make_model(nodes, [tensor("x", F, (1, 3))], [tensor("y", F, (1, 3))], [unused])
    canonical = onnx.load_from_string(canonicalize(model.SerializeToString(), {"x": (1, 3)}))
    assert [n.op_type for n in canonical.graph.node] == ["Relu"] and len(canonical.graph.initializer) == 0


def test_initializers_listed_as_inputs_are_not_inputs() -> None:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [tensor("x", F, (1, 2)), tensor("w", F, (2, 2))],
        [tensor("y", F, (1, 2))],
        [w],
    )
    canonical = onnx.load_from_string(canonicalize(model.SerializeToString(), {"x": (1, 2)}))
    assert [v.name for v in canonical.graph.input] == ["x"]


@pytest.mark.parametrize("name", model_names())
def test_committed_models_are_fixed_points(name: str) -> None:
    model = load_model(name)
    assert canonicalize(model.model_bytes, model.spec.input_shapes) == model.model_bytes


def test_idempotent_on_varied_inputs() -> None:
    for shapes in ({"x": (1, 8)}, {"x": (7, 8)}):
        once = canonicalize(_mlp_with_everything().SerializeToString(), shapes)
        assert canonicalize(once, shapes) == once


def test_unknown_fields_are_discarded() -> None:
    canonical = canonicalize(_mlp_with_everything().SerializeToString(), {"x": (1, 8)})
    tampered = canonical + bytes([0xF8, 0x3F, 0x01])  # field 1023, varint 1: unknown to ModelProto
    assert canonicalize(tampered, {"x": (1, 8)}) == canonical


def test_shapes_must_name_exactly_the_inputs() -> None:
    raw = _mlp_with_everything().SerializeToString()
    with pytest.raises(InvalidModel, match="missing"):
        canonicalize(raw, {})
    with pytest.raises(InvalidModel, match="unknown"):
        canonicalize(raw, {"x": (1, 8), "y": (1,)})


def test_refuses_what_cannot_be_canonical() -> None:
    from tools.attacks import ATTACKS

    for name, reason in (("external_data", "external data"), ("loop_1e12", "control flow"), ("training_info", "training")):
        model_bytes, spec = next(a for a in ATTACKS if a.name == name).build()
        with pytest.raises(InvalidModel, match=reason):
            canonicalize(model_bytes, spec.input_shapes)


def test_ir3_model_with_initializers_listed_as_inputs_canonicalizes() -> None:
    """Before IR 4 every initializer is also a graph input (pytorch's old exports: Linear without bias,
    Embedding). Removing those entries must not leave shape inference without the initializers' types."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["w"], ["wt"]), helper.make_node("MatMul", ["x", "wt"], ["y"])]
    graph = helper.make_graph(
        nodes, "old", [tensor("x", F, ("N", 4)), tensor("w", F, (3, 4))], [tensor("y", F, ("N", 3))],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=3)
    canonical = canonicalize(model.SerializeToString(), {"x": (2, 4)})
    proto = onnx.load_from_string(canonical)
    assert proto.ir_version == 7 and [v.name for v in proto.graph.input] == ["x"]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    assert _ops(canonical) == ["MatMul"]  # the constant Transpose was folded: its input had a type
    np.testing.assert_allclose(_run(canonical, {"x": x})[0], x @ w.T, rtol=1e-6)
    spec = ModelSpec((ArraySpec("x", "float32", (2, 4)),), **TOL)
    assert validate_model(canonical, spec).gas_per_call > 0
