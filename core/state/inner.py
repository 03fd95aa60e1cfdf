"""A node's inner binary hashes, and the node hash computed from them or from its children alone.

A 16-way node spans 4 binary levels. Heap-numbered, position 1 is the node, 2p and 2p+1 are the halves of p,
and 16+n is child n; every position's value follows the sparse-Merkle rules (EMPTY_ROOT if empty, the leaf
hash if it holds one leaf, else H_node(left ‖ right)). Keeping positions 2..15 (the "inner hashes", 448
bytes; position 1 is the node's own hash, which its parent holds) lets an update re-derive only the 4 values on
a changed child's path instead of up to 15. They live in the node cache only: nothing here changes what is
stored or hashed.
"""

from __future__ import annotations

import hashlib
from typing import Final

from core.state.hashing import EMPTY_ROOT, NODE_TAG
from core.state.nodes import child_offset

_EMPTY = bytes(EMPTY_ROOT)
_sha256 = hashlib.sha256

NODE_PREFIX: Final = bytes((len(NODE_TAG),)) + NODE_TAG
"""What every H_node input starts with: len(tag) ‖ tag."""


def _position_masks() -> tuple[int, ...]:
    masks = [0] * 32
    for position in range(1, 32):
        level = position.bit_length() - 1
        width = 16 >> level
        first = (position - (1 << level)) * width
        masks[position] = ((1 << width) - 1) << (16 - first - width)
    return tuple(masks)


MASKS: Final = _position_masks()
"""MASKS[p]: the child bits below heap position p of a node."""

DENSE: Final = 5
"""Nodes with at least this many children keep their inner hashes (in the cache); smaller ones re-derive them,
which costs no more hashes than a path update."""


def dense_values(raw: bytes, present: int, leaves: int) -> list[bytes]:
    """All 31 heap values of a node (index 0 unused); vals[1] is its hash. For nodes of DENSE children or more."""
    sha, tag, empty, masks = _sha256, NODE_PREFIX, _EMPTY, MASKS
    vals = [empty] * 32
    off = 5
    for nibble in range(16):
        bit = 0x8000 >> nibble
        if present & bit:
            vals[16 + nibble] = raw[off + 8 : off + 40]
            off += 72 if leaves & bit else 40
    for position in range(15, 0, -1):
        left = position + position
        ca = present & masks[left]
        cb = present & masks[left + 1]
        if ca:
            if cb:
                vals[position] = sha(tag + vals[left] + vals[left + 1]).digest()
            elif ca & (ca - 1) or not leaves & ca:
                vals[position] = sha(tag + vals[left] + empty).digest()
            else:
                vals[position] = vals[left]
        elif cb:
            if cb & (cb - 1) or not leaves & cb:
                vals[position] = sha(tag + empty + vals[left + 1]).digest()
            else:
                vals[position] = vals[left + 1]
    return vals


def _alone(slot: int, digest: bytes, is_leaf: int, level: int) -> bytes:
    """The value at binary level `level` (0: the node) of a subtree whose only child is `slot`: a leaf floats
    up unchanged; an internal child is hashed up with an empty sibling at each level."""
    if is_leaf:
        return digest
    sha, tag, empty = _sha256, NODE_PREFIX, _EMPTY
    for bit in range(3, level - 1, -1):
        if (slot >> (3 - bit)) & 1:
            digest = sha(tag + empty + digest).digest()
        else:
            digest = sha(tag + digest + empty).digest()
    return digest


def _fold_small(entries: list[tuple[int, bytes, int]], lo: int, hi: int, level: int) -> bytes:
    """The value at binary level `level` of the subtree holding `entries[lo:hi]` (two or more, by slot)."""
    first = entries[lo][0]
    split = 4 - (first ^ entries[hi - 1][0]).bit_length()  # the level whose halves part them
    mask = 8 >> split
    mid = lo + 1
    while not entries[mid][0] & mask:
        mid += 1
    if mid - lo == 1:
        left = _alone(first, entries[lo][1], entries[lo][2], split + 1)
    else:
        left = _fold_small(entries, lo, mid, split + 1)
    if hi - mid == 1:
        right = _alone(entries[mid][0], entries[mid][1], entries[mid][2], split + 1)
    else:
        right = _fold_small(entries, mid, hi, split + 1)
    sha, tag, empty = _sha256, NODE_PREFIX, _EMPTY
    digest = sha(tag + left + right).digest()
    for bit in range(split - 1, level - 1, -1):
        if (first >> (3 - bit)) & 1:
            digest = sha(tag + empty + digest).digest()
        else:
            digest = sha(tag + digest + empty).digest()
    return digest


def sparse_hash(raw: bytes, present: int, leaves: int) -> bytes:
    """A node's hash from its children alone, costing work per child rather than per slot (small nodes)."""
    entries: list[tuple[int, bytes, int]] = []
    off = 5
    bits = present
    while bits:
        top = bits.bit_length()
        bit = 1 << (top - 1)
        bits ^= bit
        entries.append((16 - top, raw[off + 8 : off + 40], leaves & bit))
        off += 72 if leaves & bit else 40
    if len(entries) != 2:
        if len(entries) == 1:
            return _alone(entries[0][0], entries[0][1], entries[0][2], 0)
        return _fold_small(entries, 0, len(entries), 0)
    # Two children, the commonest node at the bottom of the tree: one hash where they part, then up.
    (first, left, left_leaf), (second, right, right_leaf) = entries
    split = 4 - (first ^ second).bit_length()
    if not left_leaf:
        left = _alone(first, left, 0, split + 1)
    if not right_leaf:
        right = _alone(second, right, 0, split + 1)
    sha, tag, empty = _sha256, NODE_PREFIX, _EMPTY
    digest = sha(tag + left + right).digest()
    for bit in range(split - 1, -1, -1):
        if (first >> (3 - bit)) & 1:
            digest = sha(tag + empty + digest).digest()
        else:
            digest = sha(tag + digest + empty).digest()
    return digest


SLOT: Final = tuple(slice((p - 2) * 32, (p - 1) * 32) for p in range(16))
"""SLOT[p]: where heap position p (2..15) sits in a node's inner hashes. Position 1, the node's own hash, is
not kept: the parent holds it, and no update needs it as a sibling."""


def inner_of(vals: list[bytes]) -> bytes:
    """The inner hashes kept for a node (positions 2..15, 448 bytes: small enough for CPython's small-object
    allocator) from its full heap of values."""
    return b"".join(vals[2:16])


def _steps(nibble: int) -> tuple[tuple[int, int, int, int, int], ...]:
    steps = []
    position = 16 + nibble
    while position > 1:
        other = position ^ 1
        steps.append((other, position & 1, MASKS[position], MASKS[other], position >> 1))
        position >>= 1
    return tuple(steps)


STEPS: Final = tuple(_steps(nibble) for nibble in range(16))
"""Per child: the 4 steps from it up to the node, as (sibling, is right child, own mask, sibling mask, parent)."""


def _splices(nibble: int) -> tuple[slice, slice, slice, slice]:
    """The unchanged stretches of a node's inner hashes around the 3 kept positions on child `nibble`'s path."""
    p2, p3, p4 = 2 + (nibble >> 3), 4 + (nibble >> 2), 8 + (nibble >> 1)
    return (slice(0, (p2 - 2) * 32), slice((p2 - 1) * 32, (p3 - 2) * 32), slice((p3 - 1) * 32, (p4 - 2) * 32),
            slice((p4 - 1) * 32, None))


SPLICES: Final = tuple(_splices(nibble) for nibble in range(16))


def _full_path(nibble: int) -> tuple[slice, slice, slice, slice, slice, slice, slice]:
    pair, quarter, half = 8 + (nibble >> 1), 4 + (nibble >> 2), 2 + (nibble >> 3)
    return (SLOT[pair ^ 1], SLOT[quarter ^ 1], SLOT[half ^ 1], *_splices(nibble))


FULL_PATH: Final = tuple(_full_path(nibble) for nibble in range(16))


def _path_bits(nibble: int) -> tuple[int, int, int, int, int, int, int, int]:
    pair, quarter, half = 8 + (nibble >> 1), 4 + (nibble >> 2), 2 + (nibble >> 3)
    return (0x8000 >> nibble, 0x8000 >> (nibble ^ 1), MASKS[pair], MASKS[pair ^ 1], MASKS[quarter],
            MASKS[quarter ^ 1], MASKS[half], MASKS[half ^ 1])


PATH_BITS: Final = tuple(_path_bits(nibble) for nibble in range(16))
"""Per child: its bit, its sibling child's bit, then the child masks of the pair, quarter and half on its path
and of each one's sibling."""
"""Per child of a full node: where the pair's, quarter's and half's siblings sit in the inner hashes, then the
4 unchanged stretches around the pair's, quarter's and half's own values (SPLICES)."""


def path_value_one(
    raw: bytes, present: int, leaves: int, inner: bytes, new_present: int, new_leaves: int, nibble: int, off: int,
    size: int, digest: bytes,
) -> tuple[bytes, bytes]:
    """`path_values` for one changed child (the common case below the top levels): the node's new hash and its
    new inner hashes. `off` and `size` are where the child's record was in `raw` (size 0: absent)."""
    sha, tag, empty, slot = _sha256, NODE_PREFIX, _EMPTY, SLOT
    value = digest
    path: list[bytes] = []
    for other, right, mine_mask, other_mask, _ in STEPS[nibble]:
        if other >= 16:  # the sibling is a child: its record is right before or after this child's
            sibling_bit = 0x8000 >> (other - 16)
            if present & sibling_bit:
                at = off - (72 if leaves & sibling_bit else 40) if right else off + size
                sibling = raw[at + 8 : at + 40]
            else:
                sibling = empty
        else:
            sibling = inner[slot[other]]
        mine = new_present & mine_mask
        theirs = new_present & other_mask
        if mine:
            if theirs:
                value = sha(tag + sibling + value).digest() if right else sha(tag + value + sibling).digest()
            elif mine & (mine - 1) or not new_leaves & mine:
                value = sha(tag + empty + value).digest() if right else sha(tag + value + empty).digest()
        elif theirs:
            if theirs & (theirs - 1) or not new_leaves & theirs:
                value = sha(tag + sibling + empty).digest() if right else sha(tag + empty + sibling).digest()
            else:
                value = sibling
        else:
            value = empty
        path.append(value)
    a, b, c, d = SPLICES[nibble]
    return value, b"".join((inner[a], path[2], inner[b], path[1], inner[c], path[0], inner[d]))


def path_values(
    raw: bytes, present: int, leaves: int, inner: bytes, new_present: int, new_leaves: int, changed: dict[int, bytes]
) -> dict[int, bytes]:
    """The heap values that change when the children in `changed` (position 16+n -> new hash, EMPTY if
    removed) change in a node whose old bytes are `raw` and old inner values `inner` (positions 2..15, 32 bytes
    each): only the positions on the changed paths are re-derived. Returns them, `changed` included."""
    sha, tag, empty, masks = _sha256, NODE_PREFIX, _EMPTY, MASKS
    vals = changed
    level = sorted(changed)
    while level[0] > 1:
        parents: list[int] = []
        for position in level:
            parent = position >> 1
            if not parents or parents[-1] != parent:
                parents.append(parent)
        for parent in parents:
            left = parent + parent
            pair = []
            for position in (left, left + 1):
                value = vals.get(position)
                if value is None:
                    if position >= 16:
                        bit = 0x8000 >> (position - 16)
                        if present & bit:
                            off = child_offset(present, leaves, position - 16)
                            value = raw[off + 8 : off + 40]
                        else:
                            value = empty
                    else:
                        value = inner[(position - 2) * 32 : (position - 1) * 32]
                pair.append(value)
            ca = new_present & masks[left]
            cb = new_present & masks[left + 1]
            if ca:
                if cb:
                    value = sha(tag + pair[0] + pair[1]).digest()
                elif ca & (ca - 1) or not new_leaves & ca:
                    value = sha(tag + pair[0] + empty).digest()
                else:
                    value = pair[0]
            elif cb:
                if cb & (cb - 1) or not new_leaves & cb:
                    value = sha(tag + empty + pair[1]).digest()
                else:
                    value = pair[1]
            else:
                value = empty
            vals[parent] = value
        level = parents
    return vals
