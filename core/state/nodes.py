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

import hashlib
import struct
from typing import Final

from core.errors import StorageError
from core.state.hashing import EMPTY_ROOT, NODE_TAG, node_hash

Child = tuple[bytes, int, bytes | None]
"""A parent's record of one child: (hash, version it was written at, key path if it is a leaf else None)."""

INTERNAL: Final = 1
LEAF: Final = 2

_EMPTY = bytes(EMPTY_ROOT)
_NODE_TAG_BYTES = bytes((len(NODE_TAG),)) + NODE_TAG
_sha256 = hashlib.sha256
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


_layouts: dict[tuple[int, int], tuple[struct.Struct, tuple[tuple[int, bool], ...]]] = {}


def _layout(present: int, leaves: int) -> tuple[struct.Struct, tuple[tuple[int, bool], ...]]:
    """The struct that unpacks a node with these child bitmaps in one call, and its (nibble, is_leaf) list."""
    layout = _layouts.get((present, leaves))
    if layout is None:
        slots = tuple((n, bool(leaves & (0x8000 >> n))) for n in range(16) if present & (0x8000 >> n))
        fmt = ">5x" + "".join("Q32s32s" if is_leaf else "Q32s" for _, is_leaf in slots)
        layout = struct.Struct(fmt), slots
        if len(_layouts) < 4096:
            _layouts[(present, leaves)] = layout
    return layout


def decode_internal(data: bytes) -> dict[int, Child]:
    kind, present, leaves = _INTERNAL_HEAD.unpack_from(data)
    if kind != INTERNAL or leaves & ~present:
        raise StorageError("corrupt state node")
    shape, slots = _layout(present, leaves)
    if shape.size != len(data):
        raise StorageError("corrupt state node")
    fields = shape.unpack(data)
    children: dict[int, Child] = {}
    i = 0
    for nibble, is_leaf in slots:
        if is_leaf:
            children[nibble] = (fields[i + 1], fields[i], fields[i + 2])
            i += 3
        else:
            children[nibble] = (fields[i + 1], fields[i], None)
            i += 2
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

    Folds the 16 slots pairwise, level by level: the rules of `fold` in the form that costs least on the
    update path (None marks an empty subtree; node_hash is inlined).
    """
    sha, tag, empty = _sha256, _NODE_TAG_BYTES, _EMPTY
    hashes: list[bytes | None] = [None] * 16
    leaf = [False] * 16
    for nibble, child in children.items():
        hashes[nibble] = child[0]
        leaf[nibble] = child[2] is not None
    width = 16
    while width > 1:
        up: list[bytes | None] = []
        up_leaf: list[bool] = []
        for j in range(0, width, 2):
            left, right = hashes[j], hashes[j + 1]
            if left is None:
                if right is None:
                    up.append(None)
                    up_leaf.append(False)
                elif leaf[j + 1]:
                    up.append(right)
                    up_leaf.append(True)
                else:
                    up.append(sha(tag + empty + right).digest())
                    up_leaf.append(False)
            elif right is None:
                if leaf[j]:
                    up.append(left)
                    up_leaf.append(True)
                else:
                    up.append(sha(tag + left + empty).digest())
                    up_leaf.append(False)
            else:
                up.append(sha(tag + left + right).digest())
                up_leaf.append(False)
        hashes, leaf, width = up, up_leaf, width >> 1
    root = hashes[0]
    assert root is not None
    return root


HEAD = _INTERNAL_HEAD
"""kind (1) ‖ bitmap of present children (2) ‖ bitmap of leaf children (2); bit 0x8000 >> n is child n."""


def child_offset(present: int, leaves: int, nibble: int) -> int:
    """Where child `nibble`'s record starts (or would start) in a node's bytes."""
    shift = 16 - nibble
    return 5 + 40 * (present >> shift).bit_count() + 32 * (leaves >> shift).bit_count()


def decode_node_bitmaps(data: bytes) -> tuple[int, int]:
    """The (present, leaves) bitmaps of a stored internal node; StorageError if its bytes are not one."""
    kind, present, leaves = _INTERNAL_HEAD.unpack_from(data)
    if kind != INTERNAL or leaves & ~present or len(data) != 5 + 40 * present.bit_count() + 32 * leaves.bit_count():
        raise StorageError("corrupt state node")
    return present, leaves


def version_bytes(version: int) -> bytes:
    return _VERSION.pack(version)


def version_of(data: bytes) -> int:
    version: int = _VERSION.unpack_from(data)[0]
    return version
