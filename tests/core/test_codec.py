"""The canonical codec: one byte form per value, and nothing but DecodeError for anything else.

Across the wire types these properties run well over 10,000 decoding examples per CI run.
"""

from __future__ import annotations

from typing import Annotated

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.block import Block, ProposalBlock
from core.codec import U8, MaxLen, Wire, wire
from core.errors import DecodeError
from core.evidence import DuplicateProposal, DuplicateVote, EvidenceEnvelope, WrongInference
from core.header import Header, TxResult
from core.merkle import MerkleProof
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.validators import ValidatorEntry, ValidatorList
from core.votes import Commit, Proposal, Vote
from tests.core import strategies

pytestmark = pytest.mark.core

WIRE_TYPES: list[type[Wire]] = [
    Transaction, Tensor, Vote, Proposal, Commit, TxResult, Header, Block, ProposalBlock, MerkleProof,
    DuplicateVote, DuplicateProposal, WrongInference, EvidenceEnvelope, ValidatorEntry, ValidatorList,
]
IDS = [t.__name__ for t in WIRE_TYPES]
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


def fast(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=_HEALTH)


def _decode_or_typed_error(cls: type[Wire], data: bytes) -> Wire | None:
    """Decode; only DecodeError may escape, and anything accepted must re-encode to the same bytes."""
    try:
        value = cls.decode(data)
    except DecodeError:
        return None
    assert value.encode() == data, f"{cls.__name__}: accepted non-canonical bytes {data[:40]!r}"
    return value


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
def test_round_trip(cls: type[Wire]) -> None:
    @fast(80)
    @given(strategies.of(cls))
    def check(value: Wire) -> None:
        data = value.encode()
        decoded = cls.decode(data)
        assert decoded == value
        assert decoded.encode() == data

    check()


@st.composite
def mutated(draw: st.DrawFn, cls: type[Wire]) -> bytes:
    data = bytearray(draw(strategies.of(cls)).encode())
    op = draw(st.sampled_from(["flip", "truncate", "insert", "append", "delete", "set"]))
    if op == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif op == "truncate":
        del data[draw(st.integers(0, len(data))):]
    elif op == "insert":
        data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
    elif op == "append":
        data += draw(st.binary(min_size=1, max_size=8))
    elif op == "delete" and data:
        del data[draw(st.integers(0, len(data) - 1))]
    elif op == "set" and data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
def test_mutated_bytes_raise_only_decode_error(cls: type[Wire]) -> None:
    # Blocks are the slowest to generate; the other types carry the bulk of the examples.
    @fast(200 if cls in (Block, ProposalBlock) else 550)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        _decode_or_typed_error(cls, data.draw(mutated(cls)))

    check()


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=IDS)
def test_random_bytes_raise_only_decode_error(cls: type[Wire]) -> None:
    @fast(150)
    @given(st.binary(max_size=300))
    def check(data: bytes) -> None:
        _decode_or_typed_error(cls, data)

    check()


@wire(max_bytes=64)
class _Small(Wire):
    a: U8
    items: Annotated[tuple[U8, ...], MaxLen(2)]


def test_non_canonical_integer_is_rejected() -> None:
    good = _Small(5, (1,)).encode()
    assert good == b"\x92\x05\x91\x01"
    with pytest.raises(DecodeError, match="canonical"):
        _Small.decode(b"\x92\xcc\x05\x91\x01")  # 5 as uint8 instead of a fixint


def test_unknown_missing_and_mistyped_fields_are_rejected() -> None:
    with pytest.raises(DecodeError, match="expected 2 fields"):
        _Small.decode(msgpack.packb([5, [1], 7]))
    with pytest.raises(DecodeError, match="expected 2 fields"):
        _Small.decode(msgpack.packb([5]))
    with pytest.raises(DecodeError, match="expected int"):
        _Small.decode(msgpack.packb(["5", [1]]))
    with pytest.raises(DecodeError, match="out of range"):
        _Small.decode(msgpack.packb([256, [1]]))
    with pytest.raises(DecodeError, match="expected int"):
        _Small.decode(msgpack.packb([True, [1]]))


def test_containers_over_their_limit_are_rejected() -> None:
    with pytest.raises(DecodeError, match="exceeds 2"):
        _Small.decode(msgpack.packb([1, [1, 2, 3]]))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        _Small.decode(b"\x92\x01" + b"\x00" * 100)


def test_maps_floats_and_extensions_are_rejected() -> None:
    with pytest.raises(DecodeError):
        _Small.decode(msgpack.packb({"a": 1}))
    with pytest.raises(DecodeError):
        _Small.decode(msgpack.packb([1.0, [1]]))
    with pytest.raises(DecodeError):
        _Small.decode(msgpack.packb([msgpack.ExtType(1, b"x"), [1]]))


def test_tensor_byte_length_must_match_shape() -> None:
    bad = msgpack.packb([int(DType.INT32), [2, 2], b"\x00" * 15], use_bin_type=True)
    with pytest.raises(DecodeError, match="needs 16"):
        Tensor.decode(bad)


def test_str_where_bytes_expected_is_rejected() -> None:
    obj = MerkleProof(0, 1, ()).to_obj()
    obj[2] = ["x" * 32]
    with pytest.raises(DecodeError):
        MerkleProof.decode(msgpack.packb(obj, use_bin_type=True))
