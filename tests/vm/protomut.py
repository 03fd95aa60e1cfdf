"""Protobuf wire-format mutation for the sandbox's totality tests (not a test module itself).

A model's bytes are parsed into a tree of raw fields (number, wire type, value), guided by the ONNX
descriptors so that nested messages become subtrees; a mutation then edits the tree the way a hostile
encoder could: change a number (negative, huge, an unknown enum), replace a string (non-UTF-8, empty, long,
another name of the model), duplicate, delete, reorder or add fields, give a field the wrong wire type, or
cut and flip the final bytes. Serializing the tree gives bytes that the ONNX parser may or may not accept,
which is the point: whatever they are, the canonicalizer and the checker must answer with their typed refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from onnx import ModelProto

VARINT, I64, LEN, I32 = 0, 1, 2, 5
U64 = 1 << 64

SPECIAL_INTS = (0, 1, 2, 7, 13, 21, 255, 1 << 31, (1 << 31) - 1, 1 << 32, (1 << 63) - 1, U64 - 1, U64 - 2,
                U64 - (1 << 31), U64 - (1 << 63), 1 << 40, 10**9)
SPECIAL_STRINGS = (b"", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"x\x00y", b"ai.onnx", b"com.microsoft", b"ai.onnx.ml",
                   b"\xe2\x82", "é".encode() * 90, b"y" * 3000)


@dataclass
class Msg:
    """A parsed message: its raw fields in wire order (value: int, bytes, or a nested Msg)."""

    descriptor: Any  # a protobuf Descriptor, or None for an unknown message
    fields: list[list[Any]] = field(default_factory=list)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _varint(value: int) -> bytes:
    value %= U64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse(buf: bytes, descriptor: Any = ModelProto.DESCRIPTOR) -> Msg:
    """The raw field tree of `buf` (ValueError if it is not wire format)."""
    msg = Msg(descriptor)
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == VARINT:
            value, i = _read_varint(buf, i)
        elif wire == I64:
            value, i = buf[i:i + 8], i + 8
        elif wire == LEN:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
            fd = descriptor.fields_by_number.get(number) if descriptor is not None else None
            if fd is not None and fd.type == FieldDescriptor.TYPE_MESSAGE:
                value = parse(value, fd.message_type)
        elif wire == I32:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf) or number == 0:
            raise ValueError("truncated")
        msg.fields.append([number, wire, value])
    return msg


def serialize(msg: Msg) -> bytes:
    out = bytearray()
    for number, wire, value in msg.fields:
        out += _varint(number << 3 | wire)
        if wire == VARINT:
            out += _varint(value)
        elif wire == LEN:
            data = serialize(value) if isinstance(value, Msg) else value
            out += _varint(len(data)) + data
        else:
            out += value
    return bytes(out)


def slots(msg: Msg) -> list[tuple[Msg, int]]:
    """Every field of the tree as (message, index), depth first."""
    found: list[tuple[Msg, int]] = []
    for i, (_, _, value) in enumerate(msg.fields):
        found.append((msg, i))
        if isinstance(value, Msg):
            found.extend(slots(value))
    return found


def strings(msg: Msg) -> list[bytes]:
    """Every length-delimited leaf that the schema calls a string (names, domains, op types)."""
    out: list[bytes] = []
    for number, wire, value in msg.fields:
        if isinstance(value, Msg):
            out.extend(strings(value))
        elif wire == LEN and msg.descriptor is not None:
            fd = msg.descriptor.fields_by_number.get(number)
            if fd is not None and fd.type == FieldDescriptor.TYPE_STRING:
                out.append(value)
    return out


KINDS = ("int", "str", "dup", "del", "wire", "move", "add", "swap_value")


def mutate(msg: Msg, kind: str, pick: int, choice: int, extra: int) -> None:
    """Apply one mutation of `kind` in place; `pick`, `choice` and `extra` select where and what."""
    every = slots(msg)
    if not every:
        msg.fields.append([1 + extra % 20, VARINT, SPECIAL_INTS[choice % len(SPECIAL_INTS)]])
        return
    parent, index = every[pick % len(every)]
    entry = parent.fields[index]
    number, wire, value = entry
    if kind == "int":
        ints = [(p, i) for p, i in every if p.fields[i][1] == VARINT]
        if ints:
            parent, index = ints[pick % len(ints)]
            parent.fields[index][2] = SPECIAL_INTS[choice % len(SPECIAL_INTS)] if extra % 4 else extra
    elif kind == "str":
        leaves = [(p, i) for p, i in every if p.fields[i][1] == LEN and not isinstance(p.fields[i][2], Msg)]
        if leaves:
            parent, index = leaves[pick % len(leaves)]
            names = strings(msg)
            pool = (*SPECIAL_STRINGS, *names, parent.fields[index][2] + b"\x80")
            parent.fields[index][2] = pool[choice % len(pool)]
    elif kind == "dup":
        parent.fields.insert(index + 1 + extra % 2 * (len(parent.fields) - index - 1), _copy(entry))
    elif kind == "del":
        del parent.fields[index]
    elif kind == "wire":
        if wire == VARINT:
            parent.fields[index] = [number, LEN, _varint(value)]
        elif wire == LEN:
            parent.fields[index] = [number, (VARINT, I32, I64)[choice % 3],
                                    extra if choice % 3 == 0 else bytes(4 + 4 * (choice % 3 == 2))]
        else:
            parent.fields[index] = [number, VARINT, extra]
    elif kind == "move":
        item = parent.fields.pop(index)
        parent.fields.insert(extra % (len(parent.fields) + 1), item)
    elif kind == "add":
        wire = (VARINT, LEN, I32, I64)[choice % 4]
        raw: Any = {VARINT: SPECIAL_INTS[extra % len(SPECIAL_INTS)], LEN: SPECIAL_STRINGS[extra % len(SPECIAL_STRINGS)],
                    I32: b"\xff\xff\xff\x7f", I64: b"\x00" * 8}[wire]
        parent.fields.insert(extra % (len(parent.fields) + 1), [1 + choice % 24, wire, raw])
    elif kind == "swap_value":
        same = [i for i, f in enumerate(parent.fields) if f[0] == number and f[1] == wire and i != index]
        if same:
            other = same[choice % len(same)]
            parent.fields[index][2], parent.fields[other][2] = parent.fields[other][2], parent.fields[index][2]


def clone(msg: Msg) -> Msg:
    return Msg(msg.descriptor, [_copy(f) for f in msg.fields])


def _copy(entry: list[Any]) -> list[Any]:
    number, wire, value = entry
    if isinstance(value, Msg):
        value = Msg(value.descriptor, [_copy(f) for f in value.fields])
    return [number, wire, value]


def damage(data: bytes, kind: int, at: int, value: int) -> bytes:
    """Byte-level damage after serialization: truncate, flip a byte, or duplicate a span."""
    if not data:
        return data
    at %= len(data)
    if kind == 0:
        return data[:at]
    if kind == 1:
        return data[:at] + bytes([data[at] ^ (1 + value % 255)]) + data[at + 1:]
    return data[:at] + data[at:at + 1 + value % 64] + data[at:]
