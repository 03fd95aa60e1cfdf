"""Stored form of the state tree: 16-way internal nodes keyed by (version, position), leaves keyed by
(version, key path), hashed as a binary tree.

An internal node at nibble depth d covers binary levels 4d..4d+3. Its hash is the root of that 4-level
binary subtree under the sparse-Merkle rules (empty subtree = EMPTY_ROOT; a subtree with exactly one entry
is that entry's leaf hash; anything larger is H_node(left ‖ right)), so the root equals that of the plain
binary compressed sparse Merkle tree and proofs are short binary sibling lists, while a lookup reads only
one node per 4 levels (the Jellyfish Merkle Tree layout). A parent records each leaf child's key path, so
an update never reads a leaf, and a leaf that moves up or down the tree is not rewritten.
"""

from __future__ import annotations

import struct
from typing import Final

from core.errors import StorageError
from core.state.hashing import EMPTY_ROOT, node_hash

Child = tuple[bytes, int, bytes | None]
"""A parent's record of one child: (hash, version it was written at, key path if it is a leaf else None)."""

INTERNAL: Final = 1
LEAF: Final = 2

_EMPTY = bytes(EMPTY_ROOT)
_KEY_HEAD = struct.Struct(">QB")
_VERSION = struct.Struct(">Q")
_INTERNAL_HEAD = struct.Struct(">BHH")
_CHILD = struct.Struct(">Q32s")
_LEAF_CHILD = struct.Struct(">Q32s32s")
_KEY_LEN = struct.Struct(">I")


def node_key(version: int, depth: int, packed: bytes) -> bytes:
    """Internal node: version (8 bytes, big-endian) ‖ depth in nibbles (1 byte) ‖ the first `depth` nibbles,
    packed two to a byte."""
    return _KEY_HEAD.pack(version, depth) + packed


def leaf_key(version: int, path: bytes) -> bytes:
    """Leaf: version (8 bytes, big-endian) ‖ key path (32 bytes)."""
    return _VERSION.pack(version) + path


def child_prefix(packed: bytes, depth: int, nibble: int) -> bytes:
    """The packed position of child `nibble` of the node at `depth` whose packed position is `packed`."""
    if depth & 1:
        return packed[:-1] + bytes((packed[-1] | nibble,))
    return packed + bytes((nibble << 4,))


def nibble_at(path: bytes, depth: int) -> int:
    byte = path[depth >> 1]
    return byte & 15 if depth & 1 else byte >> 4


def encode_internal(children: dict[int, Child]) -> bytes:
    """kind ‖ bitmap of present children ‖ bitmap of leaf children ‖ per child in nibble order:
    version ‖ hash (‖ key path for a leaf)."""
    present = 0
    leaves = 0
    parts = []
    for nibble in sorted(children):
        digest, version, path = children[nibble]
        bit = 0x8000 >> nibble
        present |= bit
        if path is None:
            parts.append(_CHILD.pack(version, digest))
        else:
            leaves |= bit
            parts.append(_LEAF_CHILD.pack(version, digest, path))
    return _INTERNAL_HEAD.pack(INTERNAL, present, leaves) + b"".join(parts)


def decode_internal(data: bytes) -> dict[int, Child]:
    kind, present, leaves = _INTERNAL_HEAD.unpack_from(data)
    if kind != INTERNAL or leaves & ~present:
        raise StorageError("corrupt state node")
    size = _INTERNAL_HEAD.size + present.bit_count() * _CHILD.size + leaves.bit_count() * 32
    if size != len(data):
        raise StorageError("corrupt state node")
    children: dict[int, Child] = {}
    offset = _INTERNAL_HEAD.size
    unpack, unpack_leaf = _CHILD.unpack_from, _LEAF_CHILD.unpack_from
    for nibble in range(16):
        bit = 0x8000 >> nibble
        if leaves & bit:
            version, digest, path = unpack_leaf(data, offset)
            offset += _LEAF_CHILD.size
            children[nibble] = (digest, version, path)
        elif present & bit:
            version, digest = unpack(data, offset)
            offset += _CHILD.size
            children[nibble] = (digest, version, None)
    return children


def encode_leaf(key: bytes, value: bytes) -> bytes:
    """key length (4 bytes) ‖ key ‖ value: the original key is kept for state export."""
    return _KEY_LEN.pack(len(key)) + key + value


def decode_leaf(data: bytes) -> tuple[bytes, bytes]:
    """(key, value) of a stored leaf."""
    if len(data) < _KEY_LEN.size:
        raise StorageError("corrupt state leaf")
    (key_len,) = _KEY_LEN.unpack_from(data)
    end = _KEY_LEN.size + key_len
    if end > len(data):
        raise StorageError("corrupt state leaf")
    return data[_KEY_LEN.size : end], data[end:]


def fold(entries: list[tuple[int, bytes, bool]], level: int) -> bytes:
    """Hash of the binary subtree of one node spanning the aligned slot range that holds `entries`.

    `entries` are (nibble, hash, is_leaf), sorted by nibble; `level` is the binary level of the range within
    the node (0: all 16 slots, 4: one slot). Used for proofs; `internal_hash` is the fast path.
    """
    if not entries:
        return _EMPTY
    if len(entries) == 1:
        nibble, digest, is_leaf = entries[0]
        if is_leaf:
            return digest
        # A lone internal child: a chain of nodes with empty siblings up to this level.
        for bit in range(3, level - 1, -1):
            if (nibble >> (3 - bit)) & 1:
                digest = node_hash(_EMPTY, digest)
            else:
                digest = node_hash(digest, _EMPTY)
        return digest
    mask = 8 >> level
    split = 0
    while split < len(entries) and not entries[split][0] & mask:
        split += 1
    return node_hash(fold(entries[:split], level + 1), fold(entries[split:], level + 1))


def internal_hash(children: dict[int, Child]) -> bytes:
    """Hash of a node (every stored internal node holds at least two entries below it).

    Folds the 16 slots level by level, pairing siblings: the rules of `fold`, in the form that costs least
    on the update path.
    """
    level = [(nibble, children[nibble][0], children[nibble][2] is not None) for nibble in sorted(children)]
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
