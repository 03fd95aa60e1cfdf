"""The worker's scan for Gather nodes before a load reads only the graph's node bytes (vm/sandbox/wirescan.py),
and never misses a node that parsing would find: wherever the nodes lie in the file, in a graph field given
twice, or in bytes it cannot walk (then it answers "maybe" and the model is parsed as before)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from bench.synth import lookup, node_chain, weights
from tools.attacks import make_model, tensor
from vm.models import load_model, model_names
from vm.sandbox.executor import LocalExecutor, _index_bounds
from vm.sandbox.graph import INDEXED_OPS, find_index_inputs
from vm.sandbox.wirescan import graph_nodes_mention

pytestmark = pytest.mark.vm


def _parsed(model_bytes: bytes) -> ModelProto:
    model = ModelProto()
    model.ParseFromString(model_bytes)
    return model


def _has_indexed_node(model_bytes: bytes) -> bool:
    return any(n.op_type in INDEXED_OPS for n in _parsed(model_bytes).graph.node)


def _gather_model(table_bytes: bytes = b"") -> bytes:
    """y = table[i] (a float table of 4 rows); `table_bytes` replaces the table's raw data."""
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "table")
    if table_bytes:
        table.raw_data = table_bytes
    model = make_model([helper.make_node("Gather", ["table", "i"], ["y"])], [tensor("i", TensorProto.INT64, (2,))],
                       [tensor("y", TensorProto.FLOAT, (2, 3))], [table])
    return model.SerializeToString()


CASES = {
    **{f"genesis:{name}": load_model(name).model_bytes for name in model_names()},
    "lookup": lookup(1024).model_bytes,
    "chain": node_chain(64).model_bytes,
    "weights": weights(1 << 20).model_bytes,
    "gather": _gather_model(),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_scan_finds_every_gather_node_parsing_finds(name: str) -> None:
    model_bytes = CASES[name]
    assert graph_nodes_mention(model_bytes, b"Gather") or not _has_indexed_node(model_bytes)
    assert _index_bounds(model_bytes) == find_index_inputs(_parsed(model_bytes))


def test_weights_that_spell_gather_are_not_a_gather_node() -> None:
    """The case the walk saves: the old whole-file scan matched weight bytes and parsed the model for nothing."""
    noise = b"Gather" * 8
    plain = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", TensorProto.FLOAT, (1, 12))],
                       [tensor("y", TensorProto.FLOAT, (1, 12))],
                       [numpy_helper.from_array(np.frombuffer(noise, np.float32).copy(), "unused")])
    raw = plain.SerializeToString()
    assert noise in raw
    assert not graph_nodes_mention(raw, b"Gather")
    assert _index_bounds(raw) == find_index_inputs(_parsed(raw)) == ()


def test_a_gather_node_after_the_initializers_or_in_a_second_graph_field_is_found() -> None:
    model = _parsed(_gather_model())
    graph = model.graph
    # GraphProto with its initializer (field 5) serialized before its node (field 1): valid protobuf.
    inits = b"".join(helper.make_graph([], "g", [], [], [i]).SerializeToString() for i in graph.initializer)
    rest = helper.make_graph(list(graph.node), graph.name, list(graph.input), list(graph.output)).SerializeToString()
    reordered = _with_graph_fields(model, [inits + rest])
    assert _parsed(reordered).graph.node[0].op_type == "Gather"
    assert graph_nodes_mention(reordered, b"Gather")
    assert _index_bounds(reordered) == (("i", 4),)
    # The graph given twice: protobuf merges them, so the second one's Gather node is the model's.
    first = helper.make_graph([], "g", [], [], list(graph.initializer)).SerializeToString()
    second = helper.make_graph(list(graph.node), "g", list(graph.input), list(graph.output)).SerializeToString()
    twice = _with_graph_fields(model, [first, second])
    assert _has_indexed_node(twice)
    assert graph_nodes_mention(twice, b"Gather")
    assert _index_bounds(twice) == find_index_inputs(_parsed(twice)) == (("i", 4),)


def _with_graph_fields(model: ModelProto, graphs: list[bytes]) -> bytes:
    """`model` with its graph field (7) replaced by the given serialized GraphProtos, in order."""
    head = ModelProto()
    head.CopyFrom(model)
    head.ClearField("graph")
    out = head.SerializeToString()
    for g in graphs:
        out += bytes([7 << 3 | 2]) + _varint(len(g)) + g
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("mangle", [
    lambda b: b[:-3],  # truncated
    lambda b: b + b"\x0b",  # a group start (wire type 3)
    lambda b: b + bytes([7 << 3 | 2, 0xFF, 0xFF, 0x7F]),  # a graph field longer than the file
    lambda b: b + b"\xff" * 11,  # a varint that never ends
])
def test_bytes_the_walk_cannot_read_answer_maybe(mangle: object) -> None:
    assert graph_nodes_mention(mangle(weights(1 << 12).model_bytes), b"Gather")  # type: ignore[operator]


def test_an_index_out_of_range_is_still_our_verdict_after_the_scan() -> None:
    from vm.sandbox.errors import IndexOutOfRange
    from vm.sandbox.executor import InferJob, ModelPackage
    from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

    spec = ModelSpec((ArraySpec("i", "int64", (2,)),), CompareMode.TOLERANT, 16, Tolerance(2, 100))
    package = ModelPackage(b"gather", _gather_model(), spec)
    [bad, good] = LocalExecutor().run_batch([InferJob(package, {"i": np.array([0, 4], np.int64)}),
                                             InferJob(package, {"i": np.array([0, 3], np.int64)})])
    assert isinstance(bad.error, IndexOutOfRange) and good.ok
