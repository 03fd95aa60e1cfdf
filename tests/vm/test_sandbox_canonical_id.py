"""One graph, one id: the canonical bytes (and so the model id) are a function of the graph's meaning, not of
how a producer happened to encode it.

Each transformation below re-encodes a model without changing what it computes: proto2 field presence (an
explicit empty domain, an absent one, the "ai.onnx" alias; default-valued fields written or left out),
attributes at their schema default written or omitted, trailing empty optional inputs, attribute and
initializer order, typed instead of raw tensor payloads, a Constant node instead of an initializer, names,
doc strings and value_info, and the order of fields on the wire. Any combination must canonicalize to the
same bytes, which the checker then accepts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import ModelProto, TensorProto, helper, numpy_helper

from core.hashing import sha256
from tests.vm import protomut
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

pytestmark = pytest.mark.vm

F, U8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT32
TOLERANT: dict[str, Any] = {"model_class": CompareMode.TOLERANT, "grid_k": 16, "tolerance": Tolerance(2, 100)}


def _value(name: str, elem: int, shape: list[int]) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def _graph_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]) -> ModelProto:
    graph = helper.make_graph(nodes, "main", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@functools.cache
def bases() -> tuple[tuple[bytes, ModelSpec], ...]:
    rng = np.random.default_rng(5)
    f32 = np.float32
    dense = _graph_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Clip", ["h", "lo"], ["c"]),
         helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.25)],
        [_value("x", F, [2, 4])], [_value("y", F, [2, 3])],
        [numpy_helper.from_array(rng.standard_normal((3, 4)).astype(f32), "w"),
         numpy_helper.from_array(rng.standard_normal(3).astype(f32), "b"),
         numpy_helper.from_array(np.array(-0.5, f32), "lo")])
    conv = _graph_model(
        [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("ConstantOfShape", ["shape"], ["z"], value=numpy_helper.from_array(np.array([0.5], f32))),
         helper.make_node("Add", ["c", "z"], ["y"])],
        [_value("x", F, [1, 1, 4, 4])], [_value("y", F, [1, 2, 4, 4])],
        [numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(f32), "k"),
         numpy_helper.from_array(np.array([1, 2, 4, 4], np.int64), "shape")])
    integer = _graph_model(
        [helper.make_node("MatMulInteger", ["a", "w", "za"], ["y"])],
        [_value("a", U8, [2, 8])], [_value("y", I32, [2, 3])],
        [numpy_helper.from_array(rng.integers(0, 256, (8, 3), dtype=np.uint8), "w"),
         numpy_helper.from_array(np.array(7, np.uint8), "za")])
    return (
        (dense.SerializeToString(), ModelSpec((ArraySpec("x", "float32", (2, 4)),), **TOLERANT)),
        (conv.SerializeToString(), ModelSpec((ArraySpec("x", "float32", (1, 1, 4, 4)),), **TOLERANT)),
        (integer.SerializeToString(), ModelSpec((ArraySpec("a", "uint8", (2, 8)),), CompareMode.EXACT)),
    )


# ---- meaning-preserving re-encodings -------------------------------------------------------------------


def _domain_explicit_empty(m: ModelProto) -> None:
    for node in m.graph.node:
        node.domain = ""
    for opset in m.opset_import:
        opset.domain = ""


def _domain_absent(m: ModelProto) -> None:
    for node in m.graph.node:
        node.ClearField("domain")
    for opset in m.opset_import:
        opset.ClearField("domain")


def _domain_alias(m: ModelProto) -> None:
    for node in m.graph.node:
        node.domain = "ai.onnx"
    for opset in m.opset_import:
        opset.domain = "ai.onnx"


def _schema(node: onnx.NodeProto) -> Any:
    return onnx.defs.get_schema(node.op_type, 17, "")


def _trailing_empty_inputs(m: ModelProto) -> None:
    for node in m.graph.node:
        schema = _schema(node)
        while len(node.input) < min(schema.max_input, 3):
            node.input.append("")
        while len(node.output) < min(schema.max_output, 2):
            node.output.append("")


def _explicit_default_attributes(m: ModelProto) -> None:
    for node in m.graph.node:
        present = {a.name for a in node.attribute}
        for name, attr in _schema(node).attributes.items():
            default = attr.default_value
            if name not in present and default.type in (onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT,
                                                          onnx.AttributeProto.STRING):
                node.attribute.append(helper.make_attribute(name, helper.get_attribute_value(default)))


def _reverse_attributes(m: ModelProto) -> None:
    for node in m.graph.node:
        attrs = list(node.attribute)[::-1]
        del node.attribute[:]
        node.attribute.extend(attrs)


def _typed_tensor(t: TensorProto) -> TensorProto:
    array = numpy_helper.to_array(t)
    typed = helper.make_tensor(t.name, t.data_type, list(array.shape), array.flatten().tolist(), raw=False)
    typed.doc_string = ""  # an explicit default-valued field
    typed.data_location = TensorProto.DEFAULT
    return typed


def _typed_initializers(m: ModelProto) -> None:
    typed = [_typed_tensor(t) for t in m.graph.initializer]
    del m.graph.initializer[:]
    m.graph.initializer.extend(typed)
    for node in m.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                attr.t.CopyFrom(_typed_tensor(attr.t))


def _reverse_initializers(m: ModelProto) -> None:
    inits = list(m.graph.initializer)[::-1]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)


def _constant_node(m: ModelProto) -> None:
    if not len(m.graph.initializer):
        return
    first = m.graph.initializer[0]
    m.graph.node.insert(0, helper.make_node("Constant", [], [first.name], value=first))
    del m.graph.initializer[0]


def _names_and_docs(m: ModelProto) -> None:
    m.producer_name, m.doc_string, m.graph.doc_string = "exporter", "a model", "the graph"
    for i, node in enumerate(m.graph.node):
        node.name, node.doc_string = f"node{i}", "does things"
    m.graph.value_info.append(_value("unrelated", F, [1]))


def _reverse_wire_fields(m: ModelProto) -> None:
    def reverse(msg: protomut.Msg) -> None:
        # Different fields in reverse order; a repeated field's elements keep theirs (that order is meaning).
        msg.fields.sort(key=lambda f: -f[0])
        for _, _, value in msg.fields:
            if isinstance(value, protomut.Msg):
                reverse(value)

    tree = protomut.parse(m.SerializeToString())
    reverse(tree)
    m.ParseFromString(protomut.serialize(tree))


TRANSFORMS: dict[str, Callable[[ModelProto], None]] = {
    f.__name__.lstrip("_"): f for f in (
        _domain_explicit_empty, _domain_absent, _domain_alias, _trailing_empty_inputs, _explicit_default_attributes,
        _reverse_attributes, _typed_initializers, _reverse_initializers, _constant_node, _names_and_docs,
        _reverse_wire_fields)
}


@functools.cache
def canonical_of(index: int) -> bytes:
    data, spec = bases()[index]
    canonical = canonicalize(data, spec.input_shapes)
    validate_model(canonical, spec)
    return canonical


def _variant(index: int, names: list[str]) -> bytes:
    model = ModelProto()
    model.ParseFromString(bases()[index][0])
    for name in names:
        TRANSFORMS[name](model)
    return model.SerializeToString()


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("index", range(3))
def test_each_re_encoding_has_the_same_canonical_bytes(index: int, name: str) -> None:
    assert canonicalize(_variant(index, [name]), bases()[index][1].input_shapes) == canonical_of(index), name


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2), st.lists(st.sampled_from(list(TRANSFORMS)), min_size=1, max_size=6))
def test_any_combination_of_re_encodings_gives_one_id(index: int, names: list[str]) -> None:
    spec = bases()[index][1]
    canonical = canonicalize(_variant(index, names), spec.input_shapes)
    assert sha256(canonical) == sha256(canonical_of(index))
    assert validate_model(canonical, spec).sha256 == sha256(canonical_of(index))


def test_canonical_bytes_hold_no_explicit_empty_domain_or_default_attribute() -> None:
    model = onnx.load_from_string(canonical_of(0))
    assert not any(node.HasField("domain") for node in model.graph.node)
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    assert [a.name for a in gemm.attribute] == ["transB"]  # alpha, beta, transA are at their defaults
