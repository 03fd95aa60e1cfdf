"""The authenticated, versioned key-value map behind the state root.

Versions are block heights. Nodes are immutable and keyed by version, so every committed version stays
readable until pruned; an update reads and rewrites only the internal nodes on the paths of the keys it
touches (O(touched keys * log n)) and never reads a leaf. `compute_update` is pure; `stage` puts its writes
into the caller's batch, so a block and the state it causes commit atomically (DESIGN §6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Final, final

from core.errors import StorageError
from core.state.hashing import EMPTY_ROOT, key_path, leaf_hash, value_hash
from core.state.nodes import (
    INTERNAL,
    LEAF,
    Child,
    child_prefix,
    decode_internal,
    decode_leaf,
    encode_internal,
    encode_leaf,
    fold,
    internal_hash,
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
_STALE_NODE: Final = b"\x00"
_STALE_LEAF: Final = b"\x01"
_PRUNE_CHUNK: Final = 50_000

_Item = tuple[bytes, bytes, bytes | None]  # (path, key, value or None for delete)


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


def _encode_root(root: Child | None) -> bytes:
    if root is None:
        return b"\x00"
    digest, version, path = root
    if path is None:
        return bytes((INTERNAL,)) + version_bytes(version) + digest
    return bytes((LEAF,)) + version_bytes(version) + digest + path


def _decode_root(data: bytes) -> Child | None:
    if data == b"\x00":
        return None
    if len(data) == 41 and data[0] == INTERNAL:
        return data[9:41], version_of(data[1:9]), None
    if len(data) == 73 and data[0] == LEAF:
        return data[9:41], version_of(data[1:9]), data[41:73]
    raise StorageError("corrupt state root record")


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


@final
class _Updater:
    """One compute_update run: walks the old tree along the sorted changes and collects the new nodes."""

    __slots__ = ("leaf_writes", "load", "node_writes", "stale", "version")

    def __init__(self, load: _Loader, version: int) -> None:
        self.load = load
        self.version = version
        self.node_writes: list[tuple[bytes, bytes]] = []
        self.leaf_writes: list[tuple[bytes, bytes]] = []
        self.stale: list[bytes] = []

    def new_leaf(self, path: bytes, key: bytes, value: bytes, digest: bytes | None = None) -> Child:
        if digest is None:
            digest = leaf_hash(path, value_hash(value))
        self.leaf_writes.append((leaf_key(self.version, path), encode_leaf(key, value)))
        return digest, self.version, path

    def update(self, ref: Child | None, depth: int, packed: bytes, items: list[_Item]) -> Child | None:
        if ref is None:
            return self.build(depth, packed, [self.new_leaf(p, k, v) for p, k, v in items if v is not None])
        if ref[2] is not None:
            return self._update_leaf(ref, ref[2], depth, packed, items)
        key = node_key(ref[1], depth, packed)
        children = decode_internal(self.load(key))
        new_children = dict(children)
        changed = False
        start, count = 0, len(items)
        while start < count:
            nibble = nibble_at(items[start][0], depth)
            end = start + 1
            while end < count and nibble_at(items[end][0], depth) == nibble:
                end += 1
            old = children.get(nibble)
            new = self.update(old, depth + 1, child_prefix(packed, depth, nibble), items[start:end])
            if new is not old:
                changed = True
                if new is None:
                    del new_children[nibble]
                else:
                    new_children[nibble] = new
            start = end
        if not changed:
            return ref
        self.stale.append(_STALE_NODE + key)
        if not new_children:
            return None
        if len(new_children) == 1:
            (only,) = new_children.values()
            if only[2] is not None:
                return only  # a lone leaf moves up; leaves are keyed by path, so nothing is rewritten
        return self.write_internal(depth, packed, new_children)

    def _update_leaf(self, ref: Child, path: bytes, depth: int, packed: bytes, items: list[_Item]) -> Child | None:
        entries: list[Child] = []
        touched = False
        for item_path, key, value in items:
            if item_path == path:
                touched = True
                if value is not None:
                    digest = leaf_hash(path, value_hash(value))
                    if digest == ref[0]:
                        entries.append(ref)  # set to the value it already has
                        continue
                    entries.append(self.new_leaf(path, key, value, digest))
                self.stale.append(_STALE_LEAF + leaf_key(ref[1], path))
            elif value is not None:
                entries.append(self.new_leaf(item_path, key, value))
        if not touched:
            if not entries:
                return ref  # only deletions of absent keys
            entries.append(ref)
            entries.sort(key=_path_of)
        if len(entries) == 1:
            return entries[0]
        return self.build(depth, packed, entries)

    def build(self, depth: int, packed: bytes, leaves: list[Child]) -> Child | None:
        """A fresh subtree over `leaves` (sorted by key path)."""
        if not leaves:
            return None
        if len(leaves) == 1:
            return leaves[0]
        children: dict[int, Child] = {}
        start, count = 0, len(leaves)
        while start < count:
            nibble = nibble_at(_path_of(leaves[start]), depth)
            end = start + 1
            while end < count and nibble_at(_path_of(leaves[end]), depth) == nibble:
                end += 1
            child = self.build(depth + 1, child_prefix(packed, depth, nibble), leaves[start:end])
            assert child is not None
            children[nibble] = child
            start = end
        return self.write_internal(depth, packed, children)

    def write_internal(self, depth: int, packed: bytes, children: dict[int, Child]) -> Child:
        self.node_writes.append((node_key(self.version, depth, packed), encode_internal(children)))
        return internal_hash(children), self.version, None


def _path_of(child: Child) -> bytes:
    path = child[2]
    assert path is not None
    return path


@final
class AuthenticatedMap:
    """Versioned key-value map with a Merkle root per version and proofs of inclusion and exclusion.

    It keeps its tables in the STATE_NODES, STATE_LEAVES, STATE_STALE and STATE_META spaces of `store` (the
    node's database, or a view of it for a separate map).
    """

    __slots__ = ("_latest_key", "_leaves", "_load_leaf", "_load_node", "_nodes", "_root_prefix", "_stale", "_store")

    def __init__(self, store: KVStore) -> None:
        self._nodes = PrefixedStore(store, KeySpace.STATE_NODES).prefix
        self._leaves = PrefixedStore(store, KeySpace.STATE_LEAVES).prefix
        self._stale = PrefixedStore(store, KeySpace.STATE_STALE).prefix
        meta = PrefixedStore(store, KeySpace.STATE_META)
        self._store = meta.root
        self._root_prefix = meta.prefix + _ROOTS
        self._latest_key = meta.prefix + _LATEST
        self._load_node = _Loader(self._store, self._nodes)
        self._load_leaf = _Loader(self._store, self._leaves)

    # ------------------------------------------------------------------------------------------ versions

    def latest_version(self) -> int | None:
        # A record of its own rather than a reverse seek over the roots: a seek next to a freshly pruned
        # range crawls through tombstones until LevelDB compacts them.
        data = self._store.get(self._latest_key)
        return None if data is None else version_of(data)

    def has_version(self, version: int) -> bool:
        return self._store.get(self._root_prefix + version_bytes(version)) is not None

    def _root_child(self, version: int) -> Child | None:
        data = self._store.get(self._root_prefix + version_bytes(version))
        if data is None:
            raise StorageError(f"no state at version {version} (never committed, or pruned)")
        return _decode_root(data)

    def root(self, version: int) -> Hash32:
        child = self._root_child(version)
        root: Hash32 = EMPTY_ROOT if child is None else Hash32(child[0])
        return root

    # ------------------------------------------------------------------------------------------ reads

    def get(self, key: bytes, version: int) -> bytes | None:
        path = key_path(key)
        ref = self._root_child(version)
        depth, packed = 0, b""
        while ref is not None:
            if ref[2] is not None:
                if ref[2] != path:
                    return None
                return decode_leaf(self._load_leaf(leaf_key(ref[1], path)))[1]
            nibble = nibble_at(path, depth)
            ref = decode_internal(self._load_node(node_key(ref[1], depth, packed))).get(nibble)
            packed = child_prefix(packed, depth, nibble)
            depth += 1
        return None

    def items(self, version: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in key-path order (for state export and audits)."""
        return self._walk(self._root_child(version), 0, b"")

    def _walk(self, ref: Child | None, depth: int, packed: bytes) -> Iterator[tuple[bytes, bytes]]:
        if ref is None:
            return
        if ref[2] is not None:
            yield decode_leaf(self._load_leaf(leaf_key(ref[1], ref[2])))
            return
        for nibble, child in decode_internal(self._load_node(node_key(ref[1], depth, packed))).items():
            yield from self._walk(child, depth + 1, child_prefix(packed, depth, nibble))

    def prove(self, key: bytes, version: int) -> StateProof:
        path = key_path(key)
        siblings: list[Hash32] = []
        ref = self._root_child(version)
        depth, packed = 0, b""
        while ref is not None:
            if ref[2] is not None:
                return self._leaf_proof(ref, siblings)
            children = decode_internal(self._load_node(node_key(ref[1], depth, packed)))
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
        path = _path_of(ref)
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
        base = None if base_version is None else self._root_child(base_version)
        items: list[_Item] = []
        for key, value in changes.items():
            if not isinstance(key, bytes) or not (value is None or isinstance(value, bytes)):
                raise TypeError("state keys and values must be bytes (value None deletes)")
            items.append((key_path(key), bytes(key), None if value is None else bytes(value)))
        items.sort()
        updater = _Updater(self._load_node, new_version)
        root = updater.update(base, 0, b"", items) if items else base
        return StateUpdate(
            base_version=base_version,
            version=new_version,
            root=EMPTY_ROOT if root is None else Hash32(root[0]),
            root_record=_encode_root(root),
            node_writes=tuple(updater.node_writes),
            leaf_writes=tuple(updater.leaf_writes),
            stale=tuple(updater.stale),
        )

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

    def commit(self, version: int, changes: Mapping[bytes, bytes | None]) -> Hash32:
        """Compute, stage and write one version on top of the latest (for tests, tools and benches)."""
        update = self.compute_update(self.latest_version(), version, changes)
        with self._store.write_batch() as batch:
            self.stage(batch, update)
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
        with store.write_batch() as batch:
            for key, _ in store.iterate(self._root_prefix):
                if version_of(key[cut:]) >= below:
                    break
                batch.delete(key)
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
        return len(entries)
