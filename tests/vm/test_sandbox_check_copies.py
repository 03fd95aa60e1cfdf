"""The registration check without weight copies (docs/sandbox.md, "Gas"): shape inference runs on a skeleton
of the model, and the canonical-form check keeps initializers that are already canonical. Both shortcuts must
reach exactly the verdicts and types of the full path."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from tests.vm.helpers import _model
from tools.backend_corpus import Registered, load_case, register
from vm.sandbox.canonicalize import _RAW_IDENTITY, canonicalize
from vm.sandbox.graph import SKELETON_MIN_BYTES, _infer_once, infer_types, parse_model, skeleton
from vm.sandbox.limits import DEFAULT_LIMITS

pytestmark = pytest.mark.vm


def full_types(model: ModelProto) -> dict[str, object]:
    """Shape inference on a full copy (weights included): what infer_types computed before the skeleton."""
    probe = ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for value in probe.graph.output:
        value.type.tensor_type.ClearField("shape")
    return dict(_infer_once(probe))


def mixed_model() -> bytes:
    """Float weights (stripped), a 1-D int64 vector read by data propagation through Add and a 2-D int64
    constant (kept and stripped), a tiny float constant (kept), and a shape computed from constants."""
    w = numpy_helper.from_array(np.ones((4, 256), np.float32), "w")
    bias = numpy_helper.from_array(np.arange(256, dtype=np.int64), "bias")
    grid = numpy_helper.from_array(np.ones((2, 64), np.int64), "grid")
    one = numpy_helper.from_array(np.array([1.0], np.float32), "one")
    shape = numpy_helper.from_array(np.array([1, 256], np.int64), "shape")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "one"], ["a"]),
             helper.make_node("Reshape", ["a", "shape"], ["y"]),
             helper.make_node("Add", ["i", "bias"], ["b"]), helper.make_node("ReduceSum", ["b"], ["z"], keepdims=1),
             helper.make_node("Mul", ["j", "grid"], ["g"]), helper.make_node("ReduceMax", ["g"], ["u"], keepdims=1)]
    raw = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                         helper.make_tensor_value_info("i", TensorProto.INT64, [256]),
                         helper.make_tensor_value_info("j", TensorProto.INT64, [2, 64])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256]),
                  helper.make_tensor_value_info("z", TensorProto.INT64, [1]),
                  helper.make_tensor_value_info("u", TensorProto.INT64, [1, 1])], [w, bias, grid, one, shape])
    return canonicalize(raw, {"x": (1, 4), "i": (256,), "j": (2, 64)})


def test_the_skeleton_drops_the_values_inference_never_reads_and_keeps_the_rest() -> None:
    model = parse_model(mixed_model(), DEFAULT_LIMITS)
    probe = skeleton(model)
    kept = {i.name: len(i.raw_data) for i in probe.graph.initializer}
    assert kept == {"w": 0, "grid": 0, "bias": 256 * 8, "one": 4, "shape": 16}
    assert len(next(i for i in model.graph.initializer if i.name == "w").raw_data) == 4 * 256 * 4  # a copy
    assert 2 * DEFAULT_LIMITS.max_rank * 8 < SKELETON_MIN_BYTES  # the longest shape parameter (Pad's pads) stays
    assert infer_types(model) == full_types(model)


@pytest.mark.parametrize("name", ["light_squeezenet", "light_shufflenet"])
def test_shape_inference_of_real_cnns_on_the_skeleton_equals_inference_with_their_weights(name: str) -> None:
    registered = register(load_case(f"light/{name}"))
    assert isinstance(registered, Registered)
    model = parse_model(registered.canonical, DEFAULT_LIMITS)
    assert infer_types(model) == full_types(model)


def test_a_stripped_tensor_that_inference_reads_is_a_refusal_not_another_shape() -> None:
    """A 2-D int64 'shape' is stripped (no valid shape parameter has two axes): ONNX's Reshape fails on it
    either way; with the skeleton the refusal names the empty payload, never a shape."""
    shape = numpy_helper.from_array(np.ones((8, 8), np.int64), "s")
    raw = _model([helper.make_node("Reshape", ["x", "s"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [shape])
    model = ModelProto()
    model.ParseFromString(raw)
    with pytest.raises(InvalidModel, match="shape inference"):
        infer_types(model)


@pytest.mark.parametrize("data_type", sorted(_RAW_IDENTITY))
def test_raw_tensors_of_the_kept_types_round_trip_through_numpy_unchanged(data_type: int) -> None:
    """The canonicalizer keeps such a tensor as it is instead of rebuilding it through numpy: for any bytes
    (NaN payloads, negative zeros, every bit pattern) the rebuild would write the same."""
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    payload = np.random.default_rng(data_type).integers(0, 256, 64 * itemsize, dtype=np.uint8).tobytes()
    tensor = helper.make_tensor("t", data_type, (8, 8), payload, raw=True)
    rebuilt = numpy_helper.from_array(np.asarray(numpy_helper.to_array(tensor), order="C"), "t")
    assert rebuilt.SerializeToString() == tensor.SerializeToString()

