"""Typed ids: distinct types for distinct things, each checking its own length or range.

They subclass `bytes`/`int`, so they cost nothing on the hot path and encode as plain msgpack values; the
codec turns decoded values back into these types by the field annotations of each wire type. They have no
instance `__dict__` (`__slots__ = ()`): smaller. They are still tracked by the cyclic garbage collector (CPython
tracks every instance of a class defined in Python), so each one alive is an object its collections walk.

Every instance satisfies its type's length or range: the constructors check it, and the codec, which builds
them without the constructor (`bytes.__new__(Hash32, b)`), checks it first. The codec's encoder relies on
this: a value of exactly the declared type is not checked again.
"""

from __future__ import annotations

from typing import ClassVar, Self

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


class FixedBytes(bytes):
    """Bytes of one exact length, set by the subclass."""

    __slots__ = ()
    SIZE: ClassVar[int] = 0

    def __new__(cls, value: bytes | bytearray | memoryview = b"") -> Self:
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} must be {cls.SIZE} bytes, got {len(value)}")
        return bytes.__new__(cls, value)

    @classmethod
    def from_hex(cls, text: str) -> Self:
        try:
            raw = bytes.fromhex(text.removeprefix("0x"))
        except ValueError as exc:
            raise ValueError(f"{cls.__name__}: not hex: {text[:80]!r}") from exc
        return cls(raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()[:16]}…)"

    def __str__(self) -> str:
        return self.hex()


class Hash32(FixedBytes):
    """A SHA-256 digest: block id, tx hash, state root, model id, PoI commitment."""

    __slots__ = ()
    SIZE = 32


class Address(FixedBytes):
    """An account or validator address: the first 20 bytes of SHA-256(public key)."""

    __slots__ = ()
    SIZE = 20

    def __str__(self) -> str:
        from core.address import encode_address

        return encode_address(self)


class PublicKeyBytes(FixedBytes):
    """A raw Ed25519 public key."""

    __slots__ = ()
    SIZE = 32


class SignatureBytes(FixedBytes):
    """A raw Ed25519 signature."""

    __slots__ = ()
    SIZE = 64


class BoundedInt(int):
    """A non-negative integer with an upper bound, set by the subclass."""

    __slots__ = ()
    MAX: ClassVar[int] = U64_MAX

    def __new__(cls, value: int = 0) -> Self:
        if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{cls.__name__} must be an int, got {type(value).__name__}")
        if not 0 <= value <= cls.MAX:
            raise ValueError(f"{cls.__name__} out of range: {value}")
        return int.__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"

    def __str__(self) -> str:
        """Digits, as people and messages want them (`no block at height 7`); repr() keeps the type name."""
        return int.__repr__(self)


class Height(BoundedInt):
    """A block height; genesis state is height 0, the first block is height 1."""

    __slots__ = ()


class Round(BoundedInt):
    """A consensus round within a height."""

    __slots__ = ()
    MAX = (1 << 32) - 1


class Timestamp(BoundedInt):
    """Milliseconds since the Unix epoch (UTC)."""

    __slots__ = ()


class Amount(BoundedInt):
    """An amount of the native token in its smallest unit."""

    __slots__ = ()


class Gas(BoundedInt):
    """Units of metered work."""

    __slots__ = ()


class Nonce(BoundedInt):
    """An account's transaction counter."""

    __slots__ = ()
