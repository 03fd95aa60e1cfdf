"""The generated codec against the closure-based one it replaced (`reference_codec.py`), on every core wire
type and on test types that use every kind of field: the same bytes, the same plain objects, the same
verdict on mutated input with values of the same exact types, and the same error types on bad values.

Also covers what the generated codec adds: the per-instance encoding and hash cache of `CachedWire` types,
the per-thread packer, and types that contain themselves.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
import pickle
import threading
from typing import Annotated, Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consensus.events import WalRecord
from core.block import Block, ProposalBlock
from core.codec import I64, U8, U32, CachedWire, MaxLen, Wire, wire
from core.compact import CompactProposal, compact_of
from core.errors import DecodeError
from core.hashing import sha256
from core.header import Header, TxResult
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, PublicKeyBytes, Round
from p2p.messages import TxBatch
from tests.core import reference_codec as ref
from tests.core import strategies
from tests.core.test_codec import WIRE_TYPES, mutated

pytestmark = pytest.mark.core

# filter_too_much: the generic strategies filter text by its UTF-8 length, and these types have short str limits.
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fast(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=_HEALTH)


def examples(cls: type, n: int) -> int:
    """More examples for the test type with every kind of field, fewer for the slow-to-generate blocks."""
    return 2 * n if cls.__name__ == "_Kitchen" else n // 3 if cls.__name__ in ("Block", "ProposalBlock") else n


class _Color(enum.IntEnum):
    RED = 1
    GREEN = 2
    BLUE = 7


@wire(max_bytes=256, tag=1)
class _Leaf(Wire):
    a: U8
    name: Annotated[str, MaxLen(8)]


@wire(max_bytes=256, tag=2)
class _Pair(Wire):
    left: Hash32 | None
    right: I64

    def validate_wire(self) -> None:
        if self.right == 13:
            raise ValueError("thirteen is refused")


@wire(max_bytes=4096)
class _Kitchen(Wire):
    """Every kind of field, including combinations no core type uses."""

    flag: bool
    small: U8
    signed: I64
    height: Height
    rnd: Round
    color: _Color
    addr: Address
    blob: Annotated[bytes, MaxLen(5)]
    text: Annotated[str, MaxLen(6)]
    maybe_blob: Annotated[bytes | None, MaxLen(64)]  # (the strategies give optional bytes up to 64)
    maybe_leaf: _Leaf | None
    leaves: Annotated[tuple[_Leaf, ...], MaxLen(3)]
    flags: Annotated[tuple[bool, ...], MaxLen(3)]
    colors: Annotated[tuple[_Color, ...], MaxLen(3)]
    heights: Annotated[tuple[Height, ...], MaxLen(3)]
    u32s: Annotated[tuple[U32, ...], MaxLen(4)]
    hashes: Annotated[tuple[Hash32, ...], MaxLen(2)]
    blobs: Annotated[tuple[Annotated[bytes, MaxLen(2)], ...], MaxLen(2)]
    texts: Annotated[tuple[Annotated[str, MaxLen(3)], ...], MaxLen(2)]
    maybe_ints: Annotated[tuple[U8 | None, ...], MaxLen(3)]
    nested: Annotated[tuple[Annotated[tuple[U8, ...], MaxLen(2)], ...], MaxLen(2)]
    choice: _Leaf | _Pair
    choices: Annotated[tuple[_Leaf | _Pair, ...], MaxLen(3)]
    maybe_choice: _Leaf | _Pair | None
    maybe_u32s: Annotated[tuple[U32, ...], MaxLen(2)] | None
    type: U8  # names of builtins the generated code must not shadow
    len: Annotated[bytes, MaxLen(2)]


@wire(max_bytes=1024)
class _Tree(Wire):
    """A type that contains itself: its codec refers to itself while being generated."""

    value: U8
    children: Annotated[tuple[_Tree, ...], MaxLen(3)]


def trees() -> st.SearchStrategy[_Tree]:
    leaf = st.builds(_Tree, st.integers(0, 255), st.just(()))
    return st.recursive(leaf, lambda kids: st.builds(_Tree, st.integers(0, 255),
                                                      st.lists(kids, max_size=3).map(tuple)), max_leaves=8)


@wire(max_bytes=64)
class _Small(CachedWire):
    a: U8
    items: Annotated[tuple[U8, ...], MaxLen(2)]


class _Undecorated(_Small):
    """A plain subclass of a wire type: encodes with its own (inherited) fields, as before."""


@wire(max_bytes=256)
class _Inner(Wire):
    a: U8
    small: _Small
    b: Annotated[bytes, MaxLen(3)]


@wire(max_bytes=4096)
class _Holder(Wire):
    """CachedWire values in every position whose encoding is spliced from their cache."""

    one: _Small
    maybe: _Small | None
    many: Annotated[tuple[_Small, ...], MaxLen(20)]  # over 15 items: a 3-byte array header
    inner: _Inner
    maybe_inner: _Inner | None
    inners: Annotated[tuple[_Inner, ...], MaxLen(3)]
    x: U8


@wire(max_bytes=256)
class _Wide(Wire):
    """17 fields: a 3-byte array header, and a run of 16 packed fields before the spliced one."""

    f0: U8
    f1: U8
    f2: U8
    f3: U8
    f4: U8
    f5: U8
    f6: U8
    f7: U8
    f8: U8
    f9: U8
    f10: U8
    f11: U8
    f12: U8
    f13: U8
    f14: U8
    f15: U8
    small: _Small


@wire(max_bytes=64, tag=3)
class _TaggedSmall(CachedWire):
    a: U8
    items: Annotated[tuple[U8, ...], MaxLen(2)]


@wire(max_bytes=256, tag=4)
class _TaggedInner(Wire):
    small: _Small
    smalls: Annotated[tuple[_Small, ...], MaxLen(2)]


@wire(max_bytes=1024)
class _Chooser(Wire):
    """Unions with a CachedWire member: their encoding is spliced too (tag, then the member's bytes)."""

    choice: _TaggedSmall | _Leaf
    maybe_choice: _TaggedSmall | _Leaf | None
    spliced_or_leaf: _TaggedInner | _Leaf  # a member that splices but is not cached itself
    x: U8


def _smalls() -> st.SearchStrategy[_Small]:
    return st.builds(_Small, st.integers(0, 255), st.lists(st.integers(0, 255), max_size=2).map(tuple))


def holders() -> st.SearchStrategy[_Holder]:
    inner = st.builds(_Inner, st.integers(0, 255), _smalls(), st.binary(max_size=3))
    return st.builds(_Holder, _smalls(), st.none() | _smalls(), st.lists(_smalls(), max_size=20).map(tuple),
                     inner, st.none() | inner, st.lists(inner, max_size=3).map(tuple), st.integers(0, 255))


ALL_TYPES: list[type[Wire]] = [*WIRE_TYPES, _Kitchen, _Leaf, _Pair, _Small, _Holder, _Inner, _Wide, _Chooser]
IDS = [t.__name__ for t in ALL_TYPES]


def values_of(cls: type[Wire]) -> st.SearchStrategy[Any]:
    return trees() if cls is _Tree else holders() if cls is _Holder else strategies.of(cls)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same exact types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Wire):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))  # type: ignore[arg-type]
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except (TypeError, ValueError, DecodeError) as exc:
        return "error", type(exc)


def assert_same_outcome(new: tuple[str, Any], old: tuple[str, Any]) -> None:
    assert new[0] == old[0], (new, old)
    if new[0] == "error":
        assert new[1] is old[1], (new, old)
    else:
        assert same(new[1], old[1]), (new, old)


@pytest.mark.parametrize("cls", [*ALL_TYPES, _Tree], ids=[*IDS, "_Tree"])
def test_same_bytes_and_objects_as_the_reference(cls: type[Wire]) -> None:
    @fast(examples(cls, 50))
    @given(values_of(cls))
    def check(value: Wire) -> None:
        data = ref.encode(value)
        assert copy.copy(value).encode() == data
        assert value.encode() == data
        assert value.encode() == data  # a second time (from the cache, for CachedWire types)
        assert same(value.to_obj(), ref.to_obj(value))
        decoded = cls.decode(data)
        assert same(decoded, ref.decode(cls, data))
        assert same(cls.from_obj(value.to_obj()), ref.from_obj(cls, ref.to_obj(value)))

    check()


@pytest.mark.parametrize("cls", [*ALL_TYPES, _Tree], ids=[*IDS, "_Tree"])
def test_same_verdict_on_mutated_bytes(cls: type[Wire]) -> None:
    strategy = st.data()

    @fast(examples(cls, 100))
    @given(strategy)
    def check(data: st.DataObject) -> None:
        if cls in (_Tree, _Holder):
            raw = bytearray(data.draw(values_of(cls)).encode())
            if raw:
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            blob = bytes(raw)
        else:
            blob = data.draw(mutated(cls))
        new = outcome(cls.decode, blob)
        assert_same_outcome(new, outcome(ref.decode, cls, blob))
        if new[0] == "ok":
            assert new[1].encode() == blob

    check()


def _weird() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-3, 300), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False),
        st.binary(max_size=40), st.text(max_size=8), st.sampled_from(list(_Color)),
        st.lists(st.integers(0, 3), max_size=3).map(tuple), st.lists(st.integers(0, 3), max_size=3),
        st.sampled_from([1.0, 7.0, 2.5, "\udc80", bytearray(b"ab"), Round(3), Amount(5), Height(2**40)]),
        st.binary(min_size=20, max_size=20).map(Address), st.binary(min_size=32, max_size=32).map(Hash32),
        st.builds(_Leaf, st.integers(0, 255), st.text(max_size=2)),
        st.builds(_Pair, st.none(), st.integers(-5, 5)),
    )


def _loosen(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` in a looser form (a plain int for a typed id, a list for a tuple, ...) or a wrong value."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(_weird())
    if isinstance(value, Wire) and depth < 3 and choice <= 4:
        fields = dataclasses.fields(value)  # type: ignore[arg-type]
        if fields:
            f = draw(st.sampled_from(fields))
            return value.replace(**{f.name: _loosen(draw, getattr(value, f.name), depth + 1)})
    if isinstance(value, tuple) and value and choice <= 6:
        i = draw(st.integers(0, len(value) - 1))
        items = list(value)
        items[i] = _loosen(draw, items[i], depth + 1)
        return tuple(items) if draw(st.booleans()) else items
    if isinstance(value, bool):
        return int(value) if choice <= 7 else value
    if isinstance(value, enum.IntEnum):
        return draw(st.sampled_from([int(value), float(int(value)), value]))
    if isinstance(value, int):
        return draw(st.sampled_from([int(value), value, value + 1, -1 - value, value == 0]))
    if isinstance(value, bytes):
        return draw(st.sampled_from([bytes(value), bytearray(value), value + b"\x00", value[:-1], value]))
    if isinstance(value, str):
        return draw(st.sampled_from([value + "xyz" * 3, value.encode(), value + "é" * 3, value]))
    return value


@pytest.mark.parametrize("cls", ALL_TYPES, ids=IDS)
def test_same_result_on_loose_and_wrong_values(cls: type[Wire]) -> None:
    @fast(examples(cls, 80))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        value = data.draw(values_of(cls))
        fields = dataclasses.fields(value)  # type: ignore[arg-type]
        f = data.draw(st.sampled_from(fields))
        loose = value.replace(**{f.name: data.draw(st.composite(lambda d: _loosen(d, getattr(value, f.name)))())})
        assert_same_outcome(outcome(loose.encode), outcome(ref.encode, loose))
        assert_same_outcome(outcome(loose.to_obj), outcome(ref.to_obj, loose))
        obj = ref.to_obj(value)
        i = data.draw(st.integers(0, len(obj) - 1))
        obj[i] = data.draw(st.one_of(_weird(), st.just(obj[i])))
        assert_same_outcome(outcome(cls.from_obj, obj), outcome(ref.from_obj, cls, obj))

    check()


def _kitchen() -> _Kitchen:
    leaf = _Leaf(3, "ab")
    return _Kitchen(True, 1, -5, Height(9), Round(1), _Color.BLUE, Address(b"\x01" * 20), b"xy", "héllo",
                    None, leaf, (leaf,), (False,), (_Color.RED,), (Height(2),), (4, 5), (Hash32(b"\x02" * 32),),
                    (b"z",), ("é",), (None, 3), ((1,), ()), _Pair(None, -1), (leaf, _Pair(Hash32(b"\x03" * 32), 2)),
                    None, (6,), 4, b"")


def test_union_and_class_type_errors() -> None:
    kitchen = _kitchen()
    assert kitchen.encode() == ref.encode(kitchen)
    for bad in (kitchen.replace(choice=kitchen), kitchen.replace(maybe_leaf=_Pair(None, 1)),
                kitchen.replace(leaves=(kitchen,))):
        with pytest.raises(TypeError):
            bad.encode()
        with pytest.raises(TypeError):
            ref.encode(bad)
    with pytest.raises(DecodeError, match="thirteen"):
        _Pair.decode(msgpack.packb([None, 13]))
    with pytest.raises(DecodeError, match="unknown tag"):
        _Kitchen.from_obj([*kitchen.to_obj()[:21], [9, []], *kitchen.to_obj()[22:]])


def test_undecorated_subclass_encodes_with_its_own_codec() -> None:
    value = _Undecorated(5, (1,))
    assert value.encode() == ref.encode(value) == b"\x92\x05\x91\x01"
    assert _Undecorated.decode(b"\x92\x05\x91\x01") == value
    assert type(_Undecorated.decode(b"\x92\x05\x91\x01")) is _Undecorated
    assert type(_Small.decode(b"\x92\x05\x91\x01")) is _Small


# ------------------------------------------------------------------------------ CachedWire and typed ids


def _tx(nonce: int = 1) -> Transaction:
    return Transaction.create(PrivateKey.derive("codec", "cache", 0), chain_id="test-1", nonce=nonce,
                              gas_limit=10, fee=20, kind=1, payload=b"abc")


def test_cache_is_invisible_to_equality_hashing_repr_and_pickling() -> None:
    tx = _tx()
    fresh = copy.copy(tx)
    data = tx.encode()
    assert tx.encode() is data
    assert tx.hash == sha256(data) and tx.hash is tx.hash
    assert tx == fresh and hash(tx) == hash(fresh) and repr(tx) == repr(fresh)
    assert [f.name for f in dataclasses.fields(tx)] == [f.name for f in dataclasses.fields(fresh)]
    assert "_wire" not in repr(tx)
    for clone in (copy.copy(tx), copy.deepcopy(tx), pickle.loads(pickle.dumps(tx))):
        assert clone == tx and clone.encode() == data and clone.hash == tx.hash
    assert ref.encode(tx) == data


def test_replace_does_not_inherit_the_cache() -> None:
    tx = _tx(1)
    h1, d1 = tx.hash, tx.encode()
    other = tx.replace(nonce=Nonce(2))
    assert other.encode() != d1 and other.hash != h1
    assert other.encode() == ref.encode(other) and other.hash == sha256(ref.encode(other))
    same_fields = tx.replace()
    assert same_fields.encode() == d1 and same_fields.hash == h1


def test_decode_keeps_the_input_as_the_encoding() -> None:
    tx = _tx()
    data = tx.encode()
    for given_data in (data, bytearray(data), memoryview(data)):
        decoded = Transaction.decode(given_data)  # type: ignore[arg-type]
        cached = decoded.encode()
        assert type(cached) is bytes and cached == data
        assert decoded.hash == tx.hash
    result = TxResult.decode(TxResult.from_obj([0, 5, [], b"", "ok"]).encode())
    assert result.encode() == ref.encode(result) and result.hash == sha256(ref.encode(result))


@fast(20)
@given(strategies.of(Header))
def test_header_block_id_is_cached_and_matches_the_reference(header: Header) -> None:
    assert header.block_id == sha256(ref.encode(header))
    assert header.block_id is header.block_id


def test_typed_ids_have_no_dict_and_survive_pickling() -> None:
    for value in (Hash32(b"\x01" * 32), Height(7), Gas(0), PublicKeyBytes(b"\x02" * 32)):
        assert not hasattr(value, "__dict__")
        clone = pickle.loads(pickle.dumps(value))
        assert type(clone) is type(value) and clone == value
    with pytest.raises(TypeError):
        Height(True)
    with pytest.raises(ValueError):
        Round(2**32)
    with pytest.raises(ValueError):
        Hash32(b"short")
    assert type(Height(Round(3))) is Height


def test_encoding_from_many_threads_gives_the_same_bytes() -> None:
    values = [_tx(i) for i in range(20)] + [_kitchen().replace(small=i) for i in range(5)]
    expected = [ref.encode(v) for v in values]
    failures: list[str] = []

    def work() -> None:
        for _ in range(50):
            for v, want in zip(values, expected, strict=True):
                if copy.copy(v).encode() != want or type(v).decode(want) != v:
                    failures.append(type(v).__name__)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not failures


@wire(max_bytes=64)
class _WithDefault(Wire):
    a: U8
    b: U8 = 7


def test_generated_init_takes_the_dataclass_parameters() -> None:
    sig = inspect.signature(_WithDefault)
    assert [(p.name, p.default) for p in sig.parameters.values()] == [("a", inspect.Parameter.empty), ("b", 7)]
    assert _WithDefault(1) == _WithDefault(1, 7) == _WithDefault(a=1) == _WithDefault(b=7, a=1)
    assert _WithDefault(1).encode() == ref.encode(_WithDefault(1, 7))
    with pytest.raises(TypeError):
        _WithDefault()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _WithDefault(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _WithDefault(1, c=3)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _WithDefault(1).a = 2  # type: ignore[misc]
    tx = _tx()
    assert tx._wire_bytes is None and tx._wire_hash is None
    assert [p.name for p in inspect.signature(Transaction).parameters.values()] == [
        f.name for f in dataclasses.fields(Transaction)]


def test_generated_replace_matches_dataclasses_replace() -> None:
    value = _WithDefault(1, 2)
    for changes in ({}, {"a": 5}, {"b": 9}, {"a": 3, "b": 4}):
        new = value.replace(**changes)
        assert same(new, dataclasses.replace(value, **changes))
        assert new is not value
    with pytest.raises(TypeError):
        value.replace(c=1)
    with pytest.raises(TypeError):
        value.replace(1)  # type: ignore[call-arg]
    sub = _Undecorated(5, (1,))
    assert type(sub.replace(a=6)) is _Undecorated and sub.replace(a=6) == _Undecorated(6, (1,))
    tx = _tx()
    assert tx.hash and tx.replace(fee=Amount(21))._wire_hash is None


def test_spliced_encodings_come_from_the_cache_and_check_types() -> None:
    small = _Small(1, (2,))
    holder = _Holder(small, None, (small,) * 17, _Inner(3, small, b""), None, (), 4)
    data = holder.encode()
    assert data == ref.encode(holder) and _Holder.decode(data) == holder
    assert _Wide(*range(16), small).encode() == ref.encode(_Wide(*range(16), small))  # type: ignore[arg-type]
    object.__setattr__(small, "_wire_bytes", b"\x92\x01\x91\x03")  # (tampered, to see where bytes come from)
    assert holder.replace().encode() == ref.encode(_Holder(_Small(1, (3,)), None, (_Small(1, (3,)),) * 17,
                                                          _Inner(3, _Small(1, (3,)), b""), None, (), 4))
    for bad in (holder.replace(many=(small, _Undecorated(1, ()))), holder.replace(one=_Undecorated(1, ())),
                holder.replace(inners=(small,)), holder.replace(maybe=_Inner(3, small, b"")),
                holder.replace(many=[small])):
        assert_same_outcome(outcome(bad.encode), outcome(ref.encode, bad))
        assert outcome(bad.encode)[0] == "error"


def test_union_members_are_spliced_from_the_cache() -> None:
    small = _TaggedSmall(1, (2,))
    inner = _TaggedInner(_Small(5, ()), (_Small(6, (7,)),))
    chooser = _Chooser(small, None, inner, 9)
    data = chooser.encode()
    assert data == ref.encode(chooser) and _Chooser.decode(data) == chooser
    assert _Chooser(small, small, _Leaf(1, "x"), 0).encode() == ref.encode(_Chooser(small, small, _Leaf(1, "x"), 0))
    object.__setattr__(small, "_wire_bytes", b"\x92\x01\x91\x03")  # (tampered, to see where bytes come from)
    object.__setattr__(inner.small, "_wire_bytes", b"\x92\x05\x91\x04")
    assert chooser.replace().encode() == ref.encode(_Chooser(_TaggedSmall(1, (3,)), None,
                                                             _TaggedInner(_Small(5, (4,)), inner.smalls), 9))
    for bad in (chooser.replace(choice=_Small(1, ())), chooser.replace(maybe_choice=inner),
                chooser.replace(spliced_or_leaf=small)):
        assert_same_outcome(outcome(bad.encode), outcome(ref.encode, bad))
        assert outcome(bad.encode)[0] == "error"


def _cached_parts(value: Any) -> list[CachedWire]:
    """Every CachedWire value inside `value` (fields, optionals, sequences, union members), outermost first."""
    found: list[CachedWire] = []
    if isinstance(value, CachedWire):
        found.append(value)
    if isinstance(value, Wire):
        for f in dataclasses.fields(value):  # type: ignore[arg-type]
            found += _cached_parts(getattr(value, f.name))
    elif isinstance(value, tuple):
        for item in value:
            found += _cached_parts(item)
    return found


@pytest.mark.parametrize("cls", [_Holder, _Chooser, Block, ProposalBlock, CompactProposal, TxBatch, WalRecord],
                         ids=lambda c: c.__name__)
def test_decoded_values_inside_a_message_keep_their_own_bytes(cls: type[Wire]) -> None:
    """Decoding a message leaves every CachedWire value in it holding its encoding, which is its slice of the
    (canonical) input and the reference's encoding of it: hashing or encoding it again packs nothing."""

    @fast(examples(cls, 20))
    @given(values_of(ProposalBlock).map(compact_of) if cls is CompactProposal else values_of(cls))
    def check(value: Wire) -> None:
        data = ref.encode(value)
        first = outcome(cls.decode, data)
        assume(first[0] == "ok")  # (generated values may break a type's cross-field rule)
        for decoded in (first[1], cls.from_obj(ref.to_obj(value))):
            parts = _cached_parts(decoded)[1 if isinstance(decoded, CachedWire) else 0:]
            for part in parts:
                kept = part._wire_bytes
                assert kept is not None and kept == ref.encode(part) and kept in data
                assert part.digest() == sha256(kept)

    check()


def test_equal_neighbours_decode_once_and_only_from_bytes() -> None:
    """Decoding bytes shares one value among equal neighbouring CachedWire items (a block's results); objects
    given to from_obj are not msgpack's own, so an item that only packs like its neighbour is still refused."""
    small, other = _Small(1, (2,)), _Small(3, ())
    holder = _Holder(small, None, (small, small, other, small, small), _Inner(3, small, b""), None, (), 4)
    decoded = _Holder.decode(holder.encode())
    assert decoded == holder
    many = decoded.many
    assert many[0] is many[1] and many[2] is not many[1] and many[3] is many[4] and many[3] is not many[0]
    assert all(item._wire_bytes == ref.encode(item) for item in many)
    obj = ref.to_obj(holder)
    assert _Holder.from_obj(obj) == holder
    for loose in ([1, (2,)], (1, [2]), [_Color.RED, [2]]):  # each packs as [1, [2]], as the item before it
        obj[2][1] = loose
        assert_same_outcome(outcome(_Holder.from_obj, obj), outcome(ref.from_obj, _Holder, obj))
        assert outcome(_Holder.from_obj, obj)[0] == "error"


def test_a_non_canonical_item_inside_a_message_is_refused() -> None:
    """The parts kept by nested values are the input's only because the whole input is canonical: an item
    whose integer is not in its shortest form (here 0xcc 0x01 for 1) is refused, alone or beside its twin."""
    small = _Small(1, (2,))
    holder = _Holder(small, None, (small, small), _Inner(3, small, b""), None, (), 4)
    data = holder.encode()
    item = small.encode()
    assert item == b"\x92\x01\x91\x02"
    for start in (data.index(item), data.rindex(item)):
        bad = data[:start] + b"\x92\xcc\x01\x91\x02" + data[start + len(item):]
        assert msgpack.unpackb(bad) == msgpack.unpackb(data)
        with pytest.raises(DecodeError, match="canonical"):
            _Holder.decode(bad)
