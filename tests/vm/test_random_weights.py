"""tools/random_weights.py's byte bound: which weights stay constant when random ones would be too many bytes.

A small IR 3 network in the shipped light CNNs' form (weights as ConstantOfShape nodes of a constant shape):
two convolutions and a Gemm classifier, run by real onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from tools.random_weights import randomize_weights

pytestmark = pytest.mark.vm

SHAPES = {"c1_w": (16, 3, 3, 3), "c2_w": (32, 16, 3, 3), "fc_w": (64, 32)}  # 1,728, 18,432, 8,192 bytes


def shipped() -> bytes:
    """Conv(3->16) Relu Conv(16->32) Relu GlobalAveragePool Flatten Gemm(32->64, weight 64x32 transposed)
    Softmax; every weight a ConstantOfShape of 0.02, the Gemm's bias a zero initializer."""
    nodes, inits = [], []
    for name, shape in SHAPES.items():
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"{name}_shape"))
        nodes.append(helper.make_node("ConstantOfShape", [f"{name}_shape"], [name],
                                      value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.02])))
    nodes += [helper.make_node("Conv", ["x", "c1_w"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
              helper.make_node("Conv", ["b", "c2_w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["d"]),
              helper.make_node("GlobalAveragePool", ["d"], ["e"]), helper.make_node("Flatten", ["e"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["g"], transB=1), helper.make_node("Softmax", ["g"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
              *(helper.make_tensor_value_info(i.name, TensorProto.INT64, [i.dims[0]]) for i in inits),
              helper.make_tensor_value_info("fc_b", TensorProto.FLOAT, [64])]
    inits.append(numpy_helper.from_array(np.zeros(64, np.float32), "fc_b"))  # 256 bytes
    graph = helper.make_graph(nodes, "shipped", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3).SerializeToString()


def constants(model: ModelProto) -> set[str]:
    return {n.output[0] for n in model.graph.node if n.op_type == "ConstantOfShape"}


def run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


def test_a_byte_bound_keeps_the_largest_convolution_weights_constant_and_never_the_classifier() -> None:
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    full = onnx.load_from_string(randomize_weights(shipped(), 7))
    assert constants(full) == set()
    # 28,608 bytes of weights; 20,000 allowed: the largest convolution (c2_w, 18,432) stays constant, which
    # is enough; fc_w (8,192) is larger than c1_w but is the classifier.
    bounded_bytes = randomize_weights(shipped(), 7, max_bytes=20_000)
    bounded = onnx.load_from_string(bounded_bytes)
    assert constants(bounded) == {"c2_w"}
    weights = {i.name: numpy_helper.to_array(i) for i in bounded.graph.initializer}
    assert set(SHAPES) - set(weights) == {"c2_w"} and weights["fc_w"].std() > 0 and weights["c1_w"].std() > 0
    assert randomize_weights(shipped(), 7, max_bytes=20_000) == bounded_bytes  # seeded: the same bytes
    y = run(bounded_bytes, x)
    assert np.isfinite(y).all() and y.max() > 2 * y.min()  # the classifier still tells classes apart
    # Under the classifier and the smallest convolution's bytes nothing fits: refused, not silently exceeded.
    with pytest.raises(ValueError, match="over max_bytes 8000"):
        randomize_weights(shipped(), 7, max_bytes=8_000)
