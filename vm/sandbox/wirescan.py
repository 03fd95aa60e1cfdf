"""Where a word can occur in a model's top-level graph nodes, read from the protobuf wire format without
parsing the model (docs/sandbox.md, "DenseNet-121: what bounds it").

A worker loading a model asks whether any node may be a Gather before it parses the whole file to find
index inputs (`executor._index_bounds`). Scanning every byte for b"Gather" cost 0.5 ns per byte of random
weights (24 ms for a 48 MB model, 8 % of its cold load); the nodes are a few KiB. This walks ModelProto's
fields, enters each `graph` (field 7, every occurrence: protobuf merges repeated ones) and searches only the
bytes of its `node` entries (GraphProto field 1), jumping over initializers by their length prefixes. The
answer is conservative: bytes that do not walk as protobuf answer True, so the caller parses them as before.
"""

from __future__ import annotations

from collections.abc import Iterator

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_NODE = 1  # GraphProto.node
_FIXED = {1: 8, 5: 4}  # wire type -> bytes (fixed64, fixed32)


class _Malformed(ValueError):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes, pos: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """(start, end) of every length-delimited field `number` in data[pos:end], a whole message."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos, end)
        elif wire in _FIXED:
            pos += _FIXED[wire]
        elif wire == 2:
            size, pos = _varint(data, pos, end)
            if pos + size > end:
                raise _Malformed("field longer than its message")
            if key >> 3 == number:
                yield pos, pos + size
            pos += size
        else:  # groups (deprecated) or garbage
            raise _Malformed(f"wire type {wire}")
    if pos != end:
        raise _Malformed("field runs past its message")


def graph_nodes_mention(model_bytes: bytes, word: bytes) -> bool:
    """Whether `word` occurs in the bytes of a node of the model's top-level graph; True as well when the
    bytes are not a protobuf message this walk can read (the caller then parses them)."""
    try:
        for graph_start, graph_end in _fields(model_bytes, 0, len(model_bytes), _MODEL_GRAPH):
            for start, stop in _fields(model_bytes, graph_start, graph_end, _GRAPH_NODE):
                if model_bytes.find(word, start, stop) >= 0:
                    return True
    except _Malformed:
        return True
    return False
