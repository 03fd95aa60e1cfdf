"""Hashes of the authenticated state tree, domain-separated by kind so a leaf can never pose as a node.

All three use `core.hashing.tagged_hash`'s construction H(len(tag) ‖ tag ‖ parts), written out inline: one
hashlib call per hash is the cheapest form in CPython, and these sit on the block-apply path.
"""

from __future__ import annotations

import hashlib

from core.hashing import ZERO_HASH

LEAF_TAG = b"inferchain/state/leaf"
NODE_TAG = b"inferchain/state/node"
VALUE_TAG = b"inferchain/state/value"

EMPTY_ROOT = ZERO_HASH
"""Root of the empty map, and the hash of every empty subtree: 32 zero bytes."""


_LEAF = bytes([len(LEAF_TAG)]) + LEAF_TAG
_NODE = bytes([len(NODE_TAG)]) + NODE_TAG
_VALUE = bytes([len(VALUE_TAG)]) + VALUE_TAG
_sha256 = hashlib.sha256


def key_path(key: bytes) -> bytes:
    """The 256-bit position of `key` in the tree: SHA-256(key)."""
    return _sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    return _sha256(_VALUE + value).digest()


def leaf_hash(path: bytes, value_digest: bytes) -> bytes:
    """H_leaf(path ‖ value_hash): the hash of a subtree holding exactly this one entry."""
    return _sha256(_LEAF + path + value_digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """H_node(left ‖ right): a binary subtree holding two or more entries."""
    return _sha256(_NODE + left + right).digest()
