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

Speed: on first use each wire type gets its encoder and decoder generated as Python source from its
annotations (as dataclasses does for `__init__`) and installed as the class's own `encode`, `decode`,
`to_obj` and `from_obj`. Exact-type values take one inline check per field; anything else falls back to the
general rules, which raise the same errors as before. `CachedWire` types also keep their encoding and hash,
including those decoded inside a larger message, and a type holding them (directly, in an optional or a
tuple, or as a union's member) encodes by splicing their encodings into its own.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import threading
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar, dataclass_transform, get_args, get_origin

import msgpack

from core.errors import DecodeError, TooLarge
from core.types import I64_MAX, I64_MIN, U64_MAX, BoundedInt, FixedBytes, Hash32


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
V = TypeVar("V")

_CODEC_METHODS = ("encode", "decode", "to_obj", "from_obj")


class Wire:
    """Base of every wire type; `@wire` fills in the codec.

    A subclass may define `validate_wire(self)` raising ValueError for rules that span fields (a tensor's
    byte length matching its shape, say); decoding calls it and reports a DecodeError.

    The methods below only run once per type: they compile its codec, which replaces them on the class.
    """

    __slots__ = ()
    MAX_BYTES: ClassVar[int]
    TAG: ClassVar[int | None]
    _codec: ClassVar[_Codec | None]

    def encode(self) -> bytes:
        data: bytes = _codec(type(self)).encode(self)
        return data

    @classmethod
    def decode(cls: type[T], data: bytes) -> T:
        return decode_as(cls, data, cls.MAX_BYTES)

    def to_obj(self) -> Any:
        """The msgpack-ready object (nested lists of plain ints, bytes, str, bool, None) of this value."""
        return _codec(type(self)).enc_obj(self)

    @classmethod
    def from_obj(cls: type[T], obj: Any) -> T:
        return typing.cast(T, _codec(cls).dec(obj))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(typing.cast(Any, self), **changes)  # type: ignore[no-any-return]


class CachedWire(Wire):
    """A wire type whose instances keep their encoding and its SHA-256 once computed.

    Safe because wire values are immutable (frozen, and every field type is immutable). The cache lives in
    slots that are not dataclass fields, so equality, hashing, `repr`, pickling and the codec ignore it, and
    `replace()` builds a new instance with an empty cache. Decoding stores the input bytes (they are the
    canonical encoding) in the cache of the decoded value, and decoding a message stores in each CachedWire
    value inside it (a batch's or a block's transactions, a block's results and header) its own part of the
    input: msgpack packs the decoded object of that part, in C. That part equals the value's encoding
    because the whole input passed the canonical check (`unpack_canonical`: re-packing the decoded object
    gives the input, and msgpack is concatenative, so each item's bytes are the packing of its object), and
    each item's object is exactly what the value's encoder produces (the decoder accepts only exact types,
    which encode back to the same objects). So hashing or re-sending a transaction that arrived inside a
    batch or a block encodes nothing again. When the input is bytes, neighbouring items of a sequence that
    pack to the same bytes are one value, decoded once and shared (a block's results are mostly one value);
    `from_obj` does not share, as its objects may pack alike and still be refused (a tuple, an IntEnum).

    `derived` keeps other values computed from the fields alone (a transaction's decoded payload, its
    sender's address) in a third such slot, so each is computed once per instance, whoever asks.
    """

    __slots__ = ("_wire_bytes", "_wire_hash", "_wire_memo")
    _wire_bytes: bytes | None
    _wire_hash: Hash32 | None
    _wire_memo: dict[str, Any] | None

    def digest(self) -> Hash32:
        """SHA-256 of `encode()`, computed once per instance."""
        try:
            digest = self._wire_hash
        except AttributeError:  # made without __init__ (copy, pickle): the slots are unset
            digest = None
        if digest is None:
            digest = bytes.__new__(Hash32, hashlib.sha256(self.encode()).digest())  # = sha256(...), 32 bytes
            _set_cached_hash(self, digest)
        return digest

    def derived(self, key: str, compute: Callable[[Any], V]) -> V:
        """`compute(self)`, computed once per instance and kept under `key`. `compute` must be a pure function
        of the fields (they are immutable) returning an immutable value; two threads asking at once may both
        compute it, and either result is kept."""
        try:
            memo = self._wire_memo
        except AttributeError:  # made without __init__ (copy, pickle)
            memo = None
        if memo is None:
            value = compute(self)
            _set_cached_memo(self, {key: value})
            return value
        found = memo.get(key, _MISSING)
        if found is _MISSING:
            found = memo[key] = compute(self)
        return typing.cast(V, found)


_set_cached_bytes: Callable[[Any, bytes | None], None] = CachedWire.__dict__["_wire_bytes"].__set__
_set_cached_hash: Callable[[Any, Hash32 | None], None] = CachedWire.__dict__["_wire_hash"].__set__
_set_cached_memo: Callable[[Any, dict[str, Any] | None], None] = CachedWire.__dict__["_wire_memo"].__set__


@dataclass_transform(frozen_default=True)
def wire(*, max_bytes: int, tag: int | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: make `cls` a frozen slotted dataclass with a canonical codec."""

    def apply(cls: type[T]) -> type[T]:
        own = frozenset(name for name in (*_CODEC_METHODS, "__init__", "replace") if name in cls.__dict__)
        dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
        dc.MAX_BYTES = max_bytes
        dc.TAG = tag
        dc._codec = None
        dc._wire_own = own  # type: ignore[attr-defined]
        if "__init__" not in own:
            _install_init(dc, "replace" not in own)
        return dc

    return apply


def _install_init(cls: type, with_replace: bool) -> None:
    """Replace the dataclass `__init__` by one that stores through the slot descriptors.

    Same parameters and effect; about twice as fast as the frozen dataclass one (which calls
    `object.__setattr__` per field), and it empties the cache slots of a `CachedWire`. Kept as generated by
    dataclasses for anything unusual (defaults from factories, keyword-only or init=False fields, InitVars,
    `__post_init__`). `replace` gets a generated version too: `dataclasses.replace` walks the fields and
    builds a dict on every call.
    """
    fields = dataclasses.fields(cls)
    if (hasattr(cls, "__post_init__") or len(fields) != len(cls.__dataclass_fields__)  # type: ignore[attr-defined]
            or any(f.default_factory is not dataclasses.MISSING or f.kw_only or not f.init for f in fields)):
        return
    # Generated names start with __wire_ so that no field name (a parameter here) can shadow them.
    ns: dict[str, Any] = {}
    params = []
    body = []
    for i, f in enumerate(fields):
        ns[f"__wire_s{i}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            ns[f"__wire_d{i}"] = f.default
            params.append(f"{f.name}=__wire_d{i}")
        body.append(f"    __wire_s{i}(self, {f.name})")
    if issubclass(cls, CachedWire):
        ns["__wire_sb"], ns["__wire_sh"], ns["__wire_sm"] = _set_cached_bytes, _set_cached_hash, _set_cached_memo
        body += ["    __wire_sb(self, None)", "    __wire_sh(self, None)", "    __wire_sm(self, None)"]
    text = "\n".join([f"def __init__(self, {', '.join(params)}):", *body] if body else
                     ["def __init__(self):", "    pass"])
    names = [f.name for f in fields]
    if with_replace:
        ns.update(__wire_missing=_MISSING, __wire_cls=cls, __wire_type=type, __wire_other=_replace_other)
        keywords = "".join(f", *, {n}=__wire_missing" if i == 0 else f", {n}=__wire_missing"
                           for i, n in enumerate(names))
        text += "\n\n" + "\n".join([
            f"def replace(self{keywords}):",
            "    if __wire_type(self) is not __wire_cls:",
            f"        return __wire_other(self, {{{', '.join(f'{n!r}: {n}' for n in names)}}})",
            f"    return __wire_cls({', '.join(f'self.{n} if {n} is __wire_missing else {n}' for n in names)})"])
    exec(compile(text, f"<wire init {cls.__module__}.{cls.__qualname__}>", "exec"), ns)
    for method in ("__init__", "replace") if with_replace else ("__init__",):
        fn = ns[method]
        fn.__qualname__ = f"{cls.__qualname__}.{method}"
        fn.__module__ = cls.__module__
        setattr(cls, method, fn)


_MISSING = object()


def _replace_other(value: Any, changes: dict[str, Any]) -> Any:
    """`replace` on an instance of an undecorated subclass: the dataclass way."""
    return dataclasses.replace(value, **{k: v for k, v in changes.items() if v is not _MISSING})


def decode_as(cls: type[T], data: bytes, max_bytes: int) -> T:
    """Decode `data` as `cls` with every canonical-form check."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{cls.__name__}: expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"{cls.__name__}: {len(data)} bytes exceeds the limit of {max_bytes}")
    data = bytes(data)
    raw = unpack_canonical(data, cls.__name__)
    try:
        value = _codec(cls).dec_trusted(raw)
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None
    if isinstance(value, CachedWire) and type(value) is cls:
        _set_cached_bytes(value, data)
    return typing.cast(T, value)


class _ThreadPacker(threading.local):
    """A msgpack Packer per thread: reusing one saves allocating a packer and its buffer on every call."""

    def __init__(self) -> None:
        self.pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack


_packer = _ThreadPacker()


def pack(obj: Any) -> bytes:
    """= msgpack.packb(obj, use_bin_type=True), with this thread's reusable packer."""
    return _packer.pack(obj)


def unpack_canonical(data: bytes, what: str = "value") -> Any:
    """msgpack-decode `data`, requiring the minimal encoding and refusing maps, floats and extensions."""
    try:
        raw = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError, RecursionError, OverflowError) as exc:
        raise DecodeError(f"{what}: not valid msgpack ({type(exc).__name__})") from None
    try:
        canonical = _packer.pack(raw) == data
    except (ValueError, TypeError, OverflowError, RecursionError):
        canonical = False
    if not canonical:
        raise DecodeError(f"{what}: not the canonical encoding")
    return raw


def _dec_shared(dec: Callable[[Any], Any], items: list[Any]) -> tuple[Any, ...]:
    """The CachedWire values of `items` (objects from `unpack_canonical`), each keeping its encoding (its
    packed object: see `CachedWire`); a run of items that pack to the same bytes decodes once and shares
    that value, which is immutable. `dec` is the item type's decoder of such objects."""
    pack = _packer.pack
    out = []
    last = None
    value = None
    for item in items:
        data = pack(item)
        if data != last:
            value = dec(item)
            _set_cached_bytes(value, data)
            last = data
        out.append(value)
    return tuple(out)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


# ------------------------------------------------------------------------------------------ field specs
#
# An annotation parses into a spec tuple: ("bool",), ("int", lo, hi, cast), ("enum", E), ("fixed", F),
# ("bytes", n), ("str", n), ("opt", spec), ("seq", spec, n), ("wire", W), ("union", (W1, W2, ...)).

Spec = tuple[Any, ...]
_SCALARS = frozenset({"bool", "int", "enum", "fixed", "bytes", "str"})


def _parse(tp: Any, where: str) -> Spec:
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
            return ("opt", _parse(inner_tp, where))
        return ("union", _union_members(args, where))
    if origin is tuple:
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: only homogeneous tuple[X, ...] fields are supported")
        if max_len is None:
            raise TypeError(f"{where}: tuple fields need MaxLen")
        return ("seq", _parse(args[0], where), max_len)
    if tp is bool:
        return ("bool",)
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return ("enum", tp)
    if isinstance(tp, type) and issubclass(tp, BoundedInt):
        return ("int", 0, tp.MAX, tp)
    if tp is int:
        if int_range is None:
            raise TypeError(f"{where}: int fields need IntRange (use U8 … I64)")
        return ("int", int_range.lo, int_range.hi, None)
    if isinstance(tp, type) and issubclass(tp, FixedBytes):
        return ("fixed", tp)
    if tp is bytes:
        if max_len is None:
            raise TypeError(f"{where}: bytes fields need MaxLen")
        return ("bytes", max_len)
    if tp is str:
        if max_len is None:
            raise TypeError(f"{where}: str fields need MaxLen")
        return ("str", max_len)
    if isinstance(tp, type) and issubclass(tp, Wire):
        return ("wire", tp)
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _union_members(classes: tuple[Any, ...], where: str) -> tuple[type[Wire], ...]:
    tags: set[int] = set()
    for c in classes:
        if not (isinstance(c, type) and issubclass(c, Wire)) or c.TAG is None:
            raise TypeError(f"{where}: union members must be wire types with a tag")
        if c.TAG in tags:
            raise TypeError(f"{where}: duplicate tag {c.TAG}")
        tags.add(c.TAG)
    return tuple(classes)


# ------------------------------------------------------------------------- errors and general fallbacks
#
# Generated code handles exact-type values inline and calls these for anything else: they apply the
# general rule (accepting, say, a plain int for a Height field) or raise the error.


def _enc_int_slow(v: Any, lo: int, hi: int, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{where}: expected int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValueError(f"{where}: {v} out of range [{lo}, {hi}]")
    return int(v)


def _enc_enum_slow(v: Any, members: list[enum.IntEnum], where: str, name: str) -> int:
    if v not in members:
        raise ValueError(f"{where}: {v!r} is not a {name}")
    return int(v)


def _enc_fixed_slow(v: Any, size: int, where: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != size:
        raise ValueError(f"{where}: expected {size} bytes")
    return bytes(v)


def _enc_bytes_slow(v: Any, max_len: int, where: str) -> bytes:
    if not isinstance(v, bytes):
        raise TypeError(f"{where}: expected bytes")
    if len(v) > max_len:
        raise TooLarge(f"{where}: {len(v)} bytes exceeds {max_len}")
    return bytes(v)


def _enc_str_slow(v: Any, max_len: int, where: str) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{where}: expected str")
    if len(v.encode()) > max_len:
        raise TooLarge(f"{where}: string exceeds {max_len} bytes")
    return str(v)


def _enc_bool_error(where: str) -> typing.NoReturn:
    raise TypeError(f"{where}: expected bool")


def _enc_seq_error(v: Any, max_len: int, where: str) -> typing.NoReturn:
    if type(v) is not tuple:
        raise TypeError(f"{where}: expected a tuple, got {type(v).__name__}")
    raise TooLarge(f"{where}: {len(v)} items exceeds {max_len}")


def _enc_class_error(v: Any, name: str) -> typing.NoReturn:
    raise TypeError(f"expected {name}, got {type(v).__name__}")


def _enc_union_error(v: Any, where: str) -> typing.NoReturn:
    raise TypeError(f"{where}: {type(v).__name__} is not a member of the union")


def _dec_error(message: str) -> typing.NoReturn:
    raise DecodeError(message)


def _dec_int_error(o: Any, lo: int, hi: int, where: str) -> typing.NoReturn:
    if type(o) is not int:
        raise DecodeError(f"{where}: expected int, got {type(o).__name__}")
    raise DecodeError(f"{where}: {o} out of range [{lo}, {hi}]")


def _dec_enum_error(o: Any, where: str, name: str) -> typing.NoReturn:
    raise DecodeError(f"{where}: {o!r} is not a valid {name}")


def _dec_bytes_error(o: Any, max_len: int, where: str) -> typing.NoReturn:
    if type(o) is not bytes:
        raise DecodeError(f"{where}: expected bytes")
    raise DecodeError(f"{where}: {len(o)} bytes exceeds {max_len}")


def _dec_str_error(o: Any, max_len: int, where: str) -> typing.NoReturn:
    if type(o) is not str:
        raise DecodeError(f"{where}: expected str")
    raise DecodeError(f"{where}: string exceeds {max_len} bytes")


def _dec_seq_error(o: Any, max_len: int, where: str) -> typing.NoReturn:
    if type(o) is not list:
        raise DecodeError(f"{where}: expected an array")
    raise DecodeError(f"{where}: {len(o)} items exceeds {max_len}")


def _dec_class_error(o: Any, n_fields: int, name: str) -> typing.NoReturn:
    if type(o) is not list:
        raise DecodeError(f"{name}: expected an array, got {type(o).__name__}")
    raise DecodeError(f"{name}: expected {n_fields} fields, got {len(o)}")


def _dec_tag_error(o: Any, where: str) -> typing.NoReturn:
    raise DecodeError(f"{where}: unknown tag {o[0]}")


def _dec_check_error(name: str, exc: ValueError) -> DecodeError:
    return DecodeError(f"{name}: {exc}")


def _dec_input_error(name: str, data: Any, max_bytes: int) -> typing.NoReturn:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{name}: expected bytes, got {type(data).__name__}")
    raise DecodeError(f"{name}: {len(data)} bytes exceeds the limit of {max_bytes}")


def _slow_encode(value: Wire) -> bytes:
    return _packer.pack(_codec(type(value)).enc_raw(value))


def _slow_to_obj(value: Wire) -> Any:
    return _codec(type(value)).enc_obj(value)


def _slow_from_obj(cls: type[Wire], obj: Any) -> Any:
    return _codec(cls).dec(obj)


_NAMESPACE: dict[str, Any] = {
    name: value for name, value in globals().items()
    if name.startswith(("_enc_", "_dec_", "_slow_"))
} | {
    "DecodeError": DecodeError, "_packer": _packer, "_unpack_canonical": unpack_canonical,
    "_decode_as": decode_as, "_new": object.__new__, "_inew": int.__new__, "_bnew": bytes.__new__,
    "_set_cached_bytes": _set_cached_bytes, "_dec_shared": _dec_shared,
}


# ------------------------------------------------------------------------------------------ compiler


@dataclasses.dataclass(slots=True)
class _Codec:
    """The generated functions of one wire type."""

    enc_obj: Enc  # value -> plain msgpack object (`to_obj`); checks the value's type
    enc_raw: Enc  # value -> object msgpack packs to the same bytes, typed ids left as they are
    enc_bytes: Callable[[Any], bytes] | None  # value -> bytes, splicing in cached encodings; None: no cached parts
    dec: Dec  # msgpack object -> value, every decoding rule
    dec_keep: Dec  # as dec, for a value inside a larger message: a CachedWire value also keeps its encoding
    dec_trusted: Dec  # as dec, for objects from `unpack_canonical` (see `_dec_lines`)
    dec_keep_trusted: Dec  # as dec_keep, for objects from `unpack_canonical`
    encode: Callable[[Any], bytes]
    decode: Callable[[type, Any], Any]
    to_obj: Enc
    from_obj: Callable[[type, Any], Any]
    source: str  # the generated Python source, for reading and debugging


_lock = threading.RLock()
_in_progress: set[type] = set()


def _codec(cls: type) -> _Codec:
    codec = cls.__dict__.get("_codec")
    if codec is None:
        with _lock:
            codec = cls.__dict__.get("_codec")
            if codec is None:
                codec = _compile_class(cls)
    return typing.cast(_Codec, codec)


def _codec_of(cls: type) -> tuple[Enc, Dec]:
    """(to_obj, from_obj) of `cls`; kept for callers of the former closure-based compiler."""
    codec = _codec(cls)
    return codec.enc_obj, codec.dec


class _Source:
    """Source text and namespace of one type's generated functions."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = dict(_NAMESPACE)
        self.defs: list[str] = []
        self._names: dict[int, str] = {}

    def ref(self, obj: Any) -> str:
        """A namespace name bound to `obj`."""
        name = self._names.get(id(obj))
        if name is None:
            name = f"_k{len(self._names)}"
            self._names[id(obj)] = name
            self.ns[name] = obj
        return name

    def nested(self, cls: type[Wire], what: str) -> str:
        """Name of `cls`'s generated `what` function (enc_obj, enc_raw or dec), compiling it first."""
        if cls in _in_progress:  # a type that (indirectly) contains itself: resolve at call time
            fn: Callable[[Any], Any] = {
                "enc_obj": lambda v: _codec(cls).enc_obj(v),
                "enc_raw": lambda v: _codec(cls).enc_raw(v),
                "encode": lambda v: _codec(cls).encode(v),
                "dec": lambda o: _codec(cls).dec(o),
                "dec_keep": lambda o: _codec(cls).dec_keep(o),
                "dec_trusted": lambda o: _codec(cls).dec_trusted(o),
                "dec_keep_trusted": lambda o: _codec(cls).dec_keep_trusted(o),
            }[what]
        else:
            fn = getattr(_codec(cls), what)
        return self.ref(fn)

    def function(self, prefix: str, lines: list[str]) -> str:
        name = f"_{prefix}{len(self.defs)}"
        self.defs.append("\n".join([f"def {name}(x):", *lines, "    return x"]))
        return name


def _enc_lines(src: _Source, spec: Spec, x: str, where: str, obj: bool, ind: int) -> list[str]:
    """Statements that check `x` and leave its encoded form in `x` (plain types when `obj`)."""
    p = " " * ind
    w = repr(where)
    kind = spec[0]
    if kind == "bool":
        return [f"{p}if type({x}) is not bool: _enc_bool_error({w})"]
    if kind == "int":
        _, lo, hi, cast = spec
        fast = f"type({x}) is not int" + (f" and type({x}) is not {src.ref(cast)}" if cast else "")
        lines = [f"{p}if ({fast}) or not {lo} <= {x} <= {hi}: {x} = _enc_int_slow({x}, {lo}, {hi}, {w})"]
        if obj and cast:
            lines.append(f"{p}if type({x}) is not int: {x} = int({x})")
        return lines
    if kind == "enum":
        e = spec[1]
        slow = f"{x} = _enc_enum_slow({x}, {src.ref(list(e))}, {w}, {e.__name__!r})"
        if obj:
            to_int = f"{x}._value_" if all(type(m._value_) is int for m in e) else f"int({x})"
            return [f"{p}if type({x}) is {src.ref(e)}: {x} = {to_int}", f"{p}else: {slow}"]
        return [f"{p}if type({x}) is not {src.ref(e)}: {slow}"]
    if kind == "fixed":
        f = spec[1]
        slow = f"{x} = _enc_fixed_slow({x}, {f.SIZE}, {w})"
        if obj:
            return [f"{p}if type({x}) is {src.ref(f)}: {x} = bytes({x})", f"{p}else: {slow}"]
        return [f"{p}if type({x}) is not {src.ref(f)}: {slow}"]
    if kind == "bytes":
        n = spec[1]
        return [f"{p}if type({x}) is not bytes or len({x}) > {n}: {x} = _enc_bytes_slow({x}, {n}, {w})"]
    if kind == "str":
        n = spec[1]
        return [f"{p}if type({x}) is not str or (len({x}) if {x}.isascii() else len({x}.encode())) > {n}: "
                f"{x} = _enc_str_slow({x}, {n}, {w})"]
    if kind == "opt":
        return [f"{p}if {x} is not None:", *_enc_lines(src, spec[1], x, where, obj, ind + 4)]
    if kind == "seq":
        _, inner, n = spec
        lines = [f"{p}if type({x}) is not tuple or len({x}) > {n}: _enc_seq_error({x}, {n}, {w})"]
        elem = _enc_elem(src, inner, where, obj)
        converts = obj and (inner[0] in ("enum", "fixed") or (inner[0] == "int" and inner[3] is not None))
        if inner[0] in _SCALARS and not converts:
            # Exact-type items go through as they are; the first other item converts the whole sequence.
            lines += [f"{p}for _i in {x}:",
                      f"{p}    if {_enc_fast_fail(src, inner, '_i')}:",
                      f"{p}        {x} = [{elem}(_j) for _j in {x}]",
                      f"{p}        break"]
            if obj:
                lines.append(f"{p}else: {x} = list({x})")
            return lines
        return [*lines, f"{p}{x} = [{elem}(_i) for _i in {x}]"]
    if kind == "wire":
        return [f"{p}{x} = {src.nested(spec[1], 'enc_obj' if obj else 'enc_raw')}({x})"]
    if kind == "union":
        table = {c: (c.TAG, src.nested(c, "enc_obj" if obj else "enc_raw")) for c in spec[1]}
        # Resolve names to functions for the lookup table.
        fns = {c: (tag, src.ns[name]) for c, (tag, name) in table.items()}
        return [f"{p}_u = {src.ref(fns)}.get(type({x}))",
                f"{p}if _u is None: _enc_union_error({x}, {w})",
                f"{p}{x} = [_u[0], _u[1]({x})]"]
    raise AssertionError(kind)


def _enc_fast_fail(src: _Source, spec: Spec, x: str) -> str:
    """Expression true when scalar `x` is not an exact-type, in-range value."""
    kind = spec[0]
    if kind == "bool":
        return f"type({x}) is not bool"
    if kind == "int":
        _, lo, hi, cast = spec
        fast = f"type({x}) is not int" + (f" and type({x}) is not {src.ref(cast)}" if cast else "")
        return f"({fast}) or not {lo} <= {x} <= {hi}"
    if kind in ("enum", "fixed"):
        return f"type({x}) is not {src.ref(spec[1])}"
    if kind == "bytes":
        return f"type({x}) is not bytes or len({x}) > {spec[1]}"
    if kind == "str":
        return f"type({x}) is not str or (len({x}) if {x}.isascii() else len({x}.encode())) > {spec[1]}"
    raise AssertionError(kind)


def _enc_elem(src: _Source, spec: Spec, where: str, obj: bool) -> str:
    if spec[0] == "wire":
        return src.nested(spec[1], "enc_obj" if obj else "enc_raw")
    return src.function("e", _enc_lines(src, spec, "x", where, obj, 4))


def _dec_check(src: _Source, spec: Spec, o: str, where: str, ind: int) -> tuple[list[str], str | None]:
    """For a scalar spec: statements raising DecodeError unless `o` is valid, and the typed value."""
    p = " " * ind
    w = repr(where)
    kind = spec[0]
    if kind == "bool":
        return [f"{p}if type({o}) is not bool: _dec_error({where + ': expected bool'!r})"], None
    if kind == "int":
        _, lo, hi, cast = spec
        check = f"{p}if type({o}) is not int or not {lo} <= {o} <= {hi}: _dec_int_error({o}, {lo}, {hi}, {w})"
        return [check], (f"_inew({src.ref(cast)}, {o})" if cast else None)
    if kind == "enum":
        e = spec[1]
        members = src.ref({int(m): m for m in e})
        return ([f"{p}if type({o}) is not int or {o} not in {members}: _dec_enum_error({o}, {w}, {e.__name__!r})"],
                f"{members}[{o}]")
    if kind == "fixed":
        f = spec[1]
        message = f"{where}: expected {f.SIZE} bytes"
        return ([f"{p}if type({o}) is not bytes or len({o}) != {f.SIZE}: _dec_error({message!r})"],
                f"_bnew({src.ref(f)}, {o})")
    if kind == "bytes":
        n = spec[1]
        return [f"{p}if type({o}) is not bytes or len({o}) > {n}: _dec_bytes_error({o}, {n}, {w})"], None
    if kind == "str":
        n = spec[1]
        return [f"{p}if type({o}) is not str or (len({o}) if {o}.isascii() else len({o}.encode())) > {n}: "
                f"_dec_str_error({o}, {n}, {w})"], None
    raise AssertionError(kind)


def _dec_lines(src: _Source, spec: Spec, o: str, where: str, ind: int, trusted: bool = False) -> list[str]:
    """Statements that check the msgpack object `o` and leave the decoded value in `o`.

    `trusted`: `o` comes from `unpack_canonical` (msgpack's own objects, of exact types), so two items that
    pack to the same bytes are the same value: a sequence of CachedWire values decodes each run of equal
    neighbours once and shares the value (a block's results are mostly one value). Objects given to
    `from_obj` are not trusted: a tuple or an IntEnum packs like a list or an int but is refused."""
    p = " " * ind
    w = repr(where)
    kind = spec[0]
    if kind in _SCALARS:
        lines, value = _dec_check(src, spec, o, where, ind)
        return lines if value is None else [*lines, f"{p}{o} = {value}"]
    if kind == "opt":
        return [f"{p}if {o} is not None:", *_dec_lines(src, spec[1], o, where, ind + 4, trusted)]
    if kind == "seq":
        _, inner, n = spec
        lines = [f"{p}if type({o}) is not list or len({o}) > {n}: _dec_seq_error({o}, {n}, {w})"]
        if inner[0] in _SCALARS:
            checks, value = _dec_check(src, inner, "_i", where, ind + 4)
            lines += [f"{p}for _i in {o}:", *checks]
            return [*lines, f"{p}{o} = tuple({o})" if value is None else f"{p}{o} = tuple([{value} for _i in {o}])"]
        if inner[0] == "wire" and trusted and issubclass(inner[1], CachedWire):
            elem = src.nested(inner[1], "dec_trusted")
            return [*lines, f"{p}{o} = _dec_shared({elem}, {o}) if {o} else ()"]
        if inner[0] == "wire":
            elem = src.nested(inner[1], "dec_keep_trusted" if trusted else "dec_keep")
        else:
            elem = src.function("d", _dec_lines(src, inner, "x", where, 4, trusted))
        # map() calls the element decoder without a comprehension's frame; most sequences are short or empty.
        return [*lines, f"{p}{o} = tuple(map({elem}, {o})) if {o} else ()"]
    if kind == "wire":
        return [f"{p}{o} = {src.nested(spec[1], 'dec_keep_trusted' if trusted else 'dec_keep')}({o})"]
    if kind == "union":
        by_tag = {c.TAG: src.ns[src.nested(c, "dec_keep_trusted" if trusted else "dec_keep")] for c in spec[1]}
        message = f"{where}: expected [tag, value]"
        return [f"{p}if type({o}) is not list or len({o}) != 2 or type({o}[0]) is not int: _dec_error({message!r})",
                f"{p}_f = {src.ref(by_tag)}.get({o}[0])",
                f"{p}if _f is None: _dec_tag_error({o}, {w})",
                f"{p}{o} = _f({o}[1])"]
    raise AssertionError(kind)


def _spliced(spec: Spec) -> bool:
    """Whether a field's encoding can include cached encodings (a CachedWire value, or one inside)."""
    kind = spec[0]
    if kind == "wire":
        nested = spec[1]
        return issubclass(nested, CachedWire) or (nested not in _in_progress
                                                   and _codec(nested).enc_bytes is not None)
    if kind == "opt":
        return _spliced(spec[1])
    if kind == "seq":
        return spec[1][0] == "wire" and _spliced(spec[1])
    if kind == "union":
        return any(_spliced(("wire", member)) for member in spec[1])
    return False


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of n items."""
    if n <= 15:
        return bytes((0x90 | n,))
    return b"\xdc" + n.to_bytes(2, "big") if n <= 0xFFFF else b"\xdd" + n.to_bytes(4, "big")


_ARRAY_HEADERS = tuple(_array_header(n) for n in range(16))
_NAMESPACE["_array_header"] = _array_header
_NAMESPACE["_ARRAY_HEADERS"] = _ARRAY_HEADERS


def _bytes_expr(src: _Source, spec: Spec, x: str) -> str:
    """Expression encoding the wire value `x` (of a spliced spec's wire type) to bytes, type checked."""
    nested = spec[1]
    if issubclass(nested, CachedWire):
        return (f"({src.nested(nested, 'encode')}({x}) if type({x}) is {src.ref(nested)} "
                f"else _enc_class_error({x}, {nested.__name__!r}))")
    return f"{src.ref(_enc_bytes_of(nested))}({x})"


def _enc_bytes_of(cls: type) -> Callable[[Any], bytes]:
    fn = _codec(cls).enc_bytes
    assert fn is not None
    return fn


def _splice_lines(src: _Source, spec: Spec, x: str, where: str, ind: int) -> list[str]:
    """Statements that check the spliced field `x` and leave its encoding (bytes) in `x`."""
    p = " " * ind
    kind = spec[0]
    if kind == "wire":
        return [f"{p}{x} = {_bytes_expr(src, spec, x)}"]
    if kind == "opt":
        return [f"{p}if {x} is None: {x} = b'\\xc0'", f"{p}else:", *_splice_lines(src, spec[1], x, where, ind + 4)]
    if kind == "union":
        # [tag, value]: the header of a 2-item array and the tag's encoding, then the member's bytes (its own
        # `encode`, which splices in turn or packs).
        table = {c: (pack([c.TAG, None])[1:-1], src.ns[src.nested(c, "encode")]) for c in spec[1]}
        return [f"{p}_u = {src.ref(table)}.get(type({x}))",
                f"{p}if _u is None: _enc_union_error({x}, {where!r})",
                f"{p}{x} = b'\\x92' + _u[0] + _u[1]({x})"]
    if kind == "seq":
        _, inner, n = spec
        return [f"{p}if type({x}) is not tuple or len({x}) > {n}: _enc_seq_error({x}, {n}, {where!r})",
                f"{p}{x} = (_ARRAY_HEADERS[len({x})] if len({x}) < 16 else _array_header(len({x}))) "
                f"+ b''.join([{_bytes_expr(src, inner, '_i')} for _i in {x}])"]
    raise AssertionError(kind)


def _splice_body(src: _Source, specs: list[Spec], fields: list[str], name: str) -> list[str]:
    """Body of `enc_bytes`: fields in order, cached encodings spliced in, runs of other fields packed."""
    lines: list[str] = []
    parts = [repr(_array_header(len(specs)))]
    run: list[str] = []

    def flush() -> None:
        if run:
            skip = len(_array_header(len(run)))
            parts.append(f"_packer.pack([{', '.join(run)}])[{skip}:]")
            run.clear()

    for i, spec in enumerate(specs):
        where = f"{name}.{fields[i]}"
        if _spliced(spec):
            lines += _splice_lines(src, spec, f"f{i}", where, 4)
            flush()
            parts.append(f"f{i}")
        else:
            lines += _enc_lines(src, spec, f"f{i}", where, False, 4)
            run.append(f"f{i}")
    flush()
    return [*lines, f"    return b''.join([{', '.join(parts)}])"]


def _builder(cls: type) -> type | None:
    """A mutable twin of `cls` (same base, same slots) to fill a decoded value before it becomes a `cls`.

    Assigning fields through the frozen dataclass `__init__` costs a call of `object.__setattr__` per field;
    the twin takes plain slot stores, then one `__class__` assignment. Only for classes whose `__init__` is
    the dataclass one and that have no `__post_init__`; None when the layout does not allow it.
    """
    slots = cls.__dict__.get("__slots__")
    if (not isinstance(slots, tuple) or slots != tuple(f.name for f in dataclasses.fields(cls))
            or "__init__" in cls.__dict__.get("_wire_own", ()) or hasattr(cls, "__post_init__")):
        return None
    try:
        twin = type(f"_{cls.__name__}Builder", cls.__bases__, {"__slots__": slots, "__module__": cls.__module__})
        probe: Any = object.__new__(twin)
        probe.__class__ = cls
    except TypeError:
        return None
    return twin


def _compile_class(cls: type) -> _Codec:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a wire type (use @wire)")
    name = cls.__name__
    _in_progress.add(cls)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f.name for f in dataclasses.fields(cls)]
        specs = [_parse(hints[f], f"{name}.{f}") for f in fields]
        src = _Source()
        c = src.ref(cls)
        vs = [f"f{i}" for i in range(len(fields))]
        unpacked = f"    {', '.join(vs)}, = o" if vs else "    pass"
        loads = [f"    f{i} = v.{f}" for i, f in enumerate(fields)]
        out = f"[{', '.join(vs)}]"

        def enc_body(obj: bool) -> list[str]:
            return [line for i, spec in enumerate(specs)
                    for line in _enc_lines(src, spec, vs[i], f"{name}.{fields[i]}", obj, 4)]

        raw_body = enc_body(False)
        obj_body = enc_body(True)
        # Types holding CachedWire values encode by splicing their cached encodings into the output (msgpack
        # is concatenative: an array is its header followed by its items' encodings).
        splice_body = _splice_body(src, specs, fields, name) if any(_spliced(sp) for sp in specs) else None
        dec_body = [line for i, spec in enumerate(specs)
                    for line in _dec_lines(src, spec, vs[i], f"{name}.{fields[i]}", 4)]
        trusted_body = [line for i, spec in enumerate(specs)
                        for line in _dec_lines(src, spec, vs[i], f"{name}.{fields[i]}", 4, True)]
        has_trusted = trusted_body != dec_body

        cached = issubclass(cls, CachedWire)
        builder = _builder(cls)
        if builder is not None:
            construct = [f"    v = _new({src.ref(builder)})", *[f"    v.{f} = f{i}" for i, f in enumerate(fields)],
                         *(["    v._wire_bytes = None", "    v._wire_hash = None", "    v._wire_memo = None"]
                           if cached else []),
                         f"    v.__class__ = {c}"]
        else:
            construct = [f"    v = {c}({', '.join(vs)})"]
        if not cached:
            construct_keep = construct
        elif builder is not None:
            construct_keep = [("    v._wire_bytes = _packer.pack(o)" if line == "    v._wire_bytes = None" else line)
                              for line in construct]
        else:
            construct_keep = [*construct, "    _set_cached_bytes(v, _packer.pack(o))"]
        check = getattr(cls, "validate_wire", None)
        if check is not None:
            checks = ["    try:", f"        {src.ref(check)}(v)", "    except ValueError as exc:",
                      f"        raise _dec_check_error({name!r}, exc) from None"]
            construct = [*construct, *checks]
            construct_keep = [*construct_keep, *checks]
        n = len(fields)
        head = f"    if type(o) is not list or len(o) != {n}: _dec_class_error(o, {n}, {name!r})"
        # dec_keep: the same checks for a value inside a larger message; a CachedWire value keeps its own
        # encoding, packed from its msgpack object (see `CachedWire`: it is the value's part of the input).
        # The _trusted twins decode objects from unpack_canonical (see `_dec_lines`).
        decoders = [("dec", dec_body, construct), ("dec_keep", dec_body, construct_keep),
                    ("dec_trusted", trusted_body, construct), ("dec_keep_trusted", trusted_body, construct_keep)]
        decoders = [d for d in decoders if (cached or "keep" not in d[0]) and (has_trusted or "trusted" not in d[0])]
        text = "\n\n".join([
            *src.defs,
            "\n".join(["def enc_raw(v):", f"    if type(v) is not {c}: _enc_class_error(v, {name!r})",
                       *loads, *raw_body, f"    return {out}"]),
            "\n".join(["def enc_obj(v):", f"    if type(v) is not {c}: _enc_class_error(v, {name!r})",
                       *loads, *obj_body, f"    return {out}"]),
            *(["\n".join(["def enc_bytes(v):", f"    if type(v) is not {c}: _enc_class_error(v, {name!r})",
                          *loads, *splice_body])] if splice_body is not None else []),
            *["\n".join([f"def {fn}(o):", head, unpacked, *body, *made, "    return v"])
              for fn, body, made in decoders],
            "\n".join(["def encode(self):",
                       *(["    try:", "        data = self._wire_bytes", "    except AttributeError:",
                          "        data = None", "    if data is not None: return data"] if cached else []),
                       f"    if type(self) is not {c}: return _slow_encode(self)",
                       *(["    data = enc_bytes(self)"] if splice_body is not None else
                         ["    v = self", *loads, *raw_body, f"    data = _packer.pack({out})"]),
                       *(["    _set_cached_bytes(self, data)"] if cached else []),
                       "    return data"]),
            "\n".join(["def decode(cls, data):",
                       f"    if cls is not {c}: return _decode_as(cls, data, cls.MAX_BYTES)",
                       f"    limit = {c}.MAX_BYTES",
                       "    if type(data) is not bytes:",
                       "        if not isinstance(data, bytes | bytearray | memoryview) or len(data) > limit:",
                       f"            _dec_input_error({name!r}, data, limit)",
                       "        data = bytes(data)",
                       f"    elif len(data) > limit: _dec_input_error({name!r}, data, limit)",
                       f"    raw = _unpack_canonical(data, {name!r})",
                       "    try:",
                       f"        value = {'dec_trusted' if has_trusted else 'dec'}(raw)",
                       "    except DecodeError:",
                       "        raise",
                       "    except (TypeError, ValueError) as exc:",
                       f"        raise _dec_check_error({name!r}, exc) from None",
                       *(["    _set_cached_bytes(value, data)"] if cached else []),
                       "    return value"]),
            "\n".join(["def to_obj(self):",
                       f"    return enc_obj(self) if type(self) is {c} else _slow_to_obj(self)"]),
            "\n".join(["def from_obj(cls, obj):",
                       f"    return dec(obj) if cls is {c} else _slow_from_obj(cls, obj)"]),
        ])
        ns = src.ns
        exec(compile(text, f"<wire codec {cls.__module__}.{cls.__qualname__}>", "exec"), ns)
        keep = ns.get("dec_keep", ns["dec"])
        codec = _Codec(ns["enc_obj"], ns["enc_raw"], ns.get("enc_bytes"), ns["dec"], keep,
                       ns.get("dec_trusted", ns["dec"]), ns.get("dec_keep_trusted", keep), ns["encode"], ns["decode"],
                       ns["to_obj"], ns["from_obj"], text)
    finally:
        _in_progress.discard(cls)
    cls._codec = codec  # type: ignore[attr-defined]
    if "_wire_own" in cls.__dict__:  # a @wire type: its generated methods replace Wire's
        own = cls.__dict__["_wire_own"]
        for method in _CODEC_METHODS:
            if method not in own:
                fn = getattr(codec, method)
                setattr(cls, method, classmethod(fn) if method in ("decode", "from_obj") else fn)
    return codec
