"""Validator entries and sets: who signs a height, with what voting power."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from core.address import address_from_public_key
from core.codec import U64, MaxLen, Wire, wire
from core.errors import DecodeError
from core.hashing import sha256
from core.limits import MAX_VALIDATORS
from core.types import Address, Hash32, PublicKeyBytes

# CometBFT's bound: keeps proposer-priority arithmetic far from overflow.
MAX_TOTAL_POWER = (1 << 63) // 8


@wire(max_bytes=64)
class ValidatorEntry(Wire):
    public_key: PublicKeyBytes
    power: U64

    @property
    def address(self) -> Address:
        return address_from_public_key(self.public_key)


@wire(max_bytes=64 * MAX_VALIDATORS + 16)
class ValidatorList(Wire):
    validators: Annotated[tuple[ValidatorEntry, ...], MaxLen(MAX_VALIDATORS)]


class ValidatorSet:
    """An immutable set ordered by address, with lookups by address and public key.

    Its hash is over (public key, power) in address order; proposer priorities are consensus-internal
    and not part of it.
    """

    __slots__ = ("_by_address", "_entries", "_hash", "_index", "_total")

    def __init__(self, entries: Sequence[ValidatorEntry]) -> None:
        ordered = tuple(sorted(entries, key=lambda e: e.address))
        if not ordered:
            raise ValueError("a validator set cannot be empty")
        if len(ordered) > MAX_VALIDATORS:
            raise ValueError(f"at most {MAX_VALIDATORS} validators, got {len(ordered)}")
        self._by_address = {e.address: e for e in ordered}
        if len(self._by_address) != len(ordered):
            raise ValueError("duplicate validator")
        if any(e.power <= 0 for e in ordered):
            raise ValueError("validator power must be positive")
        self._total = sum(e.power for e in ordered)
        if self._total > MAX_TOTAL_POWER:
            raise ValueError("total voting power too large")
        self._entries = ordered
        self._index = {e.address: i for i, e in enumerate(ordered)}
        self._hash = sha256(self.encode())

    def encode(self) -> bytes:
        return ValidatorList(self._entries).encode()

    @classmethod
    def decode(cls, data: bytes) -> ValidatorSet:
        lst = ValidatorList.decode(data)
        try:
            vs = cls(lst.validators)
        except ValueError as exc:
            raise DecodeError(f"ValidatorSet: {exc}") from None
        if vs.encode() != data:
            raise DecodeError("ValidatorSet: validators not in address order")
        return vs

    @property
    def hash(self) -> Hash32:
        return self._hash

    @property
    def entries(self) -> tuple[ValidatorEntry, ...]:
        return self._entries

    @property
    def total_power(self) -> int:
        return self._total

    def quorum(self) -> int:
        """The least power that is more than two thirds of the total."""
        return self._total * 2 // 3 + 1

    def get(self, address: Address) -> ValidatorEntry | None:
        return self._by_address.get(address)

    def get_by_key(self, public_key: bytes) -> ValidatorEntry | None:
        entry = self._by_address.get(address_from_public_key(public_key))
        return entry if entry is not None and entry.public_key == public_key else None

    def index_of(self, address: Address) -> int | None:
        return self._index.get(address)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ValidatorEntry]:
        return iter(self._entries)

    def __contains__(self, address: object) -> bool:
        return address in self._by_address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and self._hash == other._hash

    def __hash__(self) -> int:
        return hash(self._hash)

    def __repr__(self) -> str:
        return f"ValidatorSet(n={len(self._entries)}, power={self._total}, hash={self._hash.hex()[:12]})"
