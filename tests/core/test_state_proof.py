"""State proofs on the wire: one canonical encoding, DecodeError for anything else, and pinned vectors that fix
the hashing and the proof format for other implementations."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DecodeError, ProofError
from core.hashing import tagged_hash
from core.state import EMPTY_ROOT, AuthenticatedMap, ProofLeaf, StateProof, compute_proof_root, verify_proof
from core.state.hashing import LEAF_TAG, NODE_TAG, VALUE_TAG, key_path, leaf_hash, node_hash, value_hash
from core.store import MemoryStore
from core.types import Hash32

pytestmark = pytest.mark.core

HASH = st.binary(min_size=32, max_size=32).map(Hash32)
PROOFS = st.builds(
    StateProof,
    leaf=st.none() | st.builds(ProofLeaf, path=HASH, value_hash=HASH),
    siblings=st.lists(HASH, max_size=40).map(tuple),
)


@settings(max_examples=60)
@given(proof=PROOFS)
def test_proof_round_trips(proof: StateProof) -> None:
    data = proof.to_bytes()
    assert StateProof.from_bytes(data) == proof
    assert StateProof.from_bytes(data).to_bytes() == data


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_canonically_or_raise_decode_error(data: bytes) -> None:
    try:
        proof = StateProof.from_bytes(data)
    except DecodeError:
        return
    assert proof.to_bytes() == data


@settings(max_examples=100)
@given(proof=PROOFS, cut=st.integers(min_value=1))
def test_truncated_proofs_raise_decode_error(proof: StateProof, cut: int) -> None:
    data = proof.to_bytes()
    with pytest.raises(DecodeError):
        StateProof.from_bytes(data[: len(data) - 1 - cut % len(data)])


@pytest.mark.parametrize(
    "obj",
    [
        [None],  # missing field
        [None, [], 1],  # extra field
        [None, [b"\x00" * 31]],  # short hash
        [[b"\x00" * 32], []],  # leaf missing its value hash
        [None, [b"\x00" * 32] * 257],  # deeper than a 256-bit path
        {"leaf": None, "siblings": []},  # map instead of array
        [None, ["00" * 32]],  # text instead of bytes
    ],
)
def test_malformed_proofs_raise_decode_error(obj: object) -> None:
    with pytest.raises(DecodeError):
        StateProof.from_bytes(msgpack.packb(obj, use_bin_type=True))


def test_non_canonical_encoding_raises_decode_error() -> None:
    canonical = StateProof(leaf=None, siblings=(EMPTY_ROOT,)).to_bytes()
    # The same value with the array length as array16 instead of fixarray.
    padded = b"\xdc\x00\x02" + canonical[1:]
    with pytest.raises(DecodeError):
        StateProof.from_bytes(padded)
    with pytest.raises(DecodeError):
        StateProof.from_bytes(canonical + b"\x00")


def test_verify_returns_false_for_a_proof_that_cannot_apply() -> None:
    foreign = StateProof(leaf=ProofLeaf(path=key_path(b"b"), value_hash=value_hash(b"1")), siblings=())
    assert not verify_proof(Hash32(leaf_hash(key_path(b"b"), value_hash(b"1"))), b"a", b"1", foreign)
    with pytest.raises(ProofError):
        compute_proof_root(b"a", b"1", foreign)
    assert not verify_proof(EMPTY_ROOT, b"a", None, "not a proof")  # type: ignore[arg-type]
    hand_made = StateProof(leaf=ProofLeaf(path=b"short", value_hash=bytes(32)), siblings=())  # type: ignore[arg-type]
    assert not verify_proof(EMPTY_ROOT, b"a", None, hand_made)
    assert not verify_proof(EMPTY_ROOT, b"a", None, StateProof(leaf=None, siblings=(b"x",)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- pinned vectors
# Changing any of these changes every state root on the chain: it is a hard fork, never a refactor.


def test_hash_domains_are_pinned() -> None:
    assert (LEAF_TAG, NODE_TAG, VALUE_TAG) == (
        b"inferchain/state/leaf",
        b"inferchain/state/node",
        b"inferchain/state/value",
    )
    assert key_path(b"alice").hex() == "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
    assert leaf_hash(bytes(32), bytes(32)) != node_hash(bytes(32), bytes(32))
    # The inlined forms are exactly core.hashing.tagged_hash.
    a, b = key_path(b"a"), key_path(b"b")
    assert leaf_hash(a, b) == tagged_hash(LEAF_TAG, a, b)
    assert node_hash(a, b) == tagged_hash(NODE_TAG, a, b)
    assert value_hash(b"value") == tagged_hash(VALUE_TAG, b"value")


ROOTS = [
    ({b"alice": b"100"}, "0acc4346015f82e514f53b7186899546502653dc57574fa95101ce527338f77b"),
    ({b"bob": b"250", b"carol": b""}, "7e6178608a8785290adfd45cd26cb069e1b8dc7cf19c35056717baf0008bca71"),
    ({b"k%d" % i: b"v%d" % i for i in range(100)}, "b7771ba18649046bf8864b88276b7f5fab6a28c1d4981600996ad32cd541059b"),
]

DAVE_EXCLUSION = (
    "9292c4206121ea28367c40139ce77719c27c36baabb6412dcef80f70fe178cf52570d952c42095006f6b436cd862d5ed556fe699"
    "4dbac82dfe319cb3770b98b26a155270072997c420a1ef1ec49c6c253205b3172424309917a2d59fa2c17a9962849191d4880d9c"
    "41c42034d98aba4d9d3b0bf3448feac6a78f42e45e0940b91c7f88dbbbb11f633a469ec42085b19f7b50e50f1ab68436036375d6"
    "dfa77cac38ea02790caaebe4d857c27245c420e11fc991e0a1b9ea1180f2f03ac08e0b0700c0f832cb0434f31f630b06d349b5c4"
    "208e8f2834bae080c7b29d43a87c98fa267578dc00b3ffd6d12ee9624f6a749036c420dd61222d72109ca56b2a70e90ac40bc4fb"
    "16878a3bfdf92e79531b7d60409e6bc420496539228efd0e8210b8ed2a68515f7b1996c828cba7d1cebd849564f31b924a"
)


def test_state_roots_are_pinned() -> None:
    smap = AuthenticatedMap(MemoryStore())
    for version, (changes, root) in enumerate(ROOTS, start=1):
        assert smap.commit(version, changes).hex() == root


def test_exclusion_proof_is_pinned() -> None:
    smap = AuthenticatedMap(MemoryStore())
    for version, (changes, _) in enumerate(ROOTS, start=1):
        smap.commit(version, changes)
    proof = smap.prove(b"dave", 3)
    assert proof.to_bytes().hex() == DAVE_EXCLUSION
    decoded = StateProof.from_bytes(bytes.fromhex(DAVE_EXCLUSION))
    assert verify_proof(Hash32.from_hex(ROOTS[2][1]), b"dave", None, decoded)
    assert not verify_proof(Hash32.from_hex(ROOTS[2][1]), b"dave", b"", decoded)
