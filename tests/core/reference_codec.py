"""The closure-based codec that `core.codec`'s generated code replaced, kept as a test oracle.

It reads the same annotations and applies each rule in the plainest way (one closure per field, values built
through the dataclass `__init__`). `test_codec_reference.py` checks that the generated codec produces the
same bytes, accepts exactly the same inputs, builds the same typed values and raises the same error types.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

import msgpack

from core.codec import IntRange, MaxLen, Wire
from core.errors import DecodeError, TooLarge
from core.types import BoundedInt, FixedBytes

Enc = Callable[[Any], Any]
Dec = Callable[[Any], Any]

_CODECS: dict[type, tuple[Enc, Dec]] = {}


def encode(value: Wire) -> bytes:
    data: bytes = msgpack.packb(_codec_of(type(value))[0](value), use_bin_type=True)
    return data


def to_obj(value: Wire) -> Any:
    return _codec_of(type(value))[0](value)


def decode(cls: type[Wire], data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{cls.__name__}: expected bytes, got {type(data).__name__}")
    if len(data) > cls.MAX_BYTES:
        raise DecodeError(f"{cls.__name__}: {len(data)} bytes exceeds the limit of {cls.MAX_BYTES}")
    data = bytes(data)
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError, RecursionError, OverflowError) as exc:
        raise DecodeError(f"not valid msgpack ({type(exc).__name__})") from None
    if msgpack.packb(raw, use_bin_type=True) != data:
        raise DecodeError("not the canonical encoding")
    try:
        return _codec_of(cls)[1](raw)
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None


def from_obj(cls: type[Wire], obj: Any) -> Any:
    return _codec_of(cls)[1](obj)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


def _codec_of(cls: type) -> tuple[Enc, Dec]:
    codec = _CODECS.get(cls)
    if codec is None:
        codec = _compile_class(cls)
        _CODECS[cls] = codec
    return codec


def _compile_class(cls: type) -> tuple[Enc, Dec]:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    field_codecs = [(_compile(hints[name], f"{cls.__name__}.{name}"), name) for name in names]
    encs = [c[0] for c, _ in field_codecs]
    decs = [c[1] for c, _ in field_codecs]
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
        value = cls(*[d(item) for d, item in zip(decs, obj, strict=True)])
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
            enc_i, dec_i = _compile(inner_tp, where)
            return (lambda v: None if v is None else enc_i(v)), (lambda o: None if o is None else dec_i(o))
        return _tagged_union(args, where)
    if origin is tuple:
        assert max_len is not None
        return _sequence(_compile(get_args(tp)[0], where), max_len, where)
    if tp is bool:
        return _bool(where)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return _int_enum(tp, where)
    if isinstance(tp, type) and issubclass(tp, BoundedInt):
        return _int(tp.MAX, 0, tp, where)
    if tp is int:
        assert int_range is not None
        return _int(int_range.hi, int_range.lo, None, where)
    if isinstance(tp, type) and issubclass(tp, FixedBytes):
        return _fixed_bytes(tp, where)
    if tp is bytes:
        assert max_len is not None
        return _bytes(max_len, where)
    if tp is str:
        assert max_len is not None
        return _str(max_len, where)
    if isinstance(tp, type) and issubclass(tp, Wire):
        nested = tp
        return (lambda v: _codec_of(nested)[0](v)), (lambda o: _codec_of(nested)[1](o))
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _tagged_union(classes: tuple[Any, ...], where: str) -> tuple[Enc, Dec]:
    by_tag: dict[int, type[Wire]] = {c.TAG: c for c in classes}
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
            raise TooLarge(f"{where}: {len(v)} items exceeds {max_len}")
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
        return typing.cast(bool, v)

    def dec(o: Any) -> bool:
        if type(o) is not bool:
            raise DecodeError(f"{where}: expected bool")
        return typing.cast(bool, o)

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
        return typing.cast(int, cast(o)) if cast is not None else o

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
            raise TooLarge(f"{where}: {len(v)} bytes exceeds {max_len}")
        return bytes(v)

    def dec(o: Any) -> bytes:
        if type(o) is not bytes:
            raise DecodeError(f"{where}: expected bytes")
        if len(o) > max_len:
            raise DecodeError(f"{where}: {len(o)} bytes exceeds {max_len}")
        return typing.cast(bytes, o)

    return enc, dec


def _str(max_len: int, where: str) -> tuple[Enc, Dec]:
    def enc(v: Any) -> str:
        if not isinstance(v, str):
            raise TypeError(f"{where}: expected str")
        if len(v.encode()) > max_len:
            raise TooLarge(f"{where}: string exceeds {max_len} bytes")
        return str(v)

    def dec(o: Any) -> str:
        if type(o) is not str:
            raise DecodeError(f"{where}: expected str")
        if len(o.encode()) > max_len:
            raise DecodeError(f"{where}: string exceeds {max_len} bytes")
        return typing.cast(str, o)

    return enc, dec
