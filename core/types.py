"""Typed ids: distinct types for distinct things, each checking its own length or range.

They subclass `bytes`/`int`, so they cost nothing on the hot path and encode as plain msgpack values; the
codec turns decoded values back into these types by the field annotations of each wire type.
"""

from __future__ import annotations

from typing import ClassVar, Self

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


class FixedBytes(bytes):
    """Bytes of one exact length, set by the subclass."""

    SIZE: ClassVar[int] = 0

    def __new__(cls, value: bytes | bytearray | memoryview = b"") -> Self:
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} must be {cls.SIZE} bytes, got {len(value)}")
        return super().__new__(cls, value)

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

    SIZE = 32


class Address(FixedBytes):
    """An account or validator address: the first 20 bytes of SHA-256(public key)."""

    SIZE = 20

    def __str__(self) -> str:
        from core.address import encode_address

        return encode_address(self)


class PublicKeyBytes(FixedBytes):
    """A raw Ed25519 public key."""

    SIZE = 32


class SignatureBytes(FixedBytes):
    """A raw Ed25519 signature."""

    SIZE = 64


class BoundedInt(int):
    """A non-negative integer with an upper bound, set by the subclass."""

    MAX: ClassVar[int] = U64_MAX

    def __new__(cls, value: int = 0) -> Self:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{cls.__name__} must be an int, got {type(value).__name__}")
        if not 0 <= value <= cls.MAX:
            raise ValueError(f"{cls.__name__} out of range: {value}")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Height(BoundedInt):
    """A block height; genesis state is height 0, the first block is height 1."""


class Round(BoundedInt):
    """A consensus round within a height."""

    MAX = (1 << 32) - 1


class Timestamp(BoundedInt):
    """Milliseconds since the Unix epoch (UTC)."""


class Amount(BoundedInt):
    """An amount of the native token in its smallest unit."""


class Gas(BoundedInt):
    """Units of metered work."""


class Nonce(BoundedInt):
    """An account's transaction counter."""
