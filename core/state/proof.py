"""State proofs: inclusion or exclusion of one key against a state root, checkable without a database.

A proof walks the binary path SHA-256(key) from the root down to where the tree ends on that path: the
`siblings` are the hashes beside the path, top first, and `leaf` is what sits at the end (None: an empty
subtree). Inclusion: the leaf is the key's own. Exclusion: the path ends in an empty subtree, or in the leaf
of another key that shares the path so far.
"""

from __future__ import annotations

from typing import Annotated

from core.codec import MaxLen, Wire, wire
from core.errors import ProofError
from core.state.hashing import EMPTY_ROOT, key_path, leaf_hash, node_hash, value_hash
from core.types import Hash32

MAX_PROOF_DEPTH = 256
"""A path has 256 bits, so no proof has more siblings than that."""


@wire(max_bytes=80)
class ProofLeaf(Wire):
    """The entry at the end of a proof's path: its key path and the hash of its value."""

    path: Hash32
    value_hash: Hash32


@wire(max_bytes=96 + 35 * MAX_PROOF_DEPTH)
class StateProof(Wire):
    leaf: ProofLeaf | None
    siblings: Annotated[tuple[Hash32, ...], MaxLen(MAX_PROOF_DEPTH)]

    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StateProof:
        """Decode a proof; anything but the one canonical encoding raises DecodeError."""
        return cls.decode(data)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def _bit(path: bytes, index: int) -> int:
    return (path[index >> 3] >> (7 - (index & 7))) & 1


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    whole, rest = divmod(bits, 8)
    if a[:whole] != b[:whole]:
        return False
    if rest == 0:
        return True
    mask = (0xFF << (8 - rest)) & 0xFF
    return (a[whole] & mask) == (b[whole] & mask)


def compute_proof_root(key: bytes, value: bytes | None, proof: StateProof) -> Hash32:
    """The root that `proof` implies for `key` holding `value` (None: absent); raises ProofError if the
    proof cannot speak for that claim at all."""
    if not isinstance(proof, StateProof):
        raise ProofError(f"expected a StateProof, got {type(proof).__name__}")
    path = key_path(key)
    depth = len(proof.siblings)
    if depth > MAX_PROOF_DEPTH:
        raise ProofError("proof deeper than the key path")
    leaf = proof.leaf
    # Decoded proofs always pass these; a proof built by hand might not.
    if leaf is not None and not (_is_hash(leaf.path) and _is_hash(leaf.value_hash)):
        raise ProofError("proof leaf fields must be 32-byte hashes")
    if not all(_is_hash(sibling) for sibling in proof.siblings):
        raise ProofError("proof siblings must be 32-byte hashes")
    if value is not None:
        if leaf is None or leaf.path != path:
            raise ProofError("inclusion proof does not end at the key's leaf")
        digest = value_hash(value)
        if leaf.value_hash != digest:
            raise ProofError("inclusion proof is for another value")
        current = leaf_hash(path, digest)
    elif leaf is None:
        current = bytes(EMPTY_ROOT)
    else:
        if leaf.path == path:
            raise ProofError("exclusion proof ends at the key's own leaf")
        if not _shares_prefix(leaf.path, path, depth):
            raise ProofError("exclusion proof ends at a leaf off the key's path")
        current = leaf_hash(leaf.path, leaf.value_hash)
    for index in range(depth - 1, -1, -1):
        sibling = proof.siblings[index]
        if _bit(path, index):
            current = node_hash(sibling, current)
        else:
            current = node_hash(current, sibling)
    root: Hash32 = Hash32(current)
    return root


def verify_proof(root: Hash32, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """True iff `proof` shows that under `root`, `key` maps to `value` (or is absent when `value` is None)."""
    try:
        return compute_proof_root(key, value, proof) == root
    except ProofError:
        return False

