"""Hashes of the authenticated state tree, domain-separated by kind so a leaf can never pose as a node.

All three use `core.hashing.tagged_hash`'s construction H(len(tag) ‖ tag ‖ parts); the tag prefix is hashed
once at import and copied per call, which halves the cost on the update path.
"""

from __future__ import annotations

import hashlib

from core.hashing import ZERO_HASH

LEAF_TAG = b"inferchain/state/leaf"
NODE_TAG = b"inferchain/state/node"
VALUE_TAG = b"inferchain/state/value"

EMPTY_ROOT = ZERO_HASH
"""Root of the empty map, and the hash of every empty subtree: 32 zero bytes."""


def _prefixed(tag: bytes) -> hashlib._Hash:
    return hashlib.sha256(bytes([len(tag)]) + tag)


_LEAF = _prefixed(LEAF_TAG)
_NODE = _prefixed(NODE_TAG)
_VALUE = _prefixed(VALUE_TAG)
_sha256 = hashlib.sha256


def key_path(key: bytes) -> bytes:
    """The 256-bit position of `key` in the tree: SHA-256(key)."""
    return _sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    h = _VALUE.copy()
    h.update(value)
    return h.digest()


def leaf_hash(path: bytes, value_digest: bytes) -> bytes:
    """H_leaf(path ‖ value_hash): the hash of a subtree holding exactly this one entry."""
    h = _LEAF.copy()
    h.update(path)
    h.update(value_digest)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """H_node(left ‖ right): a binary subtree holding two or more entries."""
    h = _NODE.copy()
    h.update(left)
    h.update(right)
    return h.digest()
