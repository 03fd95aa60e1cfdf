"""Attribute rules of the `ai.onnx.ml` ops (docs/sandbox.md, "Models people have"): everything ONNX Runtime's
kernels check when they are built or run, checked by us first, so that a hostile model is a verdict and never
a runtime failure (which would be a local fault on every node). Called by `check.validate_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import AttributeProto, ModelProto, NodeProto, helper, numpy_helper

from core.errors import InvalidModel
from vm.sandbox.graph import TypeTable

_MODES = frozenset({"BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "LEAF"})
_TRANSFORMS = frozenset({"NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"})
_AGGREGATES = frozenset({"AVERAGE", "SUM", "MIN", "MAX"})
_NORMS = frozenset({"MAX", "L1", "L2"})
_KERNELS = frozenset({"LINEAR", "POLY", "RBF", "SIGMOID"})
# ORT's SVMClassifier takes fewer than 65536 classes; its coupling buffers grow with classes^2 per row.
MAX_SVM_CLASSES = 4096
# LabelEncoder: a map that stays in cache, so that one measured lookup prices every one (bench: 2-9 ns up to
# 65,536 keys, 21 ns at 524,288 with random keys).
MAX_LABEL_KEYS = 1 << 16
# Trees: a cap on nodes per op keeps the structural walk below cheap whatever the model says.
MAX_TREE_NODES = 1 << 20


def _attrs(node: NodeProto) -> dict[str, AttributeProto]:
    return {a.name: a for a in node.attribute}


def _list(attrs: Mapping[str, AttributeProto], name: str) -> list[Any]:
    a = attrs.get(name)
    return [] if a is None else list(helper.get_attribute_value(a))


def _text(attrs: Mapping[str, AttributeProto], name: str, default: str) -> str:
    a = attrs.get(name)
    if a is None:
        return default
    value = helper.get_attribute_value(a)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _features(node: NodeProto, types: TypeTable) -> int:
    shape = types[node.input[0]].shape or ()
    if len(shape) not in (1, 2):
        raise InvalidModel(f"ai.onnx.ml.{node.op_type} takes a rank-1 or rank-2 input")
    return shape[-1]


def validate_ml_node(model: ModelProto, node: NodeProto, types: TypeTable) -> None:
    op, attrs = node.op_type, _attrs(node)
    where = f"ai.onnx.ml.{op}"
    if op == "LabelEncoder":
        _label_encoder(where, attrs, types[node.input[0]].dtype)
        return
    if _text(attrs, "post_transform", "NONE") not in _TRANSFORMS:
        raise InvalidModel(f"{where}: unknown post_transform")
    f = _features(node, types)
    if op == "Scaler":
        for name in ("offset", "scale"):
            if len(_list(attrs, name)) not in (1, f):
                raise InvalidModel(f"{where}: {name} needs 1 or {f} values")
    elif op == "Normalizer":
        if _text(attrs, "norm", "MAX") not in _NORMS:
            raise InvalidModel(f"{where}: unknown norm")
    elif op in ("LinearClassifier", "LinearRegressor"):
        _linear(where, op, attrs, f)
    elif op in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
        _trees(where, op, attrs, f)
    elif op in ("SVMClassifier", "SVMRegressor"):
        _svm(where, op, attrs, f)
    elif op == "ArrayFeatureExtractor":
        init = next((i for i in model.graph.initializer if len(node.input) > 1 and i.name == node.input[1]), None)
        if init is None:
            raise InvalidModel(f"{where}: indices must be a constant")
        values = numpy_helper.to_array(init)
        if values.dtype != np.int64 or values.size == 0 or int(values.min()) < 0 or int(values.max()) >= f:
            raise InvalidModel(f"{where}: indices must be int64 in [0, {f})")
    else:  # unreachable: ops.ML_OPS is checked first
        raise InvalidModel(f"op {where} has no rule")


def _linear(where: str, op: str, attrs: Mapping[str, AttributeProto], f: int) -> None:
    coefficients, intercepts = _list(attrs, "coefficients"), _list(attrs, "intercepts")
    if op == "LinearRegressor":
        targets = int(helper.get_attribute_value(attrs["targets"])) if "targets" in attrs else 1
        if targets < 1 or len(coefficients) != targets * f or len(intercepts) not in (0, targets):
            raise InvalidModel(f"{where}: coefficients must be targets x {f}, intercepts none or one per target")
        return
    ints, strings = _list(attrs, "classlabels_ints"), _list(attrs, "classlabels_strings")
    if strings or not ints:
        raise InvalidModel(f"{where}: class labels must be integers")
    rows = len(intercepts)
    if rows < 1 or len(coefficients) != rows * f or not (rows == len(ints) or (rows == 1 and len(ints) == 2)):
        raise InvalidModel(f"{where}: coefficients, intercepts and class labels do not agree")


def _finite(where: str, attrs: Mapping[str, AttributeProto], *names: str) -> None:
    for name in names:
        if any(not np.isfinite(v) for v in _list(attrs, name)):
            raise InvalidModel(f"{where}: {name} must be finite")


def _svm(where: str, op: str, attrs: Mapping[str, AttributeProto], f: int) -> None:
    """ORT's SVM kernels read their attribute arrays at the sizes the class and vector counts imply, without
    checking them all (an out-of-bounds read or uninitialized scores otherwise): every size is exact here."""
    if _text(attrs, "kernel_type", "LINEAR") not in _KERNELS:
        raise InvalidModel(f"{where}: kernel_type must be one of {sorted(_KERNELS)}")
    if len(_list(attrs, "kernel_params")) != 3:
        raise InvalidModel(f"{where}: kernel_params must be 3 values (gamma, coef0, degree)")
    _finite(where, attrs, "kernel_params", "support_vectors", "coefficients", "rho", "prob_a", "prob_b")
    support, coefficients, rho = (len(_list(attrs, n)) for n in ("support_vectors", "coefficients", "rho"))
    if op == "SVMRegressor":
        vectors = int(helper.get_attribute_value(attrs["n_supports"])) if "n_supports" in attrs else 0
        if _int(attrs, "one_class", 0) not in (0, 1):
            raise InvalidModel(f"{where}: one_class must be 0 or 1")
        if vectors < 0 or rho < 1 or support != vectors * f or coefficients != (vectors if vectors else f):
            raise InvalidModel(f"{where}: needs n_supports x {f} support vectors, one coefficient per support "
                               f"vector ({f} without support vectors) and rho")
        return
    if _list(attrs, "classlabels_strings") or not _list(attrs, "classlabels_ints"):
        raise InvalidModel(f"{where}: class labels must be integers")
    classes = len(_list(attrs, "classlabels_ints"))
    if not 2 <= classes <= MAX_SVM_CLASSES:
        # One class leaves ORT's scores output unwritten (uninitialized memory): at least two.
        raise InvalidModel(f"{where}: needs 2 to {MAX_SVM_CLASSES} classes")
    per_class = [int(v) for v in _list(attrs, "vectors_per_class")]
    vectors, pairs = sum(per_class), classes * (classes - 1) // 2
    probabilities = len(_list(attrs, "prob_a"))
    if probabilities != len(_list(attrs, "prob_b")) or probabilities not in (0, pairs):
        raise InvalidModel(f"{where}: prob_a and prob_b must be none or one per pair of classes")
    if any(v < 0 for v in per_class) or len(per_class) not in ((0, classes) if vectors == 0 else (classes,)):
        raise InvalidModel(f"{where}: vectors_per_class must be one non-negative count per class")
    if vectors == 0:  # linear mode: coefficients [classes, F] against the input
        if support or coefficients != classes * f or rho < 1 or probabilities:
            raise InvalidModel(f"{where}: without support vectors, coefficients must be {classes} x {f}, with rho "
                               "and no probabilities")
        return
    if support != vectors * f or coefficients != (classes - 1) * vectors or rho != pairs:
        raise InvalidModel(f"{where}: support vectors must be {vectors} x {f}, coefficients (classes - 1) x "
                           "vectors, rho one per pair of classes")


def _int(attrs: Mapping[str, AttributeProto], name: str, default: int) -> int:
    a = attrs.get(name)
    return default if a is None else int(helper.get_attribute_value(a))


_LABEL_KEYS = {"keys_int64s": "int64", "keys_floats": "float32"}
_LABEL_VALUES = {"values_int64s": "int64", "values_floats": "float32"}


def _label_encoder(where: str, attrs: Mapping[str, AttributeProto], input_dtype: str) -> None:
    """Static and safe: int64 or float32 keys to int64 or float32 values, all given as attribute lists (opset
    2-3). Strings are refused (string tensors are not allowed: nothing can feed or read them)."""
    if any("string" in name for name in attrs):
        raise InvalidModel(f"{where}: string keys, values or defaults are not allowed (string tensors): "
                           "encode labels as integers before export")
    keys = [name for name in attrs if name.startswith("keys_")]
    values = [name for name in attrs if name.startswith("values_")]
    if len(keys) != 1 or len(values) != 1 or keys[0] not in _LABEL_KEYS or values[0] not in _LABEL_VALUES:
        raise InvalidModel(f"{where}: needs one of keys_int64s/keys_floats and one of values_int64s/values_floats")
    if _LABEL_KEYS[keys[0]] != input_dtype:
        raise InvalidModel(f"{where}: {keys[0]} needs a {_LABEL_KEYS[keys[0]]} input, not {input_dtype}")
    key_list, value_list = _list(attrs, keys[0]), _list(attrs, values[0])
    if not 0 < len(key_list) <= MAX_LABEL_KEYS or len(key_list) != len(value_list):
        raise InvalidModel(f"{where}: keys and values must be of one length, 1 to {MAX_LABEL_KEYS}")
    _finite(where, attrs, keys[0], values[0])
    if "default_float" in attrs and not np.isfinite(helper.get_attribute_value(attrs["default_float"])):
        raise InvalidModel(f"{where}: default_float must be finite")
    # Equal keys (0.0 and -0.0 included) would leave the value to the hash map's insertion rule.
    if len(set(key_list)) != len(key_list):
        raise InvalidModel(f"{where}: keys must be distinct")


def _trees(where: str, op: str, attrs: Mapping[str, AttributeProto], f: int) -> None:
    if any(name.endswith("_as_tensor") for name in attrs):
        raise InvalidModel(f"{where}: tensor attributes are not allowed")
    node_fields = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                   "nodes_truenodeids", "nodes_falsenodeids")
    nodes = {name: _list(attrs, name) for name in node_fields}
    n = len(nodes["nodes_nodeids"])
    if not 0 < n <= MAX_TREE_NODES or any(len(v) != n for v in nodes.values()):
        raise InvalidModel(f"{where}: node attributes must all have the same length (1 to {MAX_TREE_NODES})")
    for name in ("nodes_hitrates", "nodes_missing_value_tracks_true"):
        if len(_list(attrs, name)) not in (0, n):
            raise InvalidModel(f"{where}: {name} must have one value per node")
    modes = [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in nodes["nodes_modes"]]
    if any(m not in _MODES for m in modes):
        raise InvalidModel(f"{where}: unknown node mode")
    if any(not np.isfinite(v) for v in nodes["nodes_values"]):
        raise InvalidModel(f"{where}: thresholds must be finite")
    keys = list(zip(nodes["nodes_treeids"], nodes["nodes_nodeids"], strict=True))
    index = {k: i for i, k in enumerate(keys)}
    if len(index) != n or any(int(t) < 0 or int(i) < 0 for t, i in keys):
        raise InvalidModel(f"{where}: (tree, node) ids must be unique and non-negative")
    children: list[tuple[int, ...]] = []
    for i, (tree, _) in enumerate(keys):
        if modes[i] == "LEAF":
            children.append(())
            continue
        if not 0 <= int(nodes["nodes_featureids"][i]) < f:
            raise InvalidModel(f"{where}: a branch reads a feature outside [0, {f})")
        kids = []
        for field in ("nodes_truenodeids", "nodes_falsenodeids"):
            kid = index.get((tree, nodes[field][i]))
            if kid is None or kid == i:
                raise InvalidModel(f"{where}: a branch points to a node that is not in its tree")
            kids.append(kid)
        children.append(tuple(kids))
    parents = [0] * n
    for pair in children:
        for kid in set(pair):
            parents[kid] += 1
    if any(p > 1 for p in parents) or not _acyclic(children, parents):
        raise InvalidModel(f"{where}: every tree must be a tree (one parent per node, no cycle)")
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    weights = {name: _list(attrs, f"{prefix}_{name}") for name in ("treeids", "nodeids", "ids", "weights")}
    m = len(weights["ids"])
    if any(len(v) != m for v in weights.values()):
        raise InvalidModel(f"{where}: {prefix} attributes must all have the same length")
    if op == "TreeEnsembleClassifier":
        ints, strings = _list(attrs, "classlabels_int64s"), _list(attrs, "classlabels_strings")
        if strings or not ints:
            raise InvalidModel(f"{where}: class labels must be integers")
        outputs = len(ints)
    else:
        outputs = int(helper.get_attribute_value(attrs["n_targets"])) if "n_targets" in attrs else 0
        if _text(attrs, "aggregate_function", "SUM") not in _AGGREGATES:
            raise InvalidModel(f"{where}: unknown aggregate_function")
    if outputs < 1:
        raise InvalidModel(f"{where}: needs at least one target or class")
    for tree, node_id, out in zip(weights["treeids"], weights["nodeids"], weights["ids"], strict=True):
        leaf = index.get((tree, node_id))
        if leaf is None or modes[leaf] != "LEAF" or not 0 <= int(out) < outputs:
            raise InvalidModel(f"{where}: a weight names a node that is not a leaf, or an output out of range")
    if any(not np.isfinite(w) for w in weights["weights"]):
        raise InvalidModel(f"{where}: weights must be finite")
    if len(_list(attrs, "base_values")) not in (0, outputs):
        raise InvalidModel(f"{where}: base_values must be none or one per output")


def _acyclic(children: list[tuple[int, ...]], parents: list[int]) -> bool:
    """With at most one parent per node, the graph is a forest iff walking down from the roots visits all."""
    seen = 0
    stack = [i for i, p in enumerate(parents) if p == 0]
    while stack:
        i = stack.pop()
        seen += 1
        stack.extend(children[i])
    return seen == len(children)
