"""Canonical encoding: every hashed, signed or sent value has exactly one byte form.

A wire type is a frozen, slotted dataclass declared with `@wire(max_bytes=...)`. It encodes as a msgpack
array of its fields in declaration order (no maps, no floats, no extension types). Decoding is strict:

- the input must not exceed the type's `MAX_BYTES`;
- the bytes must be the minimal msgpack form (re-packing the decoded value gives the same bytes), which
  rejects non-canonical integers and length prefixes and trailing bytes;
- every field must be present with exactly its declared type and range, and no field may be extra;
- containers and byte strings are bounded per field (`MaxLen`).

So `T.decode(x.encode()) == x` and `T.decode(b).encode() == b` for every accepted `b`; anything else raises
`DecodeError`, and only `DecodeError`.

Field annotations drive the codec: typed ids from `core.types` (fixed-length bytes, bounded ints), `bool`,
`Annotated[int, IntRange(lo, hi)]` (aliases `U8` … `I64`), `Annotated[bytes | str, MaxLen(n)]`,
`Annotated[tuple[X, ...], MaxLen(n)]`, `X | None`, nested wire types, and unions of wire types that each
declare a distinct `tag` (encoded as `[tag, fields]`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar, dataclass_transform, get_args, get_origin

import msgpack

from core.errors import DecodeError
from core.types import I64_MAX, I64_MIN, U64_MAX, BoundedInt, FixedBytes


@dataclasses.dataclass(frozen=True, slots=True)
class MaxLen:
    """Upper bound on the length of a bytes, str or tuple field."""

    n: int


@dataclasses.dataclass(frozen=True, slots=True)
class IntRange:
    """Inclusive range of an integer field."""

    lo: int
    hi: int


U8 = Annotated[int, IntRange(0, 0xFF)]
U16 = Annotated[int, IntRange(0, 0xFFFF)]
U32 = Annotated[int, IntRange(0, 0xFFFF_FFFF)]
U64 = Annotated[int, IntRange(0, U64_MAX)]
I64 = Annotated[int, IntRange(I64_MIN, I64_MAX)]

Enc = Callable[[Any], Any]
Dec = Callable[[Any], Any]

T = TypeVar("T", bound="Wire")


class Wire:
    """Base of every wire type; `@wire` fills in the codec.

    A subclass may define `validate_wire(self)` raising ValueError for rules that span fields (a tensor's
    byte length matching its shape, say); decoding calls it and reports a DecodeError.
    """

    __slots__ = ()
    MAX_BYTES: ClassVar[int]
    TAG: ClassVar[int | None]
    _codec: ClassVar[tuple[Enc, Dec] | None]

    def encode(self) -> bytes:
        data: bytes = msgpack.packb(_codec_of(type(self))[0](self), use_bin_type=True)
        return data

    @classmethod
    def decode(cls: type[T], data: bytes) -> T:
        return decode_as(cls, data, cls.MAX_BYTES)

    def to_obj(self) -> Any:
        """The msgpack-ready object (nested lists) of this value."""
        return _codec_of(type(self))[0](self)

    @classmethod
    def from_obj(cls: type[T], obj: Any) -> T:
        return typing.cast(T, _codec_of(cls)[1](obj))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(typing.cast(Any, self), **changes)  # type: ignore[no-any-return]


@dataclass_transform(frozen_default=True)
def wire(*, max_bytes: int, tag: int | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: make `cls` a frozen slotted dataclass with a canonical codec."""

    def apply(cls: type[T]) -> type[T]:
        dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
        dc.MAX_BYTES = max_bytes
        dc.TAG = tag
        dc._codec = None
        return dc

    return apply


def decode_as(cls: type[T], data: bytes, max_bytes: int) -> T:
    """Decode `data` as `cls` with every canonical-form check."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{cls.__name__}: expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"{cls.__name__}: {len(data)} bytes exceeds the limit of {max_bytes}")
    raw = unpack_canonical(bytes(data), cls.__name__)
    try:
        return typing.cast(T, _codec_of(cls)[1](raw))
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None


def unpack_canonical(data: bytes, what: str = "value") -> Any:
    """msgpack-decode `data`, requiring the minimal encoding and refusing maps, floats and extensions."""
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError, RecursionError, OverflowError) as exc:
        raise DecodeError(f"{what}: not valid msgpack ({type(exc).__name__})") from None
    if msgpack.packb(raw, use_bin_type=True) != data:
        raise DecodeError(f"{what}: not the canonical encoding")
    return raw


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


# ---------------------------------------------------------------------------------------------- compiler


def _codec_of(cls: type) -> tuple[Enc, Dec]:
    codec = cls.__dict__.get("_codec")
    if codec is None:
        codec = _compile_class(cls)
        cls._codec = codec  # type: ignore[attr-defined]
    return typing.cast(tuple[Enc, Dec], codec)


def _compile_class(cls: type) -> tuple[Enc, Dec]:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    field_codecs = [(_compile(hints[name], f"{cls.__name__}.{name}"), name) for name in names]
    encs = [c[0] for c, _ in field_codecs]
    decs = [(c[1], n) for c, n in field_codecs]
    n_fields = len(names)
    cls_name = cls.__name__
    check = getattr(cls, "validate_wire", None)

    def enc(value: Any) -> list[Any]:
        if type(value) is not cls:
            raise TypeError(f"expected {cls_name}, got {type(value).__name__}")
        return [e(getattr(value, name)) for e, name in zip(encs, names, strict=True)]

    def dec(obj: Any) -> Any:
        if type(obj) is not list:
            raise DecodeError(f"{cls_name}: expected an array, got {type(obj).__name__}")
        if len(obj) != n_fields:
            raise DecodeError(f"{cls_name}: expected {n_fields} fields, got {len(obj)}")
        value = cls(*[d(item) for (d, _), item in zip(decs, obj, strict=True)])
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                raise DecodeError(f"{cls_name}: {exc}") from None
        return value

    return enc, dec


def _compile(tp: Any, where: str) -> tuple[Enc, Dec]:
    meta: tuple[Any, ...] = ()
    if get_origin(tp) is Annotated:
        tp, *rest = get_args(tp)
        meta = tuple(rest)
    max_len = next((m.n for m in meta if isinstance(m, MaxLen)), None)
    int_range = next((m for m in meta if isinstance(m, IntRange)), None)
    origin = get_origin(tp)

    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args:
            rest_args = tuple(a for a in args if a is not type(None))
            inner_tp: Any = rest_args[0] if len(rest_args) == 1 else typing.Union[rest_args]  # noqa: UP007
            if max_len is not None:
                inner_tp = Annotated[inner_tp, MaxLen(max_len)]
            return _optional(_compile(inner_tp, where))
        return _tagged_union(args, where)
    if origin is tuple:
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: only homogeneous tuple[X, ...] fields are supported")
        if max_len is None:
            raise TypeError(f"{where}: tuple fields need MaxLen")
        return _sequence(_compile(args[0], where), max_len, where)
    if tp is bool:
        return _bool(where)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return _int_enum(tp, where)
    if isinstance(tp, type) and issubclass(tp, BoundedInt):
        return _int(tp.MAX, 0, tp, where)
    if tp is int:
        if int_range is None:
            raise TypeError(f"{where}: int fields need IntRange (use U8 … I64)")
        return _int(int_range.hi, int_range.lo, None, where)
    if isinstance(tp, type) and issubclass(tp, FixedBytes):
        return _fixed_bytes(tp, where)
    if tp is bytes:
        if max_len is None:
            raise TypeError(f"{where}: bytes fields need MaxLen")
        return _bytes(max_len, where)
    if tp is str:
        if max_len is None:
            raise TypeError(f"{where}: str fields need MaxLen")
        return _str(max_len, where)
    if isinstance(tp, type) and issubclass(tp, Wire):
        return _nested(tp)
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _nested(cls: type[Wire]) -> tuple[Enc, Dec]:
    # Resolved lazily so that types may refer to types defined later in their module.
    return (lambda v: _codec_of(cls)[0](v)), (lambda o: _codec_of(cls)[1](o))


def _optional(inner: tuple[Enc, Dec]) -> tuple[Enc, Dec]:
    enc_i, dec_i = inner
    return (lambda v: None if v is None else enc_i(v)), (lambda o: None if o is None else dec_i(o))


def _tagged_union(classes: tuple[Any, ...], where: str) -> tuple[Enc, Dec]:
    by_tag: dict[int, type[Wire]] = {}
    for c in classes:
        if not (isinstance(c, type) and issubclass(c, Wire)) or c.TAG is None:
            raise TypeError(f"{where}: union members must be wire types with a tag")
        if c.TAG in by_tag:
            raise TypeError(f"{where}: duplicate tag {c.TAG}")
        by_tag[c.TAG] = c
    members = tuple(by_tag.values())

    def enc(v: Any) -> list[Any]:
        if type(v) not in members:
            raise TypeError(f"{where}: {type(v).__name__} is not a member of the union")
        return [v.TAG, _codec_of(type(v))[0](v)]

    def dec(o: Any) -> Any:
        if type(o) is not list or len(o) != 2 or type(o[0]) is not int:
            raise DecodeError(f"{where}: expected [tag, value]")
        cls = by_tag.get(o[0])
        if cls is None:
            raise DecodeError(f"{where}: unknown tag {o[0]}")
        return _codec_of(cls)[1](o[1])

    return enc, dec


def _sequence(inner: tuple[Enc, Dec], max_len: int, where: str) -> tuple[Enc, Dec]:
    enc_i, dec_i = inner

    def enc(v: Any) -> list[Any]:
        if type(v) is not tuple:
            raise TypeError(f"{where}: expected a tuple, got {type(v).__name__}")
        if len(v) > max_len:
            raise ValueError(f"{where}: {len(v)} items exceeds {max_len}")
        return [enc_i(x) for x in v]

    def dec(o: Any) -> tuple[Any, ...]:
        if type(o) is not list:
            raise DecodeError(f"{where}: expected an array")
        if len(o) > max_len:
            raise DecodeError(f"{where}: {len(o)} items exceeds {max_len}")
        return tuple(dec_i(x) for x in o)

    return enc, dec


def _bool(where: str) -> tuple[Enc, Dec]:
    def enc(v: Any) -> bool:
        if type(v) is not bool:
            raise TypeError(f"{where}: expected bool")
        return v

    def dec(o: Any) -> bool:
        if type(o) is not bool:
            raise DecodeError(f"{where}: expected bool")
        return o

    return enc, dec


def _int(hi: int, lo: int, cast: type | None, where: str) -> tuple[Enc, Dec]:
    def enc(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{where}: expected int, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise ValueError(f"{where}: {v} out of range [{lo}, {hi}]")
        return int(v)

    def dec(o: Any) -> int:
        if type(o) is not int:
            raise DecodeError(f"{where}: expected int, got {type(o).__name__}")
        if not lo <= o <= hi:
            raise DecodeError(f"{where}: {o} out of range [{lo}, {hi}]")
        return cast(o) if cast is not None else o

    return enc, dec


def _int_enum(tp: type[enum.IntEnum], where: str) -> tuple[Enc, Dec]:
    values = {int(m): m for m in tp}

    def enc(v: Any) -> int:
        if v not in values.values():
            raise ValueError(f"{where}: {v!r} is not a {tp.__name__}")
        return int(v)

    def dec(o: Any) -> enum.IntEnum:
        if type(o) is not int or o not in values:
            raise DecodeError(f"{where}: {o!r} is not a valid {tp.__name__}")
        return values[o]

    return enc, dec


def _fixed_bytes(tp: type[FixedBytes], where: str) -> tuple[Enc, Dec]:
    size = tp.SIZE

    def enc(v: Any) -> bytes:
        if not isinstance(v, bytes) or len(v) != size:
            raise ValueError(f"{where}: expected {size} bytes")
        return bytes(v)

    def dec(o: Any) -> FixedBytes:
        if type(o) is not bytes or len(o) != size:
            raise DecodeError(f"{where}: expected {size} bytes")
        return tp(o)

    return enc, dec


def _bytes(max_len: int, where: str) -> tuple[Enc, Dec]:
    def enc(v: Any) -> bytes:
        if not isinstance(v, bytes):
            raise TypeError(f"{where}: expected bytes")
        if len(v) > max_len:
            raise ValueError(f"{where}: {len(v)} bytes exceeds {max_len}")
        return bytes(v)

    def dec(o: Any) -> bytes:
        if type(o) is not bytes:
            raise DecodeError(f"{where}: expected bytes")
        if len(o) > max_len:
            raise DecodeError(f"{where}: {len(o)} bytes exceeds {max_len}")
        return o

    return enc, dec


def _str(max_len: int, where: str) -> tuple[Enc, Dec]:
    def enc(v: Any) -> str:
        if not isinstance(v, str):
            raise TypeError(f"{where}: expected str")
        if len(v.encode()) > max_len:
            raise ValueError(f"{where}: string exceeds {max_len} bytes")
        return str(v)

    def dec(o: Any) -> str:
        if type(o) is not str:
            raise DecodeError(f"{where}: expected str")
        if len(o.encode()) > max_len:
            raise DecodeError(f"{where}: string exceeds {max_len} bytes")
        return o

    return enc, dec
