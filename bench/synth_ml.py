"""Synthetic canonical `ai.onnx.ml` models for the gas calibration (bench/gas_calibration.py, "ml:" rows): the
kernel machines and LabelEncoder at sizes chosen to isolate one unit of their work each.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper

from bench.synth import OPSET, Synth
from vm.sandbox.canonicalize import canonicalize

ML_OPSET = 3


def _finish(name: str, node: NodeProto, x: tuple[int, tuple[int, ...]], outputs: list[tuple[str, int, tuple[int, ...]]],
            exact: bool) -> Synth:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x[0], list(x[1]))],
                              [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = 8
    canonical = canonicalize(model.SerializeToString(), {"x": x[1]})
    dtype = "float32" if x[0] == TensorProto.FLOAT else "int64"
    last = outputs[-1]
    return Synth(name, canonical, "x", dtype, x[1], "float32" if last[1] == TensorProto.FLOAT else "int64",
                 last[2], exact)


def svm_regressor(rows: int, vectors: int, features: int, kernel: str = "RBF", salt: int = 0) -> Synth:
    """An SVMRegressor with `vectors` support vectors of `features` values: kernel work rows x vectors x
    features, then one dual sum per row."""
    rng = np.random.default_rng(salt)
    node = helper.make_node(
        "SVMRegressor", ["x"], ["y"], domain="ai.onnx.ml", kernel_type=kernel, kernel_params=[0.01, 0.5, 3.0],
        n_supports=vectors, support_vectors=rng.standard_normal(vectors * features).astype(np.float32).tolist(),
        coefficients=rng.standard_normal(vectors).astype(np.float32).tolist(), rho=[0.1])
    return _finish(f"svr-{kernel}-{vectors}x{features}", node, (TensorProto.FLOAT, (rows, features)),
                   [("y", TensorProto.FLOAT, (rows, 1))], False)


def svm_classifier(rows: int, classes: int, per_class: int, features: int, probabilities: bool,
                   kernel: str = "LINEAR", salt: int = 0, sharpness: float = 1.0) -> Synth:
    """An SVMClassifier (one-vs-one, libsvm layout) with `per_class` support vectors per class; with
    `probabilities`, prob_a/prob_b turn on the pairwise coupling (classes^2 work per sweep and row); a large
    `sharpness` (prob_a's scale) pushes the pairwise probabilities to their clamps, where the solver needs more
    sweeps."""
    rng = np.random.default_rng(salt)
    vectors, pairs = classes * per_class, classes * (classes - 1) // 2
    prob = {"prob_a": ((-rng.random(pairs) - 0.5) * sharpness).astype(np.float32).tolist(),
            "prob_b": rng.standard_normal(pairs).astype(np.float32).tolist()} if probabilities else {}
    node = helper.make_node(
        "SVMClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml", kernel_type=kernel,
        kernel_params=[0.01, 0.5, 3.0], vectors_per_class=[per_class] * classes,
        support_vectors=rng.standard_normal(vectors * features).astype(np.float32).tolist(),
        coefficients=rng.standard_normal((classes - 1) * vectors).astype(np.float32).tolist(),
        rho=rng.standard_normal(pairs).astype(np.float32).tolist(), classlabels_ints=list(range(classes)), **prob)
    scores = classes if probabilities else pairs if classes > 2 else 2
    return _finish(f"svc-{classes}x{per_class}x{features}", node, (TensorProto.FLOAT, (rows, features)),
                   [("label", TensorProto.INT64, (rows,)), ("scores", TensorProto.FLOAT, (rows, scores))], False)


def label_encoder(n: int, keys: int = 1024, salt: int = 0) -> Synth:
    """An int64 -> int64 LabelEncoder over n elements with `keys` entries (inputs hit and miss)."""
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml",
                            keys_int64s=[2 * k for k in range(keys)], values_int64s=[k + salt for k in range(keys)])
    return _finish(f"labelencoder-{n}", node, (TensorProto.INT64, (1, n)), [("y", TensorProto.INT64, (1, n))], True)
