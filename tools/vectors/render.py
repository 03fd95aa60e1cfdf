"""Wire values as JSON: each field by name (bytes as hex, integers as numbers, enums by value), and each wire
type's schema (field order and types), so the files can be read without this code."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

from core.codec import IntRange, MaxLen, Wire
from core.types import BoundedInt, FixedBytes


def render(value: object) -> Any:
    """The JSON form of a decoded value. A member of a tagged union also names its type and tag."""
    if isinstance(value, Wire):
        out: dict[str, Any] = {}
        if type(value).TAG is not None:
            out["_type"] = type(value).__name__
            out["_tag"] = type(value).TAG
        for f in dataclasses.fields(typing.cast(Any, value)):
            out[f.name] = render(getattr(value, f.name))
        return out
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [render(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


def describe(tp: Any) -> str:
    """A field type in words: `Height (u64)`, `bytes (max 256)`, `tuple[Vote] (max 100)`, `Hash32 | None`."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        text = describe(base)
        for m in meta:
            if isinstance(m, MaxLen):
                text += f" (max {m.n})"
            elif isinstance(m, IntRange):
                text += f" (in [{m.lo}, {m.hi}])"
        return text
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"tuple[{describe(typing.get_args(tp)[0])}]"
    if isinstance(tp, type):
        if issubclass(tp, enum.IntEnum):
            return f"{tp.__name__} (enum: {', '.join(f'{m.name}={m.value}' for m in tp)})"
        if issubclass(tp, FixedBytes):
            return f"{tp.__name__} ({tp.SIZE} bytes)"
        if issubclass(tp, BoundedInt):
            return f"{tp.__name__} (in [0, {tp.MAX}])"
        if issubclass(tp, Wire) and tp.TAG is not None:
            return f"{tp.__name__} (tag {tp.TAG})"
        return tp.__name__
    raise TypeError(f"cannot describe {tp!r}")


def schema(cls: type[Wire]) -> list[list[str]]:
    """[field name, type] in wire order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [[f.name, describe(hints[f.name])] for f in dataclasses.fields(typing.cast(Any, cls))]


def dump(doc: object) -> bytes:
    """The one byte form of a vector file: JSON, one-space indent, keys in insertion order, a final newline."""
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()
