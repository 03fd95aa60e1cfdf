"""Binary Merkle trees over ordered lists (transactions, results), RFC 6962 style.

Leaves are hashed as H(0x00 ‖ data) and inner nodes as H(0x01 ‖ left ‖ right), so a leaf can never pose as an
inner node; the split is at the largest power of two below n. The empty list hashes to H(b"").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated

from core.codec import U32, MaxLen, Wire, wire
from core.hashing import sha256, sha256_concat
from core.limits import MAX_MERKLE_DEPTH
from core.types import Hash32

_hash32 = bytes.__new__  # a digest is 32 bytes: Hash32's length check is not needed (as in core.hashing)

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> Hash32:
    return sha256_concat(b"\x00", data)


def inner_hash(left: bytes, right: bytes) -> Hash32:
    return sha256_concat(b"\x01", left, right)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root_of_hashes(hashes: Sequence[Hash32]) -> Hash32:
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = _split(n)
    return inner_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


_sha256 = hashlib.sha256


def merkle_root(items: Sequence[bytes]) -> Hash32:
    """The root, computed bottom up: pair neighbours level by level and carry an odd last node up unchanged.
    That is the same tree as the split at the largest power of two below n (`_root_of_hashes`; every left
    subtree is complete, so only the rightmost node of a level can lack a partner), with one hashlib call per
    node and no recursion: block roots hash thousands of transactions and results.

    A node whose inputs are the very objects of the node before it reuses that node's hash: a block's results
    are mostly one shared value (`core.block.encode_results`), so its results root costs a few dozen hashes
    instead of two per result, and the check is one identity test where the items differ."""
    n = len(items)
    if n == 0:
        return EMPTY_ROOT
    sha = _sha256
    level: list[bytes] = []
    last: bytes | None = None
    digest = b""
    for item in items:
        if item is not last:
            last, digest = item, sha(b"\x00" + item).digest()
        level.append(digest)
    while n > 1:
        up: list[bytes] = []
        left: bytes | None = None
        right: bytes | None = None
        for i in range(0, n - 1, 2):
            a, b = level[i], level[i + 1]
            if a is not left or b is not right:
                left, right, digest = a, b, sha(b"\x01" + a + b).digest()
            up.append(digest)
        if n & 1:
            up.append(level[-1])
        level = up
        n = len(level)
    return _hash32(Hash32, level[0])


@wire(max_bytes=64 + 34 * MAX_MERKLE_DEPTH)
class MerkleProof(Wire):
    index: U32
    total: U32
    aunts: Annotated[tuple[Hash32, ...], MaxLen(MAX_MERKLE_DEPTH)]


def merkle_proof(items: Sequence[bytes], index: int) -> MerkleProof:
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} out of range for {len(items)} items")
    hashes = [leaf_hash(item) for item in items]
    aunts: list[Hash32] = []

    def walk(lo: int, hi: int) -> None:
        if hi - lo == 1:
            return
        k = _split(hi - lo)
        if index < lo + k:
            walk(lo, lo + k)
            aunts.append(_root_of_hashes(hashes[lo + k:hi]))
        else:
            walk(lo + k, hi)
            aunts.append(_root_of_hashes(hashes[lo:lo + k]))

    walk(0, len(items))
    return MerkleProof(index, len(items), tuple(aunts))


def verify_merkle_proof(root: bytes, item: bytes, proof: MerkleProof) -> bool:
    """True when `item` is leaf `proof.index` of a list of `proof.total` items with this root."""
    if not 0 <= proof.index < proof.total:
        return False
    aunts = list(proof.aunts)

    def climb(lo: int, hi: int) -> Hash32 | None:
        if hi - lo == 1:
            return leaf_hash(item)
        k = _split(hi - lo)
        if proof.index < lo + k:
            left = climb(lo, lo + k)
            if left is None or not aunts:
                return None
            return inner_hash(left, aunts.pop(0))
        right = climb(lo + k, hi)
        if right is None or not aunts:
            return None
        return inner_hash(aunts.pop(0), right)

    computed = climb(0, proof.total)
    return computed is not None and not aunts and computed == root
