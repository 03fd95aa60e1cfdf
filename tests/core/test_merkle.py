"""RFC 6962-style Merkle trees over transaction and result lists."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.merkle import EMPTY_ROOT, MerkleProof, merkle_proof, merkle_root, verify_merkle_proof

pytestmark = pytest.mark.core


def test_empty_and_single() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root([b"a"]) != merkle_root([b"b"])


def _rfc6962_root(items: list[bytes]) -> bytes:
    """RFC 6962's definition, written out: MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest
    power of two below n; MTH of one item H(0x00 || item); of none H()."""
    if not items:
        return hashlib.sha256(b"").digest()
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    k = 1
    while k * 2 < len(items):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962_root(items[:k]) + _rfc6962_root(items[k:])).digest()


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=6), max_size=70))
def test_root_is_rfc6962s_tree_hash(items: list[bytes]) -> None:
    """The bottom-up computation (odd nodes carried up) gives RFC 6962's recursive root for every length."""
    assert merkle_root(items) == _rfc6962_root(items)


def test_root_of_every_length_up_to_a_full_block_matches_rfc6962() -> None:
    items = [i.to_bytes(2, "big") for i in range(600)]
    for n in (*range(40), 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 600):
        assert merkle_root(items[:n]) == _rfc6962_root(items[:n]), n


def test_root_of_shared_and_repeated_items_matches_rfc6962() -> None:
    """Items that are one object (a block's shared result encoding) reuse hashes; the root is still RFC 6962's,
    for runs of one object, alternations, and equal values that are distinct objects."""
    a, b = bytes([1, 2, 3]), bytes([4, 5])
    copy_of_a = bytes(bytearray(a))
    patterns = [[a] * 1, [a] * 2, [a] * 7, [a] * 64, [a] * 1001, [a, b] * 9, [a, a, b, a, a, a, b, b, a],
                [a, copy_of_a] * 5, [b] + [a] * 30 + [b], [a] * 16 + [b] * 16 + [a] * 3]
    for items in patterns:
        assert merkle_root(items) == _rfc6962_root(items), len(items)


def test_leaf_cannot_pose_as_inner_node() -> None:
    two = merkle_root([b"a", b"b"])
    assert merkle_root([two]) != two


@settings(max_examples=150)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_leaf_proves_and_nothing_else_does(items: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(items)
    i = data.draw(st.integers(0, len(items) - 1))
    proof = merkle_proof(items, i)
    assert verify_merkle_proof(root, items[i], proof)
    assert MerkleProof.decode(proof.encode()) == proof
    assert not verify_merkle_proof(root, items[i] + b"x", proof)
    if len(items) > 1:
        j = (i + 1) % len(items)
        if items[j] != items[i]:
            assert not verify_merkle_proof(root, items[j], proof)
            assert not verify_merkle_proof(root, items[i], proof.replace(index=j))
    assert not verify_merkle_proof(root, items[i], proof.replace(index=len(items)))
