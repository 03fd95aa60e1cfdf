"""RFC 6962-style Merkle trees over transaction and result lists."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.merkle import EMPTY_ROOT, MerkleProof, merkle_proof, merkle_root, verify_merkle_proof

pytestmark = pytest.mark.core


def test_empty_and_single() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root([b"a"]) != merkle_root([b"b"])


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
