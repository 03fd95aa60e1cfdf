"""The chain-side checker accepts canonical models of the declared class and derives their ModelInfo.

Rejections live in test_sandbox_attacks.py; here: what is accepted, the class rules at their boundary,
the registration metadata rules, and that the verdict depends on the bytes alone (byte-exact canonical form).
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from tools.attacks import canonical, make_model, tensor
from vm.models import load_model, model_names
from vm.sandbox.check import validate_model, validate_spec
from vm.sandbox.limits import SandboxLimits
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

pytestmark = pytest.mark.vm

F, U8 = TensorProto.FLOAT, TensorProto.UINT8


def _qlinear_model() -> tuple[bytes, ModelSpec]:
    """Exact class with float quantization scales, as QLinearMatMul needs them; int8 weight made uint8."""
    rng = np.random.default_rng(8)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (16, 4), dtype=np.int8), "w"),
        numpy_helper.from_array(np.array(0.02, np.float32), "sa"),
        numpy_helper.from_array(np.array(0, np.uint8), "za"),
        numpy_helper.from_array(np.array(0.01, np.float32), "sw"),
        numpy_helper.from_array(np.array(0, np.int8), "zw"),
        numpy_helper.from_array(np.array(0.05, np.float32), "sy"),
        numpy_helper.from_array(np.array(128, np.uint8), "zy"),
    ]
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "w", "sw", "zw", "sy", "zy"], ["y"])
    spec = ModelSpec((ArraySpec("a", "uint8", (2, 16)),), CompareMode.EXACT)
    model = make_model([node], [tensor("a", U8, (2, 16))], [tensor("y", U8, (2, 4))], inits)
    return canonical(model, spec), spec


@pytest.mark.parametrize("name", model_names())
def test_committed_models_are_accepted(name: str) -> None:
    model = load_model(name)
    info = validate_model(model.model_bytes, model.spec)
    assert info.model_class is model.spec.model_class
    assert info.inputs == model.spec.inputs and info.outputs == model.outputs
    assert info.gas_per_call == model.gas_per_call and info.macs == model.macs
    assert info.sha256 == hashlib.sha256(model.model_bytes).digest()
    assert sum(count for _, count in info.op_histogram) == info.node_count


def test_model_info_describes_the_graph() -> None:
    info = validate_model(*_qlinear_model())
    assert info.outputs == (ArraySpec("y", "uint8", (2, 4)),)
    assert dict(info.op_histogram) == {"QLinearMatMul": 1}
    assert info.macs == 2 * 4 * 16 and info.opset == 17
    assert info.parameter_bytes == 16 * 4 + 3 * 4 + 3


def test_exact_class_allows_float_quantization_scales() -> None:
    model_bytes, spec = _qlinear_model()
    validate_model(model_bytes, spec)
    w = next(i for i in onnx.load_from_string(model_bytes).graph.initializer if i.data_type == TensorProto.UINT8 and len(i.dims) == 2)
    assert w.name.endswith("/u8")


def test_exact_class_refuses_a_float_constant_outside_a_scale_slot() -> None:
    model_bytes, spec = _qlinear_model()
    model = onnx.load_from_string(model_bytes)
    node = model.graph.node[0]
    node.input[7] = "sa"  # a float where the uint8 output zero point goes
    with pytest.raises(InvalidModel):
        validate_model(model.SerializeToString(), spec)


def test_tolerant_class_accepts_integer_outputs_and_continuous_ops() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Max", ["r", "x"], ["m"]),
        helper.make_node("Clip", ["m", "lo", "hi"], ["y"]),
        helper.make_node("ArgMax", ["k"], ["label"], axis=1),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -1.0), ("hi", 1.0))]
    spec = ModelSpec(
        (ArraySpec("x", "float32", (1, 4)), ArraySpec("k", "int32", (1, 4))), CompareMode.TOLERANT, 16, Tolerance(2, 100)
    )
    model = make_model(
        nodes,
        [tensor("x", F, (1, 4)), tensor("k", TensorProto.INT32, (1, 4))],
        [tensor("y", F, (1, 4)), tensor("label", TensorProto.INT64, (1, 1))],
        inits,
    )
    info = validate_model(canonical(model, spec), spec)
    assert [o.committed_dtype for o in info.outputs] == ["int64", "int64"]
    assert [o.dtype for o in info.outputs] == ["float32", "int64"]


def test_reencoding_changes_the_verdict() -> None:
    """Same graph, different bytes (initializers out of order): not canonical. The chain never rewrites."""
    model = load_model("digits_mlp")
    parsed = onnx.load_from_string(model.model_bytes)
    inits = list(parsed.graph.initializer)
    del parsed.graph.initializer[:]
    parsed.graph.initializer.extend(reversed(inits))
    with pytest.raises(InvalidModel, match="not canonical"):
        validate_model(parsed.SerializeToString(), model.spec)


def test_trailing_unknown_field_is_not_canonical() -> None:
    model = load_model("poi_mix")
    with pytest.raises(InvalidModel, match="not canonical"):
        validate_model(model.model_bytes + bytes([0xF8, 0x3F, 0x01]), model.spec)


def test_verdict_is_stable_across_calls() -> None:
    model = load_model("digits_int8")
    assert validate_model(model.model_bytes, model.spec) == validate_model(bytes(model.model_bytes), model.spec)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (ModelSpec((), CompareMode.EXACT), "inputs"),
        (ModelSpec((ArraySpec("x", "int32", (1,)), ArraySpec("x", "int32", (1,))), CompareMode.EXACT), "unique"),
        (ModelSpec((ArraySpec("x", "int32", (1,) * 9),), CompareMode.EXACT), "rank"),
        (ModelSpec((ArraySpec("x", "int32", (1,)),), CompareMode.EXACT, grid_k=4), "no grid"),
        (ModelSpec((ArraySpec("x", "int32", (1,)),), CompareMode.EXACT, tolerance=Tolerance(1, 0)), "no grid"),
        (ModelSpec((ArraySpec("x", "float32", (1,)),), CompareMode.TOLERANT, 41, Tolerance(1 << 21, 100)), "grid exponent"),
        (ModelSpec((ArraySpec("x", "float32", (1,)),), CompareMode.TOLERANT, 16, Tolerance(0, 100)), "t_abs 0"),
        (ModelSpec((ArraySpec("x", "float32", (1,)),), CompareMode.TOLERANT, 30, Tolerance(512, 100)), "minimum 1024"),
        (ModelSpec((ArraySpec("x", "float32", (1,)),), CompareMode.TOLERANT, 16, Tolerance(1, 99)), "t_rel_ppm 99"),
    ],
)
def test_registration_metadata_rules(spec: ModelSpec, reason: str) -> None:
    with pytest.raises(InvalidModel, match=reason):
        validate_spec(spec)


def test_protocol_minimum_absolute_tolerance_follows_the_grid() -> None:
    limits = SandboxLimits()
    assert [limits.min_t_abs(k) for k in (0, 16, 20, 21, 30)] == [1, 1, 1, 2, 1024]


def test_caps_come_from_the_spec_limits() -> None:
    model = load_model("poi_mix")
    tight = ModelSpec(model.spec.inputs, CompareMode.EXACT, limits=SandboxLimits(max_macs=1000))
    with pytest.raises(InvalidModel, match="MACs per call"):
        validate_model(model.model_bytes, tight)
    small = ModelSpec(model.spec.inputs, CompareMode.EXACT, limits=SandboxLimits(max_nodes=10))
    with pytest.raises(InvalidModel, match="nodes, over the cap"):
        validate_model(model.model_bytes, small)
