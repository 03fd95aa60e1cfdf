"""Stored form of the state tree: 16-way nodes keyed by (version, position), hashed as a binary tree.

A node at nibble depth d covers binary levels 4d..4d+3. Its hash is the root of that 4-level binary
subtree, computed with the sparse-Merkle rules (empty subtree = EMPTY_ROOT, a subtree with exactly one entry
is that entry's leaf hash, anything larger is H_node(left ‖ right)), so the root equals that of the plain
binary compressed sparse Merkle tree and proofs are short binary sibling lists, while a lookup reads only
one node per 4 levels (Jellyfish Merkle Tree layout).
"""

from __future__ import annotations

import struct
from typing import Final

from core.errors import StorageError
from core.state.hashing import EMPTY_ROOT, node_hash

Child = tuple[bytes, int, bool]
"""A parent's record of one child: (hash, version the child node was written at, is it a leaf)."""

INTERNAL: Final = 1
LEAF: Final = 2

KIND_EMPTY: Final = 0
KIND_LEAF: Final = 1
KIND_INTERNAL: Final = 2

_EMPTY = bytes(EMPTY_ROOT)
_KEY_HEAD = struct.Struct(">QB")
_VERSION = struct.Struct(">Q")
_INTERNAL_HEAD = struct.Struct(">BHH")
_LEAF_HEAD = struct.Struct(">B32sI")
_CHILD = struct.Struct(">Q32s")


def node_key(version: int, depth: int, packed: bytes) -> bytes:
    """version (8 bytes, big-endian) ‖ depth in nibbles (1 byte) ‖ the first `depth` nibbles, packed."""
    return _KEY_HEAD.pack(version, depth) + packed


def child_prefix(packed: bytes, depth: int, nibble: int) -> bytes:
    """The packed position of child `nibble` of the node at `depth` whose packed position is `packed`."""
    if depth & 1:
        return packed[:-1] + bytes((packed[-1] | nibble,))
    return packed + bytes((nibble << 4,))


def nibble_at(path: bytes, depth: int) -> int:
    byte = path[depth >> 1]
    return byte & 15 if depth & 1 else byte >> 4


def encode_internal(children: dict[int, Child]) -> bytes:
    present = 0
    leaves = 0
    parts = []
    pack = _CHILD.pack
    for nibble in sorted(children):
        digest, version, is_leaf = children[nibble]
        bit = 0x8000 >> nibble
        present |= bit
        if is_leaf:
            leaves |= bit
        parts.append(pack(version, digest))
    return _INTERNAL_HEAD.pack(INTERNAL, present, leaves) + b"".join(parts)


def decode_internal(data: bytes) -> dict[int, Child]:
    kind, present, leaves = _INTERNAL_HEAD.unpack_from(data)
    if kind != INTERNAL or present.bit_count() * _CHILD.size + _INTERNAL_HEAD.size != len(data):
        raise StorageError("corrupt state node")
    children: dict[int, Child] = {}
    offset = _INTERNAL_HEAD.size
    unpack = _CHILD.unpack_from
    for nibble in range(16):
        bit = 0x8000 >> nibble
        if present & bit:
            version, digest = unpack(data, offset)
            offset += _CHILD.size
            children[nibble] = (digest, version, bool(leaves & bit))
    return children


def encode_leaf(path: bytes, key: bytes, value: bytes) -> bytes:
    return _LEAF_HEAD.pack(LEAF, path, len(key)) + key + value


def decode_leaf(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(path, key, value) of a stored leaf."""
    if len(data) < _LEAF_HEAD.size or data[0] != LEAF:
        raise StorageError("corrupt state leaf")
    _, path, key_len = _LEAF_HEAD.unpack_from(data)
    end = _LEAF_HEAD.size + key_len
    if end > len(data):
        raise StorageError("corrupt state leaf")
    return path, data[_LEAF_HEAD.size : end], data[end:]


def fold(entries: list[tuple[int, bytes, bool]], level: int) -> tuple[bytes, int]:
    """(hash, kind) of the binary subtree of one node that spans the aligned slot range holding `entries`.

    `entries` are (nibble, hash, is_leaf), sorted by nibble; `level` is the binary level of the range within
    the node (0: all 16 slots, 4: one slot).
    """
    if not entries:
        return _EMPTY, KIND_EMPTY
    if len(entries) == 1:
        nibble, digest, is_leaf = entries[0]
        if is_leaf:
            return digest, KIND_LEAF
        # A lone internal child: a chain of nodes with empty siblings up to this level.
        for bit in range(3, level - 1, -1):
            if (nibble >> (3 - bit)) & 1:
                digest = node_hash(_EMPTY, digest)
            else:
                digest = node_hash(digest, _EMPTY)
        return digest, KIND_INTERNAL
    mask = 8 >> level
    split = 0
    while split < len(entries) and not entries[split][0] & mask:
        split += 1
    left, _ = fold(entries[:split], level + 1)
    right, _ = fold(entries[split:], level + 1)
    return node_hash(left, right), KIND_INTERNAL


def internal_hash(children: dict[int, Child]) -> bytes:
    """Hash of a node (every stored internal node holds at least two entries below it).

    Folds the 16 slots level by level, pairing siblings; the same rules as `fold`, in the form that costs
    least on the update path.
    """
    level = [(nibble, children[nibble][0], children[nibble][2]) for nibble in sorted(children)]
    for _ in range(4):
        up: list[tuple[int, bytes, bool]] = []
        i, count = 0, len(level)
        while i < count:
            index, digest, is_leaf = level[i]
            if i + 1 < count and level[i + 1][0] == index ^ 1:
                up.append((index >> 1, node_hash(digest, level[i + 1][1]), False))
                i += 2
                continue
            if is_leaf:
                up.append((index >> 1, digest, True))
            elif index & 1:
                up.append((index >> 1, node_hash(_EMPTY, digest), False))
            else:
                up.append((index >> 1, node_hash(digest, _EMPTY), False))
            i += 1
        level = up
    return level[0][1]


def version_bytes(version: int) -> bytes:
    return _VERSION.pack(version)


def version_of(data: bytes) -> int:
    version: int = _VERSION.unpack_from(data)[0]
    return version
