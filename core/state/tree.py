"""The authenticated, versioned key-value map behind the state root.

Versions are block heights. Nodes are immutable and keyed by (version, position), so every committed
version stays readable until pruned; an update reads and rewrites only the nodes on the paths of the keys
it touches (O(touched keys * log n)). `compute_update` is pure; `stage` puts its writes into the caller's
batch, so a block and the state it causes commit atomically (DESIGN §6).
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
_PRUNE_CHUNK: Final = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class StateUpdate:
    """A computed but unwritten state transition: the new root and the node writes that realise it."""

    base_version: int | None
    version: int
    root: Hash32
    root_record: bytes
    node_writes: tuple[tuple[bytes, bytes], ...]
    stale_nodes: tuple[bytes, ...]


@final
class _NewLeaf:
    """An entry whose leaf node is not placed yet: the parent that settles its position writes it."""

    __slots__ = ("digest", "key", "path", "value")

    def __init__(self, path: bytes, key: bytes, value: bytes, digest: bytes) -> None:
        self.path = path
        self.key = key
        self.value = value
        self.digest = digest


_Item = tuple[bytes, bytes, bytes | None]  # (path, key, value or None for delete)
_Result = Child | _NewLeaf | None


def _encode_root(root: Child | None) -> bytes:
    if root is None:
        return b"\x00"
    digest, version, is_leaf = root
    return bytes((LEAF if is_leaf else INTERNAL,)) + version_bytes(version) + digest


def _decode_root(data: bytes) -> Child | None:
    if data == b"\x00":
        return None
    if len(data) != 41 or data[0] not in (LEAF, INTERNAL):
        raise StorageError("corrupt state root record")
    return data[9:41], version_of(data[1:9]), data[0] == LEAF


@final
class _Updater:
    """One compute_update run: walks the old tree along the sorted changes and collects the new nodes."""

    __slots__ = ("load", "stale", "version", "writes")

    def __init__(self, load: _Loader, version: int) -> None:
        self.load = load
        self.version = version
        self.writes: list[tuple[bytes, bytes]] = []
        self.stale: list[bytes] = []

    def update(self, ref: Child | None, depth: int, packed: bytes, items: list[_Item]) -> _Result:
        if ref is None:
            return self.build(depth, packed, [item for item in items if item[2] is not None])
        key = node_key(ref[1], depth, packed)
        if ref[2]:
            return self._update_leaf(ref, key, depth, packed, items)
        children = decode_internal(self.load(key))
        new_children: dict[int, Child | _NewLeaf] = dict(children)
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
        self.stale.append(key)
        return self.settle(depth, packed, new_children)

    def _update_leaf(self, ref: Child, key: bytes, depth: int, packed: bytes, items: list[_Item]) -> _Result:
        path, leaf_key, value = decode_leaf(self.load(key))
        final_items: list[_Item] = []
        touched = False
        for item in items:
            if item[0] == path:
                touched = True
            if item[2] is not None:
                final_items.append(item)
        if not touched:
            if not final_items:
                return ref  # only deletions of absent keys
            final_items.append((path, leaf_key, value))
            final_items.sort()
        elif len(final_items) == 1 and final_items[0][0] == path and final_items[0][2] == value:
            return ref  # set to the value it already has
        self.stale.append(key)
        return self.build(depth, packed, final_items)

    def build(self, depth: int, packed: bytes, items: list[_Item]) -> _Result:
        """A fresh subtree holding `items` (sorted, no deletions)."""
        if not items:
            return None
        if len(items) == 1:
            path, key, value = items[0]
            assert value is not None
            return _NewLeaf(path, key, value, leaf_hash(path, value_hash(value)))
        children: dict[int, Child | _NewLeaf] = {}
        start, count = 0, len(items)
        while start < count:
            nibble = nibble_at(items[start][0], depth)
            end = start + 1
            while end < count and nibble_at(items[end][0], depth) == nibble:
                end += 1
            child = self.build(depth + 1, child_prefix(packed, depth, nibble), items[start:end])
            assert child is not None
            children[nibble] = child
            start = end
        return self.write_internal(depth, packed, children)

    def settle(self, depth: int, packed: bytes, children: dict[int, Child | _NewLeaf]) -> _Result:
        """The node for `children`, or, when a single entry is left below it, that entry moved up."""
        if not children:
            return None
        if len(children) == 1:
            ((nibble, only),) = children.items()
            if type(only) is _NewLeaf:
                return only
            assert isinstance(only, tuple)
            if only[2]:
                key = node_key(only[1], depth + 1, child_prefix(packed, depth, nibble))
                path, leaf_key, value = decode_leaf(self.load(key))
                self.stale.append(key)
                return _NewLeaf(path, leaf_key, value, only[0])
        return self.write_internal(depth, packed, children)

    def write_internal(self, depth: int, packed: bytes, children: dict[int, Child | _NewLeaf]) -> Child:
        version = self.version
        placed: dict[int, Child] = {}
        for nibble, child in children.items():
            if type(child) is _NewLeaf:
                position = node_key(version, depth + 1, child_prefix(packed, depth, nibble))
                self.writes.append((position, encode_leaf(child.path, child.key, child.value)))
                placed[nibble] = (child.digest, version, True)
            else:
                assert isinstance(child, tuple)
                placed[nibble] = child
        self.writes.append((node_key(version, depth, packed), encode_internal(placed)))
        return internal_hash(placed), version, False


class _Loader:
    """Reads stored nodes; a missing node means a pruned version or a damaged database."""

    __slots__ = ("_get", "_prefix")

    def __init__(self, store: KVStore, prefix: bytes) -> None:
        self._get = store.get
        self._prefix = prefix

    def __call__(self, key: bytes) -> bytes:
        data = self._get(self._prefix + key)
        if data is None:
            raise StorageError(f"state node {key.hex()} is missing (pruned version or damaged database)")
        return data


@final
class AuthenticatedMap:
    """Versioned key-value map with a Merkle root per version and proofs of inclusion and exclusion.

    It keeps its nodes, stale-node index and roots in the STATE_NODES, STATE_STALE and STATE_META spaces of
    `store` (the node's database, or a view of it for a separate map).
    """

    __slots__ = ("_latest_key", "_load", "_meta", "_nodes", "_root_prefix", "_stale", "_store")

    def __init__(self, store: KVStore) -> None:
        self._nodes = PrefixedStore(store, KeySpace.STATE_NODES)
        self._stale = PrefixedStore(store, KeySpace.STATE_STALE)
        self._meta = PrefixedStore(store, KeySpace.STATE_META)
        self._store = self._nodes.root
        self._root_prefix = self._meta.prefix + _ROOTS
        self._latest_key = self._meta.prefix + _LATEST
        self._load = _Loader(self._store, self._nodes.prefix)

    # ------------------------------------------------------------------------------------------ versions

    def latest_version(self) -> int | None:
        # A record of its own, not a reverse seek over the roots: seeks next to freshly pruned ranges
        # crawl through tombstones until LevelDB compacts them.
        data = self._store.get(self._latest_key)
        return None if data is None else version_of(data)

    def _root_child(self, version: int) -> Child | None:
        data = self._store.get(self._root_prefix + version_bytes(version))
        if data is None:
            raise StorageError(f"no state at version {version} (never committed, or pruned)")
        return _decode_root(data)

    def root(self, version: int) -> Hash32:
        child = self._root_child(version)
        root: Hash32 = EMPTY_ROOT if child is None else Hash32(child[0])
        return root

    def has_version(self, version: int) -> bool:
        return self._store.get(self._root_prefix + version_bytes(version)) is not None

    # ------------------------------------------------------------------------------------------ reads

    def get(self, key: bytes, version: int) -> bytes | None:
        path = key_path(key)
        ref = self._root_child(version)
        depth, packed = 0, b""
        load = self._load
        while ref is not None:
            data = load(node_key(ref[1], depth, packed))
            if ref[2]:
                leaf_path, _, value = decode_leaf(data)
                return value if leaf_path == path else None
            nibble = nibble_at(path, depth)
            ref = decode_internal(data).get(nibble)
            packed = child_prefix(packed, depth, nibble)
            depth += 1
        return None

    def items(self, version: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) at `version`, in key-path order (for state sync and audits)."""
        return self._walk(self._root_child(version), 0, b"")

    def _walk(self, ref: Child | None, depth: int, packed: bytes) -> Iterator[tuple[bytes, bytes]]:
        if ref is None:
            return
        data = self._load(node_key(ref[1], depth, packed))
        if ref[2]:
            _, key, value = decode_leaf(data)
            yield key, value
            return
        for nibble, child in decode_internal(data).items():
            yield from self._walk(child, depth + 1, child_prefix(packed, depth, nibble))

    def prove(self, key: bytes, version: int) -> StateProof:
        path = key_path(key)
        siblings: list[Hash32] = []
        ref = self._root_child(version)
        depth, packed = 0, b""
        while ref is not None:
            data = self._load(node_key(ref[1], depth, packed))
            if ref[2]:
                return self._leaf_proof(data, siblings)
            children = decode_internal(data)
            entries = [(n, child[0], child[2]) for n, child in sorted(children.items())]
            nibble = nibble_at(path, depth)
            for level in range(4):
                mask = 8 >> level
                mine = [e for e in entries if (e[0] & mask) == (nibble & mask)]
                other = [e for e in entries if (e[0] & mask) != (nibble & mask)]
                siblings.append(Hash32(fold(other, level + 1)[0]))
                entries = mine
                if not mine:
                    return StateProof(leaf=None, siblings=tuple(siblings))
                if len(mine) == 1 and mine[0][2]:
                    position = node_key(children[mine[0][0]][1], depth + 1, child_prefix(packed, depth, mine[0][0]))
                    return self._leaf_proof(self._load(position), siblings)
            ref = children[nibble]
            packed = child_prefix(packed, depth, nibble)
            depth += 1
        return StateProof(leaf=None, siblings=tuple(siblings))

    @staticmethod
    def _leaf_proof(data: bytes, siblings: list[Hash32]) -> StateProof:
        path, _, value = decode_leaf(data)
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
        updater = _Updater(self._load, new_version)
        result = updater.update(base, 0, b"", items) if items else base
        if type(result) is _NewLeaf:
            updater.writes.append((node_key(new_version, 0, b""), encode_leaf(result.path, result.key, result.value)))
            root: Child | None = (result.digest, new_version, True)
        else:
            assert result is None or isinstance(result, tuple)
            root = result
        return StateUpdate(
            base_version=base_version,
            version=new_version,
            root=EMPTY_ROOT if root is None else Hash32(root[0]),
            root_record=_encode_root(root),
            node_writes=tuple(updater.writes),
            stale_nodes=tuple(updater.stale),
        )

    def stage(self, batch: WriteBatch, update: StateUpdate) -> None:
        """Put `update`'s writes into `batch`, a batch opened on the root database (not on a view).

        The update must extend the latest committed version: one state version per batch.
        """
        latest = self.latest_version()
        if update.base_version != latest:
            raise ValueError(f"update is based on version {update.base_version}, latest is {latest}")
        put = batch.put
        nodes = self._nodes.prefix
        for key, data in update.node_writes:
            put(nodes + key, data)
        stale = self._stale.prefix + version_bytes(update.version)
        for key in update.stale_nodes:
            put(stale + key, b"")
        put(self._root_prefix + version_bytes(update.version), update.root_record)
        put(self._latest_key, version_bytes(update.version))

    def commit(self, version: int, changes: Mapping[bytes, bytes | None]) -> Hash32:
        """Compute, stage and write one version on top of the latest (for tests, tools and benches)."""
        update = self.compute_update(self.latest_version(), version, changes)
        with self._store.write_batch() as batch:
            self.stage(batch, update)
        return update.root

    def prune(self, below_version: int) -> int:
        """Delete every node that no version >= `below_version` can reach, and the older roots.

        The latest version is always kept. Returns the number of nodes deleted.
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
        removed = 0
        stale_prefix = self._stale.prefix
        nodes = self._nodes.prefix
        cut = len(stale_prefix)
        pending: list[bytes] = []
        for key, _ in store.iterate(stale_prefix):
            if version_of(key[cut:]) > below:
                break
            pending.append(key)
            if len(pending) >= _PRUNE_CHUNK:
                removed += self._delete_stale(pending, cut, nodes)
                pending = []
        if pending:
            removed += self._delete_stale(pending, cut, nodes)
        return removed

    def _delete_stale(self, entries: list[bytes], cut: int, nodes: bytes) -> int:
        with self._store.write_batch() as batch:
            for entry in entries:
                batch.delete(nodes + entry[cut + 8 :])
                batch.delete(entry)
        return len(entries)
