"""The authenticated, versioned key-value map behind the state root.

Versions are block heights. Nodes are immutable and keyed by version, so every committed version stays
readable until pruned; an update reads and rewrites only the internal nodes on the paths of the keys it
touches (O(touched keys * log n)) and never reads a leaf. `compute_update` is pure; `stage` puts its writes
into the caller's batch, so a block and the state it causes commit atomically (docs/design.md §6).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, final

from core.errors import StorageError
from core.state.cache import MAX_DEPTH, Entry, NodeCache
from core.state.hashing import EMPTY_ROOT, LEAF_TAG, VALUE_TAG, key_path, value_hash
from core.state.inner import (
    DENSE,
    FULL_PATH,
    NODE_PREFIX,
    PATH_BITS,
    dense_values,
    inner_of,
    path_value_one,
    path_values,
    sparse_hash,
)
from core.state.nodes import (
    HEAD,
    INTERNAL,
    LEAF,
    Child,
    child_offset,
    child_prefix,
    decode_internal,
    decode_leaf,
    decode_node_bitmaps,
    encode_leaf,
    fold,
    leaf_key,
    nibble_at,
    node_key,
    version_bytes,
    version_of,
)
from core.state.proof import ProofLeaf, StateProof
from core.store import KeySpace, KVStore, PrefixedStore, WriteBatch
from core.types import U64_MAX, Hash32

_ROOTS: Final = b"r"
_LATEST: Final = b"latest"
_STAMP: Final = b"stamp"
# Root records an AuthenticatedMap keeps in memory (the most recent versions: the latest, and the few below it
# that validation, evidence and queries read).
_ROOTS_KEPT: Final = 16
_NO_ROOT: Final = object()
DEFAULT_CACHE_NODES: Final = 1 << 19
# Committed leaves an AuthenticatedMap keeps (their stored bytes: an account's is about 80 bytes), and the
# largest it keeps: so the cache stays under ~30 MiB whatever the records (an upload's is up to 32 KiB).
DEFAULT_CACHE_LEAVES: Final = 1 << 16
LEAF_CACHE_MAX_BYTES: Final = 256
_STALE_NODE: Final = b"\x00"
_STALE_LEAF: Final = b"\x01"
_PRUNE_CHUNK: Final = 50_000

_Item = tuple[bytes, bytes, bytes | None]  # (path, key, value or None for delete)
_Ref = tuple[bytes, bytes, bytes | None]  # (hash, version as 8 bytes, key path if a leaf else None)
_Change = tuple[int, int, int, "_Ref | None"]  # (nibble, old record offset, old record length, new record)
_EMPTY: Final = bytes(EMPTY_ROOT)


@dataclasses.dataclass(frozen=True, slots=True)
class StateUpdate:
    """A computed but unwritten state transition: the new root and the writes that realise it."""

    base_version: int | None
    version: int
    root: Hash32
    root_record: bytes
    node_writes: tuple[tuple[bytes, bytes], ...]
    leaf_writes: tuple[tuple[bytes, bytes], ...]
    stale: tuple[bytes, ...]
    """Stale-index suffixes (kind ‖ node or leaf key) of everything this version replaces."""
    cache_entries: tuple[tuple[int, dict[bytes, Entry]], ...] = dataclasses.field(
        default=(), compare=False, repr=False
    )
    """The new nodes as node-cache entries with their inner hashes, by depth: not written, only put in the
    cache of the map that staged the update once its batch is known to be written."""
    values: tuple[tuple[bytes, bytes, bytes | None], ...] = dataclasses.field(default=(), compare=False, repr=False)
    """The changes as (key path, key, value or None), for the value cache of the map that staged the update (likewise
    only once its batch is known to be written)."""


def _encode_root(root: _Ref | None) -> bytes:
    if root is None:
        return b"\x00"
    digest, version, path = root
    if path is None:
        return bytes((INTERNAL,)) + version + digest
    return bytes((LEAF,)) + version + digest + path


def _decode_root(data: bytes) -> Child | None:
    if data == b"\x00":
        return None
    if len(data) == 41 and data[0] == INTERNAL:
        return data[9:41], version_of(data[1:9]), None
    if len(data) == 73 and data[0] == LEAF:
        return data[9:41], version_of(data[1:9]), data[41:73]
    raise StorageError("corrupt state root record")


def _root_ref(data: bytes) -> _Ref | None:
    _decode_root(data)  # validates
    if data == b"\x00":
        return None
    return data[9:41], data[1:9], data[41:73] if data[0] == LEAF else None


class _Loader:
    """Reads stored records; a missing one means a pruned version or a damaged database."""

    __slots__ = ("_get", "_prefix")

    def __init__(self, store: KVStore, prefix: bytes) -> None:
        self._get = store.get
        self._prefix = prefix

    def __call__(self, key: bytes) -> bytes:
        data = self._get(self._prefix + key)
        if data is None:
            raise StorageError(f"state record {key.hex()} is missing (pruned version or damaged database)")
        return data


_DEPTH: Final = tuple(bytes((d,)) for d in range(65))
_HIGH: Final = tuple(bytes((b & 0xF0,)) for b in range(256))
_sha256 = hashlib.sha256
_VALUE_TAG = bytes((len(VALUE_TAG),)) + VALUE_TAG
_LEAF_TAG = bytes((len(LEAF_TAG),)) + LEAF_TAG


def _packed(path: bytes, depth: int) -> bytes:
    """The first `depth` nibbles of `path`, packed two to a byte (a node's position)."""
    half = depth >> 1
    if depth & 1:
        return path[:half] + _HIGH[path[half]]
    return path[:half]


def _step(path: bytes, depth: int) -> tuple[bytes, int]:
    """Where the walk down to `path` is at `depth`: the node's key (depth byte + packed position) and the
    nibble of `path` that picks its child there. The one rule both walks (`_Updater._descend`,
    `AuthenticatedMap.get`) follow."""
    half = depth >> 1
    byte = path[half]
    if depth & 1:
        return _DEPTH[depth] + path[:half] + _HIGH[byte], byte & 15
    return _DEPTH[depth] + path[:half], byte >> 4


# A node on the way down (see `_Updater._descend`).
_Frame = tuple[bytes, bytes, bytes, bytes | None, int, int, int, int, int]


def _level_value(digest: bytes, sibling: bytes, mine: int, theirs: int, leaves: int, right: int) -> bytes:
    """One level of a node's inner hash tree on the changed child's path (see nodes.path_values): the value
    of the subtree holding `digest` (its children `mine`) joined with its sibling subtree's kept value
    (children `theirs`), under the rules for empty and one-leaf subtrees; `right`: ours is the right half."""
    if mine and theirs:
        return _sha256(NODE_PREFIX + sibling + digest if right else NODE_PREFIX + digest + sibling).digest()
    if mine:
        if mine & (mine - 1) or not leaves & mine:
            return _sha256(NODE_PREFIX + _EMPTY + digest if right else NODE_PREFIX + digest + _EMPTY).digest()
        return digest  # a lone leaf moves up unchanged
    if theirs:
        if theirs & (theirs - 1) or not leaves & theirs:
            return _sha256(NODE_PREFIX + sibling + _EMPTY if right else NODE_PREFIX + _EMPTY + sibling).digest()
        return sibling
    return _EMPTY


@final
class _Updater:
    """One compute_update run: walks the old tree along the sorted changes and collects the new nodes.

    A child record is (hash, version as 8 bytes, key path if a leaf else None); records are sliced straight
    out of the parent's stored bytes, and an unchanged child is handed back as the same object.
    """

    __slots__ = (
        "cache", "cache_entries", "items", "leaf_writes", "load", "node_writes", "stale", "version",
    )

    def __init__(self, load: _Loader, cache: tuple[dict[bytes, Entry], ...], version: int,
                 items: list[_Item]) -> None:
        self.load = load
        self.cache = cache
        self.version = version_bytes(version)
        self.items = items
        self.node_writes: list[tuple[bytes, bytes]] = []
        self.cache_entries: list[dict[bytes, Entry]] = [{} for _ in range(MAX_DEPTH + 1)]
        """Per depth, position -> the new node there."""
        self.leaf_writes: list[tuple[bytes, bytes]] = []
        self.stale: list[bytes] = []

    def new_leaf(self, path: bytes, key: bytes, value: bytes, digest: bytes | None = None) -> _Ref:
        if digest is None:
            digest = _sha256(_LEAF_TAG + path + _sha256(_VALUE_TAG + value).digest()).digest()
        self.leaf_writes.append((self.version + path, encode_leaf(key, value)))
        return digest, self.version, path

    def update(self, ref: _Ref | None, depth: int, lo: int, hi: int) -> _Ref | None:
        """The new record of the subtree `ref` at `depth` with items[lo:hi] applied (`ref` itself if
        nothing changed)."""
        if hi - lo == 1:
            return self.single(ref, depth, lo)
        items = self.items
        if ref is None:
            return self.build(depth, [self.new_leaf(p, k, v) for p, k, v in items[lo:hi] if v is not None])
        if ref[2] is not None:
            return self._update_leaf(ref, ref[2], depth, lo, hi)
        position = _DEPTH[depth] + _packed(items[lo][0], depth)
        key = ref[1] + position
        entry = self.cache[depth].get(position)
        if entry is None or entry[0] != ref[1]:
            raw = self.load(key)
            inner = None
        else:
            raw, inner = entry[1], entry[2]
        present, leaves = decode_node_bitmaps(raw)
        changes: list[_Change] = []
        at = depth >> 1
        shift = 0 if depth & 1 else 4
        start = lo
        while start < hi:
            nibble = (items[start][0][at] >> shift) & 15
            end = start + 1
            while end < hi and (items[end][0][at] >> shift) & 15 == nibble:
                end += 1
            bit = 0x8000 >> nibble
            off = child_offset(present, leaves, nibble)
            old: _Ref | None
            if not present & bit:
                old, size = None, 0
            elif leaves & bit:
                old, size = (raw[off + 8 : off + 40], raw[off : off + 8], raw[off + 40 : off + 72]), 72
            else:
                old, size = (raw[off + 8 : off + 40], raw[off : off + 8], None), 40
            if end - start == 1 and size != 40:
                # One item where a leaf is or nothing is: `single` without its walk down and back up.
                path, item_key, value = items[start]
                changed, new = self._bottom(old, depth + 1, path, item_key, value)
                if not changed:
                    new = old
            else:
                new = self.update(old, depth + 1, start, end)
            if new is not old:
                changes.append((nibble, off, size, new))
            start = end
        if not changes:
            return ref
        return self._rewrite(key, raw, inner, present, leaves, changes)

    def single(self, ref: _Ref | None, depth: int, index: int) -> _Ref | None:
        """`update` for one item: walk down to where its path ends (`_descend`), put the new leaf, leaves or
        nothing there (`_bottom`), then rewrite the nodes on the way back up (`_ascend`).

        Nearly every node below the top three levels is rewritten here, so the steps are written out in full
        (`_rewrite` and `path_value_one` inlined): at a million keys each update spends most of its time here.
        """
        path, key, value = self.items[index]
        frames, found, depth = self._descend(ref, depth, path)
        changed, new = self._bottom(found, depth, path, key, value)
        return self._ascend(frames, new) if changed else ref

    def _descend(self, ref: _Ref | None, depth: int, path: bytes) -> tuple[list[_Frame], _Ref | None, int]:
        """The nodes on `path` from `ref` down to where it ends (an absent child or a leaf), with that leaf."""
        # Per node on the way down: version, position, bytes, inner hashes, bitmaps, the child's nibble and where
        # its record is (offset, length; 0: absent).
        frames: list[_Frame] = []
        if ref is not None and ref[2] is None:
            cache, load, unpack = self.cache, self.load, HEAD.unpack_from
            version = ref[1]
            while True:
                position, nibble = _step(path, depth)
                entry = cache[depth].get(position)
                if entry is not None and entry[0] == version:
                    raw, inner = entry[1], entry[2]  # validated when it was written
                    _, present, leaves = unpack(raw)
                else:
                    raw = load(version + position)
                    inner = None
                    present, leaves = decode_node_bitmaps(raw)
                bit = 0x8000 >> nibble
                shift = 16 - nibble
                off = 5 + 40 * (present >> shift).bit_count() + 32 * (leaves >> shift).bit_count()
                depth += 1
                if not present & bit:
                    frames.append((version, position, raw, inner, present, leaves, nibble, off, 0))
                    ref = None
                    break
                if leaves & bit:
                    frames.append((version, position, raw, inner, present, leaves, nibble, off, 72))
                    ref = raw[off + 8 : off + 40], raw[off : off + 8], raw[off + 40 : off + 72]
                    break
                frames.append((version, position, raw, inner, present, leaves, nibble, off, 40))
                version = raw[off : off + 8]  # an internal child: only its version is needed to find it
        return frames, ref, depth

    def _bottom(self, ref: _Ref | None, depth: int, path: bytes, key: bytes, value: bytes | None
                ) -> tuple[bool, _Ref | None]:
        """What replaces `ref` (where the descent ended): a new leaf, a new node holding two leaves, or nothing
        (a deletion); first whether the update changes anything at all."""
        new: _Ref | None
        if ref is None:
            if value is None:
                return False, None  # deleting an absent key
            new = self.new_leaf(path, key, value)
        elif (other := ref[2]) == path:
            if value is None:
                new = None
            else:
                digest = _sha256(_LEAF_TAG + path + _sha256(_VALUE_TAG + value).digest()).digest()
                if digest == ref[0]:
                    return False, None  # set to the value it already has
                new = self.new_leaf(path, key, value, digest)
            self.stale.append(_STALE_LEAF + ref[1] + path)
        elif value is None:
            return False, None  # deleting an absent key
        else:
            leaf = self.new_leaf(path, key, value)
            assert other is not None
            new = self.build(depth, [leaf, ref] if path < other else [ref, leaf])
        return True, new

    def _ascend(self, frames: list[_Frame], new: _Ref | None) -> _Ref | None:
        """Back up: each node on the path gets its one changed child, its new bytes and its new hash."""
        new_version = self.version
        stale, node_writes, cache_entries = self.stale, self.node_writes, self.cache_entries
        sha, tag, empty, join = _sha256, NODE_PREFIX, _EMPTY, b"".join
        for version, position, raw, inner, present, leaves, nibble, off, size in reversed(frames):
            stale.append(_STALE_NODE + version + position)
            bit = 0x8000 >> nibble
            if new is None:
                new_present = present & ~bit
                new_leaves = leaves & ~bit
                if not new_present & (new_present - 1) and (new_leaves or not new_present):
                    # A lone leaf moves up (leaves are keyed by path, so nothing is rewritten), or nothing is left.
                    if new_present:
                        at = child_offset(present, leaves, 16 - new_present.bit_length())
                        new = raw[at + 8 : at + 40], raw[at : at + 8], raw[at + 40 : at + 72]
                    continue
                new_raw = HEAD.pack(INTERNAL, new_present, new_leaves) + raw[5:off] + raw[off + size :]
                digest = _EMPTY
            else:
                digest = new[0]
                if new[2] is None:
                    if size == 40:  # an internal child replaced by another: the commonest case
                        new_present, new_leaves = present, leaves
                        new_raw = join((raw[:off], new[1], digest, raw[off + 40 :]))
                    else:
                        new_present = present | bit
                        new_leaves = leaves & ~bit
                        new_raw = (HEAD.pack(INTERNAL, new_present, new_leaves) + raw[5:off] + new[1] + digest
                                   + raw[off + size :])
                else:
                    new_present = present | bit
                    new_leaves = leaves | bit
                    if not new_present & (new_present - 1):
                        continue  # the new leaf is this node's only child: it moves up
                    if size == 72:
                        new_raw = join((raw[:off], new[1], digest, new[2], raw[off + 72 :]))
                    else:
                        new_raw = (HEAD.pack(INTERNAL, new_present, new_leaves) + raw[5:off] + new[1] + digest
                                   + new[2] + raw[off + size :])
            node_writes.append((new_version + position, new_raw))
            new_inner: bytes | None
            if new_present.bit_count() < DENSE:
                digest = sparse_hash(new_raw, new_present, new_leaves)
                new_inner = None
            elif inner is None:
                full = dense_values(new_raw, new_present, new_leaves)
                digest = full[1]
                new_inner = inner_of(full)
            elif new_present == present == 0xFFFF:
                # A full node: every subtree on the path is non-empty on both sides, so 4 plain hashes up
                # from the child: the pair's value, the quarter's, the half's (all kept), then the node's.
                sibling_pair, sibling_quarter, sibling_half, a, b, c, d = FULL_PATH[nibble]
                if nibble & 1:
                    at = off - (72 if leaves & (0x10000 >> nibble) else 40)
                    pair_value = sha(tag + raw[at + 8 : at + 40] + digest).digest()
                else:
                    pair_value = sha(tag + digest + raw[off + size + 8 : off + size + 40]).digest()
                sibling = inner[sibling_pair]
                quarter_value = sha(tag + sibling + pair_value if nibble & 2 else tag + pair_value + sibling).digest()
                sibling = inner[sibling_quarter]
                half_value = sha(tag + sibling + quarter_value if nibble & 4 else tag + quarter_value + sibling).digest()
                sibling = inner[sibling_half]
                digest = sha(tag + sibling + half_value if nibble & 8 else tag + half_value + sibling).digest()
                new_inner = join((inner[a], half_value, inner[b], quarter_value, inner[c], pair_value, inner[d]))
            else:
                # Only the 4 values on the changed child's path are re-derived (see nodes.path_values), each from
                # its sibling's value and the rules for empty and one-leaf subtrees (MASKS: the children below).
                (own, other_bit, pair_mask, pair_sibling_mask, quarter_mask, quarter_sibling_mask, half_mask,
                 half_sibling_mask) = PATH_BITS[nibble]
                sibling_pair, sibling_quarter, sibling_half, a, b, c, d = FULL_PATH[nibble]
                # The pair: this child and its sibling child, whose record is right before or after this one's.
                if present & other_bit:
                    if nibble & 1:
                        at = off - (72 if leaves & other_bit else 40)
                    else:
                        at = off + size
                    sibling = raw[at + 8 : at + 40]
                    if new_present & own:
                        digest = sha(tag + sibling + digest if nibble & 1 else tag + digest + sibling).digest()
                    elif not new_leaves & other_bit:
                        digest = sha(tag + sibling + empty if nibble & 1 else tag + empty + sibling).digest()
                    else:
                        digest = sibling
                elif new_present & own and not new_leaves & own:
                    digest = sha(tag + empty + digest if nibble & 1 else tag + digest + empty).digest()
                pair_value = digest
                # The quarter, the half and the node: the sibling's value is kept in the inner hashes.
                quarter_value = digest = _level_value(digest, inner[sibling_pair], new_present & pair_mask,
                                                  new_present & pair_sibling_mask, new_leaves, nibble & 2)
                half_value = digest = _level_value(digest, inner[sibling_quarter], new_present & quarter_mask,
                                                   new_present & quarter_sibling_mask, new_leaves, nibble & 4)
                digest = _level_value(digest, inner[sibling_half], new_present & half_mask,
                                      new_present & half_sibling_mask, new_leaves, nibble & 8)
                new_inner = join((inner[a], half_value, inner[b], quarter_value, inner[c], pair_value, inner[d]))
            cache_entries[position[0]][position] = new_version, new_raw, new_inner
            new = digest, new_version, None
        return new

    def _rewrite(self, key: bytes, raw: bytes, inner: bytes | None, present: int, leaves: int,
                 changes: list[_Change]) -> _Ref | None:
        """The node stored at `key` (bytes `raw`) with `changes` made to its children, written anew."""
        self.stale.append(_STALE_NODE + key)
        new_present, new_leaves = present, leaves
        for nibble, _, _, new in changes:
            bit = 0x8000 >> nibble
            if new is None:
                new_present &= ~bit
                new_leaves &= ~bit
            else:
                new_present |= bit
                if new[2] is None:
                    new_leaves &= ~bit
                else:
                    new_leaves |= bit
        if not new_present:
            return None
        if not new_present & (new_present - 1) and new_leaves:
            # A lone leaf moves up; leaves are keyed by path, so nothing is rewritten.
            nibble = 16 - new_present.bit_length()
            for child, _, _, new in changes:
                if child == nibble:
                    return new
            off = child_offset(present, leaves, nibble)
            return raw[off + 8 : off + 40], raw[off : off + 8], raw[off + 40 : off + 72]
        parts = [HEAD.pack(INTERNAL, new_present, new_leaves)]
        pos = 5
        for _, off, size, new in changes:
            parts.append(raw[pos:off])
            if new is not None:
                parts.append(new[1])
                parts.append(new[0])
                if new[2] is not None:
                    parts.append(new[2])
            pos = off + size
        parts.append(raw[pos:])
        new_raw = b"".join(parts)
        if new_present.bit_count() < DENSE:
            return self._write(key[8:], new_raw, sparse_hash(new_raw, new_present, new_leaves), None)
        if inner is not None and len(changes) == 1:
            nibble, _, _, new = changes[0]
            digest, new_inner = path_value_one(raw, present, leaves, inner, new_present, new_leaves, nibble, off,
                                               size, _EMPTY if new is None else new[0])
        elif inner is not None and len(changes) <= 3:
            changed = {16 + nibble: _EMPTY if new is None else new[0] for nibble, _, _, new in changes}
            vals = path_values(raw, present, leaves, inner, new_present, new_leaves, changed)
            buf = bytearray(inner)
            for position, value in vals.items():
                if 1 < position < 16:
                    buf[(position - 2) * 32 : (position - 1) * 32] = value
            digest, new_inner = vals[1], bytes(buf)
        else:
            full = dense_values(new_raw, new_present, new_leaves)
            digest, new_inner = full[1], inner_of(full)
        return self._write(key[8:], new_raw, digest, new_inner)

    def _update_leaf(self, ref: _Ref, path: bytes, depth: int, lo: int, hi: int) -> _Ref | None:
        entries: list[_Ref] = []
        touched = False
        items = self.items
        for i in range(lo, hi):
            item_path, key, value = items[i]
            if item_path == path:
                touched = True
                if value is not None:
                    digest = _sha256(_LEAF_TAG + path + _sha256(_VALUE_TAG + value).digest()).digest()
                    if digest == ref[0]:
                        entries.append(ref)  # set to the value it already has
                        continue
                    entries.append(self.new_leaf(path, key, value, digest))
                self.stale.append(_STALE_LEAF + ref[1] + path)
            elif value is not None:
                entries.append(self.new_leaf(item_path, key, value))
        if not touched:
            if not entries:
                return ref  # only deletions of absent keys
            entries.append(ref)
            entries.sort(key=_path_of)
        if len(entries) == 1:
            return entries[0]
        return self.build(depth, entries)

    def build(self, depth: int, leaves: list[_Ref]) -> _Ref | None:
        """A fresh subtree over `leaves` (sorted by key path)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            return leaves[0]
        at = depth >> 1
        shift = 0 if depth & 1 else 4
        present = leaf_bits = 0
        parts: list[bytes] = []
        start, count = 0, len(leaves)
        while start < count:
            nibble = (_path_of(leaves[start])[at] >> shift) & 15
            end = start + 1
            while end < count and (_path_of(leaves[end])[at] >> shift) & 15 == nibble:
                end += 1
            child = self.build(depth + 1, leaves[start:end])
            assert child is not None
            bit = 0x8000 >> nibble
            present |= bit
            parts.append(child[1])
            parts.append(child[0])
            if child[2] is not None:
                leaf_bits |= bit
                parts.append(child[2])
            start = end
        raw = HEAD.pack(INTERNAL, present, leaf_bits) + b"".join(parts)
        position = _DEPTH[depth] + _packed(_path_of(leaves[0]), depth)
        if present.bit_count() < DENSE:
            return self._write(position, raw, sparse_hash(raw, present, leaf_bits), None)
        vals = dense_values(raw, present, leaf_bits)
        return self._write(position, raw, vals[1], inner_of(vals))

    def _write(self, position: bytes, raw: bytes, digest: bytes, inner: bytes | None) -> _Ref:
        self.node_writes.append((self.version + position, raw))
        self.cache_entries[position[0]][position] = self.version, raw, inner
        return digest, self.version, None


def _path_of(child: _Ref) -> bytes:
    path = child[2]
    assert path is not None
    return path


_PATHS_KEPT: Final = 1 << 16
"""The most key paths `AuthenticatedMap.compute_update` keeps (about 10 MiB at this bound)."""


@final
class AuthenticatedMap:
    """Versioned key-value map with a Merkle root per version and proofs of inclusion and exclusion.

    It keeps its tables in the STATE_NODES, STATE_LEAVES, STATE_STALE and STATE_META spaces of `store` (the
    node's database, or a view of it for a separate map).

    `cache_nodes` bounds the cache of committed nodes (0 turns it off; see NodeCache for the memory). A map fills it with the nodes of
    the updates it stages once it sees their batch written; it is what keeps an update's cost per key nearly
    flat as the state grows (docs/state.md).
    """

    __slots__ = (
        "_cache", "_head", "_latest_key", "_leaf_cache", "_leaves", "_load_leaf", "_load_node", "_lock",
        "_max_leaves", "_nodes", "_paths", "_pending", "_pruned_below", "_root_prefix", "_roots", "_stale",
        "_stamp_key", "_store", "_values",
    )

    def __init__(self, store: KVStore, *, cache_nodes: int = DEFAULT_CACHE_NODES,
                 cache_leaves: int = DEFAULT_CACHE_LEAVES) -> None:
        self._nodes = PrefixedStore(store, KeySpace.STATE_NODES).prefix
        self._leaves = PrefixedStore(store, KeySpace.STATE_LEAVES).prefix
        self._stale = PrefixedStore(store, KeySpace.STATE_STALE).prefix
        meta = PrefixedStore(store, KeySpace.STATE_META)
        self._store = meta.root
        self._root_prefix = meta.prefix + _ROOTS
        self._latest_key = meta.prefix + _LATEST
        self._stamp_key = meta.prefix + _STAMP
        self._load_node = _Loader(self._store, self._nodes)
        self._load_leaf = _Loader(self._store, self._leaves)
        self._cache = NodeCache(cache_nodes)
        self._pending: tuple[StateUpdate, bytes] | None = None
        # What this map knows of the committed versions, so that a read costs no LevelDB get for them: the
        # latest version (None: not read yet; (None,) : the store holds no state), and the root records of
        # recent versions. Both are learned from the store or from a staged update whose batch is seen
        # written (`_settle`), never from a staged one; a version's root record never changes once written
        # (versions only grow), and `prune` takes out the ones it deletes. So they assume this map is the
        # only writer of its store's state tables (the node's application holds the one map).
        self._head: tuple[int | None] | None = None
        self._roots: dict[int, _Ref | None] = {}
        self._pruned_below = 0
        # Committed leaves by leaf key (version ‖ key path) -> stored bytes, as the node cache keeps nodes: a
        # committed leaf key names the same bytes forever, only written leaves (read from the database, or
        # from an update seen written) go in, and prune takes out the ones it deletes. Oldest out first.
        self._leaf_cache: dict[bytes, bytes] = {}
        self._max_leaves = max(0, cache_leaves)
        # Values by key as of the latest version this map knows (`_head`): key -> (since, value or None for
        # absent), the value the key has held at every version from `since` through the head. A read at such a
        # version needs no walk down the tree (the mempool reads every pending sender after each commit, a
        # block's execution its senders and recipients). Entries come from the updates seen written (their
        # changes, before the head moves) and from reads at the head (under the lock, at the head only: an
        # update written since has put its own entry first); bounded by `cache_leaves` as the leaf cache is.
        self._values: dict[bytes, tuple[int, bytes | None]] = {}
        # Key paths (SHA-256 of the key) of the keys updated lately: a block writes mostly the keys blocks
        # before it wrote (its senders, the sink, the chain records), and a dict lookup costs a fraction of a
        # hash. A pure function of the key, so never stale; emptied when full.
        self._paths: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def _node(self, key: bytes) -> bytes:
        entry = self._cache.get(key[8], key[8:], key[:8])
        return self._load_node(key) if entry is None else entry[1]

    # ------------------------------------------------------------------------------------------ versions

    def latest_version(self) -> int | None:
        """The latest committed version (None: no state yet). Known from the last commit this map saw: a
        LevelDB get only the first time, and once after each staged update (its batch's stamp)."""
        if self._pending is not None:
            self._settle()
        head = self._head
        if head is None:
            latest = self._stored_latest()
            with self._lock:
                if self._pending is None and self._head is None:
                    self._head = (latest,)
            return latest
        return head[0]

    def _stored_latest(self) -> int | None:
        # A record of its own rather than a reverse seek over the roots: a seek next to a freshly pruned
        # range crawls through tombstones until LevelDB compacts them.
        data = self._store.get(self._latest_key)
        return None if data is None else version_of(data)

    def has_version(self, version: int) -> bool:
        try:
            self._root_ref(version)
        except StorageError:
            return False
        return True

    def _root_child(self, version: int) -> Child | None:
        ref = self._root_ref(version)
        return None if ref is None else (ref[0], version_of(ref[1]), ref[2])

    def root(self, version: int) -> Hash32:
        child = self._root_child(version)
        root: Hash32 = EMPTY_ROOT if child is None else Hash32(child[0])
        return root

    # ------------------------------------------------------------------------------------------ reads

    def get(self, key: bytes, version: int) -> bytes | None:
        """The value of `key` at `version` (None: absent). Walks down as `_Updater._descend` does: positions
        from the key path, child versions kept as their stored 8 bytes, the node cache read in place."""
        if self._pending is not None:
            self._settle()  # the nodes of a batch written since: from the cache, not LevelDB
        entry = self._values.get(key)
        if entry is not None and entry[0] <= version and version in self._roots:
            # (A version whose root record the map holds: committed, not pruned.)
            head = self._head
            if head is not None and head[0] is not None and version <= head[0]:
                return entry[1]
        value = self._walk_get(key, version)
        if self._max_leaves and (value is None or len(value) <= LEAF_CACHE_MAX_BYTES):
            with self._lock:
                if self._head == (version,):
                    self._keep_values(((key, (version, value)),))
        return value

    def _walk_get(self, key: bytes, version: int) -> bytes | None:
        path = _sha256(key).digest()  # = key_path(key)
        ref = self._root_ref(version)
        if ref is None:
            return None
        _, child_version, leaf_path = ref
        levels, load, unpack = self._cache.levels, self._load_node, HEAD.unpack_from
        depth = 0
        while leaf_path is None:
            position, nibble = _step(path, depth)
            entry = levels[depth].get(position)
            if entry is not None and entry[0] == child_version:
                raw = entry[1]  # validated when it was written
                _, present, leaves = unpack(raw)
            else:
                raw = load(child_version + position)
                present, leaves = decode_node_bitmaps(raw)
            bit = 0x8000 >> nibble
            if not present & bit:
                return None
            shift = 16 - nibble
            off = 5 + 40 * (present >> shift).bit_count() + 32 * (leaves >> shift).bit_count()
            child_version = raw[off : off + 8]
            if leaves & bit:
                leaf_path = raw[off + 40 : off + 72]
            depth += 1
        if leaf_path != path:
            return None
        key = child_version + path
        data = self._leaf_cache.get(key)
        if data is None:
            data = self._load_leaf(key)
            if self._max_leaves and len(data) <= LEAF_CACHE_MAX_BYTES:
                with self._lock:
                    self._keep_leaves(((key, data),))
        return decode_leaf(data)[1]

    def _keep_values(self, values: Iterable[tuple[bytes, tuple[int, bytes | None]]]) -> None:
        """Put values current at the head in the value cache (under the lock), most recent last; then evict
        the oldest down to the bound."""
        cache = self._values
        for key, entry in values:
            cache.pop(key, None)
            cache[key] = entry
        if len(cache) > self._max_leaves:
            excess = len(cache) - self._max_leaves + self._max_leaves // 32  # seldom
            for key in list(itertools.islice(cache, excess)):
                del cache[key]

    def _keep_leaves(self, leaves: Iterable[tuple[bytes, bytes]]) -> None:
        """Put committed leaves in the leaf cache (under the lock), then evict the oldest down to the bound."""
        cache = self._leaf_cache
        cache.update(leaves)
        if len(cache) > self._max_leaves:
            excess = len(cache) - self._max_leaves + self._max_leaves // 32  # seldom
            for key in list(itertools.islice(cache, excess)):
                del cache[key]

    def items(self, version: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in key-path order (for state export and audits)."""
        return self._walk(self._root_child(version), 0, b"")

    def _walk(self, ref: Child | None, depth: int, packed: bytes) -> Iterator[tuple[bytes, bytes]]:
        if ref is None:
            return
        if ref[2] is not None:
            yield decode_leaf(self._load_leaf(leaf_key(ref[1], ref[2])))
            return
        for nibble, child in decode_internal(self._node(node_key(ref[1], depth, packed))).items():
            yield from self._walk(child, depth + 1, child_prefix(packed, depth, nibble))

    def prove(self, key: bytes, version: int) -> StateProof:
        path = key_path(key)
        siblings: list[Hash32] = []
        ref = self._root_child(version)
        depth, packed = 0, b""
        while ref is not None:
            if ref[2] is not None:
                return self._leaf_proof(ref, siblings)
            children = decode_internal(self._node(node_key(ref[1], depth, packed)))
            entries = [(n, child[0], child[2] is not None) for n, child in sorted(children.items())]
            nibble = nibble_at(path, depth)
            for level in range(4):
                mask = 8 >> level
                mine = [e for e in entries if (e[0] & mask) == (nibble & mask)]
                other = [e for e in entries if (e[0] & mask) != (nibble & mask)]
                siblings.append(Hash32(fold(other, level + 1)))
                entries = mine
                if not mine:
                    return StateProof(leaf=None, siblings=tuple(siblings))
                if len(mine) == 1 and mine[0][2]:
                    return self._leaf_proof(children[mine[0][0]], siblings)
            ref = children[nibble]
            packed = child_prefix(packed, depth, nibble)
            depth += 1
        return StateProof(leaf=None, siblings=tuple(siblings))

    def _leaf_proof(self, ref: Child, siblings: list[Hash32]) -> StateProof:
        path = ref[2]
        assert path is not None
        _, value = decode_leaf(self._load_leaf(leaf_key(ref[1], path)))
        leaf = ProofLeaf(path=Hash32(path), value_hash=Hash32(value_hash(value)))
        return StateProof(leaf=leaf, siblings=tuple(siblings))

    # ------------------------------------------------------------------------------------------ writes

    def compute_update(
        self, base_version: int | None, new_version: int, changes: Mapping[bytes, bytes | None]
    ) -> StateUpdate:
        """The state at `new_version` = state at `base_version` (None: empty) with `changes` applied
        (value None deletes). Reads nodes, writes nothing; the order of `changes` does not matter."""
        if isinstance(new_version, bool) or not isinstance(new_version, int) or not 0 <= new_version <= U64_MAX:
            raise ValueError(f"version out of range: {new_version!r}")
        if base_version is not None and new_version <= base_version:
            raise ValueError(f"new version {new_version} must be above the base version {base_version}")
        self._settle()
        base = None if base_version is None else self._root_ref(base_version)
        items: list[_Item] = []
        append, sha, paths = items.append, _sha256, self._paths
        if len(paths) + len(changes) > _PATHS_KEPT:
            paths.clear()  # seldom: a node's active keys fit
            if len(changes) > _PATHS_KEPT:
                paths = {}  # a bulk update (genesis, an import): its paths are not kept
        for key, value in changes.items():
            if type(key) is bytes and (value is None or type(value) is bytes):
                path = paths.get(key)
                if path is None:
                    path = paths[key] = sha(key).digest()  # = key_path(key)
                append((path, key, value))  # plain bytes need no copy
                continue
            if not isinstance(key, bytes) or not (value is None or isinstance(value, bytes)):
                raise TypeError("state keys and values must be bytes (value None deletes)")
            append((key_path(key), bytes(key), None if value is None else bytes(value)))
        items.sort()
        updater = _Updater(self._load_node, self._cache.levels, new_version, items)
        root = updater.update(base, 0, 0, len(items)) if items else base
        return StateUpdate(
            base_version=base_version,
            version=new_version,
            root=EMPTY_ROOT if root is None else Hash32(root[0]),
            root_record=_encode_root(root),
            node_writes=tuple(updater.node_writes),
            leaf_writes=tuple(updater.leaf_writes),
            stale=tuple(updater.stale),
            cache_entries=tuple((depth, nodes) for depth, nodes in enumerate(updater.cache_entries) if nodes),
            values=tuple(items),
        )

    def _root_ref(self, version: int) -> _Ref | None:
        roots = self._roots
        ref = roots.get(version, _NO_ROOT)
        if ref is not _NO_ROOT:
            return ref  # type: ignore[return-value]
        data = self._store.get(self._root_prefix + version_bytes(version))
        if data is None:
            raise StorageError(f"no state at version {version} (never committed, or pruned)")
        ref = _root_ref(data)
        with self._lock:
            self._remember_root(version, ref)
        return ref

    def _remember_root(self, version: int, ref: _Ref | None) -> None:
        """Keep `version`'s committed root record (under the lock), the most recent `_ROOTS_KEPT` versions."""
        if version < self._pruned_below:
            return  # read before a prune that has deleted it since
        roots = self._roots
        roots[version] = ref
        if len(roots) > _ROOTS_KEPT:
            del roots[min(roots)]

    def stage(self, batch: WriteBatch, update: StateUpdate) -> None:
        """Put `update`'s writes into `batch`, a batch opened on the root database (not on a view).

        The update must extend the latest committed version: one state version per batch.
        """
        latest = self.latest_version()
        if update.base_version != latest:
            raise ValueError(f"update is based on version {update.base_version}, latest is {latest}")
        put = batch.put
        prefix = self._nodes
        for key, data in update.node_writes:
            put(prefix + key, data)
        prefix = self._leaves
        for key, data in update.leaf_writes:
            put(prefix + key, data)
        prefix = self._stale + version_bytes(update.version)
        for entry in update.stale:
            put(prefix + entry, b"")
        put(self._root_prefix + version_bytes(update.version), update.root_record)
        put(self._latest_key, version_bytes(update.version))
        # A fresh stamp in the same batch tells later calls whether this batch was the one written, so that
        # only committed nodes ever enter the cache (a staged batch can be dropped, and another update be
        # written at the same version).
        stamp = os.urandom(16)
        put(self._stamp_key, stamp)
        with self._lock:
            self._pending = (update, stamp)

    def _settle(self) -> None:
        """Admit the last staged update's nodes to the cache, and its version as the latest, if its batch has
        been written (one LevelDB get while it is not known). Under the lock: the node reads from its event
        loop while a worker thread stages and commits."""
        if self._pending is None:
            return
        with self._lock:
            pending = self._pending
            if pending is None:
                return
            update, stamp = pending
            if self._store.get(self._stamp_key) == stamp:
                if self._max_leaves:
                    # Before the head moves: a read at the new version must not find a value it replaced.
                    version = update.version
                    values = self._values
                    for _, key, value in update.values:
                        if value is None or len(value) <= LEAF_CACHE_MAX_BYTES:
                            values.pop(key, None)
                            values[key] = (version, value)
                        else:
                            values.pop(key, None)
                    self._keep_values(())
                self._remember_root(update.version, _root_ref(update.root_record))
                self._head = (update.version,)
                self._pending = None
                self._cache.admit(update.cache_entries)
                if self._max_leaves:
                    self._keep_leaves((k, d) for k, d in update.leaf_writes if len(d) <= LEAF_CACHE_MAX_BYTES)
            else:
                latest = self._stored_latest()
                if latest is not None and latest >= update.version:
                    # Another batch was written instead (another map's): learn everything from the store again.
                    self._values.clear()
                    self._head = None
                    self._roots.clear()
                    self._pending = None

    def commit(self, version: int, changes: Mapping[bytes, bytes | None]) -> Hash32:
        """Compute, stage and write one version on top of the latest (for tests, tools and benches)."""
        update = self.compute_update(self.latest_version(), version, changes)
        with self._store.write_batch() as batch:
            self.stage(batch, update)
        self._settle()
        return update.root

    def prune(self, below_version: int) -> int:
        """Delete every node and leaf that no version >= `below_version` can reach, and the older roots.

        The latest version is always kept. Returns the number of nodes and leaves deleted.
        """
        latest = self.latest_version()
        if latest is None:
            return 0
        below = min(below_version, latest)
        store = self._store
        cut = len(self._root_prefix)
        with self._lock:
            self._pruned_below = max(self._pruned_below, below)
        with store.write_batch() as batch:
            for key, _ in store.iterate(self._root_prefix):
                if version_of(key[cut:]) >= below:
                    break
                batch.delete(key)
        with self._lock:
            for version in [v for v in self._roots if v < below]:
                del self._roots[version]
        # A record replaced at version v serves versions before v only, so it goes once v <= below.
        removed = 0
        cut = len(self._stale)
        pending: list[bytes] = []
        for key, _ in store.iterate(self._stale):
            if version_of(key[cut:]) > below:
                break
            pending.append(key)
            if len(pending) >= _PRUNE_CHUNK:
                removed += self._delete_stale(pending, cut)
                pending = []
        if pending:
            removed += self._delete_stale(pending, cut)
        return removed

    def _delete_stale(self, entries: list[bytes], cut: int) -> int:
        with self._store.write_batch() as batch:
            for entry in entries:
                kind = entry[cut + 8 : cut + 9]
                prefix = self._leaves if kind == _STALE_LEAF else self._nodes
                batch.delete(prefix + entry[cut + 9 :])
                batch.delete(entry)
        self._cache.drop(
            (entry[cut + 17], entry[cut + 17 :], entry[cut + 9 : cut + 17])
            for entry in entries
            if entry[cut + 8 : cut + 9] == _STALE_NODE
        )
        with self._lock:
            cache = self._leaf_cache
            for entry in entries:
                if entry[cut + 8 : cut + 9] == _STALE_LEAF:
                    cache.pop(entry[cut + 9 :], None)
        return len(entries)
