"""The update fast paths and the node cache: a node's hash from its inner hashes equals the reference fold,
a map with a cache writes byte for byte what a map without one writes, and only committed nodes are ever
served from the cache (a staged batch that is dropped, and pruned nodes, never are)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import StorageError
from core.state import EMPTY_ROOT, AuthenticatedMap, verify_proof
from core.state.inner import dense_values, inner_of, path_value_one, path_values, sparse_hash
from core.state.nodes import (
    HEAD,
    INTERNAL,
    child_offset,
    decode_internal,
    decode_node_bitmaps,
    encode_internal,
    internal_hash,
)
from core.state.tree import LEAF_CACHE_MAX_BYTES
from core.store import KeySpace, KVStore, MemoryStore
from node.leveldb import LevelDBStore

from .test_state import apply, spec_root

pytestmark = pytest.mark.core

# --------------------------------------------------------------------------------------- node hashing

HASH = st.binary(min_size=32, max_size=32)
# A node: per nibble nothing, an internal child, or a leaf child (at least one child).
SLOT = st.none() | st.tuples(HASH, st.integers(0, 2**64 - 1), st.none() | HASH)
NODES = st.lists(SLOT, min_size=16, max_size=16).filter(lambda slots: any(s is not None for s in slots))


def _children(slots: list[tuple[bytes, int, bytes | None] | None]) -> dict[int, tuple[bytes, int, bytes | None]]:
    return {nibble: child for nibble, child in enumerate(slots) if child is not None}


@settings(max_examples=300)
@given(slots=NODES)
def test_dense_and_sparse_hashes_equal_the_reference_fold(slots: list[tuple[bytes, int, bytes | None] | None]) -> None:
    children = _children(slots)
    raw = encode_internal(children)
    present, leaves = decode_node_bitmaps(raw)
    expected = internal_hash(children)
    assert dense_values(raw, present, leaves)[1] == expected
    assert sparse_hash(raw, present, leaves) == expected
    assert decode_internal(raw) == children


@settings(max_examples=300)
@given(slots=NODES, changes=st.dictionaries(st.integers(0, 15), SLOT, min_size=1, max_size=5))
def test_path_updates_equal_a_full_rehash(
    slots: list[tuple[bytes, int, bytes | None] | None], changes: dict[int, tuple[bytes, int, bytes | None] | None]
) -> None:
    children = _children(slots)
    raw = encode_internal(children)
    present, leaves = decode_node_bitmaps(raw)
    inner = inner_of(dense_values(raw, present, leaves))
    new_children = dict(children)
    for nibble, child in changes.items():
        if child is None:
            new_children.pop(nibble, None)
        else:
            new_children[nibble] = child
    if not new_children:
        return
    new_raw = encode_internal(new_children)
    new_present, new_leaves = decode_node_bitmaps(new_raw)
    expected = dense_values(new_raw, new_present, new_leaves)
    assert expected[1] == internal_hash(new_children)
    changed = {16 + nibble: (child[0] if child is not None else bytes(EMPTY_ROOT)) for nibble, child in changes.items()}
    values = path_values(raw, present, leaves, inner, new_present, new_leaves, dict(changed))
    assert values[1] == expected[1]
    assert all(values[position] == expected[position] for position in values)
    if len(changes) == 1:
        ((nibble, child),) = changes.items()
        bit = 0x8000 >> nibble
        size = 0 if not present & bit else 72 if leaves & bit else 40
        digest, new_inner = path_value_one(raw, present, leaves, inner, new_present, new_leaves, nibble,
                                           child_offset(present, leaves, nibble), size, changed[16 + nibble])
        assert digest == expected[1]
        assert new_inner == inner_of(expected)


def test_corrupt_nodes_are_refused() -> None:
    raw = encode_internal({1: (bytes(32), 5, None), 9: (bytes(range(32)), 5, bytes(32))})
    decode_node_bitmaps(raw)
    for bad in [raw[:-1], raw + b"\x00", bytes((3,)) + raw[1:], HEAD.pack(INTERNAL, 0x4000, 0x0040) + raw[5:]]:
        with pytest.raises(StorageError):
            decode_node_bitmaps(bad)


def test_a_corrupt_stored_node_raises_storage_error(tmp_path: Path) -> None:
    with LevelDBStore(tmp_path / "db") as db:
        AuthenticatedMap(db).commit(1, {b"k%d" % i: b"v" for i in range(300)})
        prefix = bytes([KeySpace.STATE_NODES])
        key, data = next(iter(db.iterate(prefix)))
        with db.write_batch() as batch:
            batch.put(key, data[:-3])
        assert key[1:9] == (1).to_bytes(8, "big") and key[9] == 0  # the root node comes first
        fresh = AuthenticatedMap(db)  # an empty cache: every node comes from the database
        with pytest.raises(StorageError):
            fresh.compute_update(1, 2, {b"k1": b"changed"})


# --------------------------------------------------------------------------------------- cache transparency


@pytest.fixture(params=["leveldb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    db: KVStore = LevelDBStore(tmp_path / "db") if request.param == "leveldb" else MemoryStore()
    yield db
    db.close()


def _random_changes(rng: random.Random, universe: int, count: int) -> dict[bytes, bytes | None]:
    return {b"k%d" % rng.randrange(universe): None if rng.random() < 0.25 else rng.randbytes(rng.randint(0, 20))
            for _ in range(count)}


@pytest.mark.parametrize("cache_nodes", [0, 40, 1 << 19])
def test_cached_map_writes_what_an_uncached_map_writes(tmp_path: Path, cache_nodes: int) -> None:
    """Same updates on two databases: one map without a cache, one with (a tiny one evicts all the time).
    Every update's writes are identical byte for byte, and every root is the specification's."""
    rng = random.Random(cache_nodes)
    with LevelDBStore(tmp_path / "a") as plain_db, LevelDBStore(tmp_path / "b") as cached_db:
        plain = AuthenticatedMap(plain_db, cache_nodes=0)
        cached = AuthenticatedMap(cached_db, cache_nodes=cache_nodes)
        model: dict[bytes, bytes] = {}
        for version in range(40):
            # The first versions build a few thousand keys (dense nodes two levels down); then small updates,
            # mostly one key per subtree: the single-path code and the inner-hash path updates.
            changes = _random_changes(rng, 4000, 1500 if version < 3 else rng.randint(1, 60))
            expected = plain.compute_update(plain.latest_version(), version, changes)
            got = cached.compute_update(cached.latest_version(), version, changes)
            assert got == expected  # root, node, leaf and stale writes (not the cache material)
            for smap, db, update in ((plain, plain_db, expected), (cached, cached_db, got)):
                with db.write_batch() as batch:
                    smap.stage(batch, update)
            model = apply(model, changes)
            if version % 8 == 0 or version > 35:
                assert got.root == spec_root(model)
        if cache_nodes:
            cached.compute_update(39, 40, {})  # admits version 39
            assert 0 < len(cached._cache) <= cache_nodes
        for key in [b"k%d" % i for i in range(0, 4000, 97)]:
            assert cached.get(key, 39) == model.get(key)
            assert verify_proof(got.root, key, model.get(key), cached.prove(key, 39))


def test_single_key_updates_through_cached_dense_nodes(store: KVStore) -> None:
    """Each update touches one key: the path walk rewrites every node on the way up from cached inner hashes
    (full nodes at the root, partly filled ones below), through inserts (leaf splits), deletes (leaves moving
    up, children vanishing) and value changes. Every root is checked against the specification."""
    rng = random.Random(5)
    smap = AuthenticatedMap(store)
    model = {b"k%d" % i: b"v%d" % i for i in range(400)}
    smap.commit(0, model)
    for version in range(1, 200):
        key = b"k%d" % rng.randrange(450)
        value = None if rng.random() < 0.4 else rng.randbytes(8)
        changes: dict[bytes, bytes | None] = {key: value}
        root = smap.commit(version, changes)
        model = apply(model, changes)
        assert root == spec_root(model)
    assert dict(smap.items(199)) == model


# --------------------------------------------------------------------------------------- only committed nodes


def _cached_nodes(smap: AuthenticatedMap) -> dict[bytes, bytes]:
    """Node key -> bytes of every cache entry."""
    return {entry[0] + position: entry[1] for level in smap._cache.levels for position, entry in level.items()}


def test_a_dropped_staged_batch_never_reaches_the_cache(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    base = {b"k%d" % i: b"v" for i in range(500)}
    smap.commit(1, base)
    lost = smap.compute_update(1, 2, {b"k7": b"lost", b"new": b"lost"})
    with pytest.raises(OSError), store.write_batch() as batch:
        smap.stage(batch, lost)
        raise OSError("power cut")
    # Another update is written at the same version, through another map over the same database.
    other = AuthenticatedMap(store)
    won = other.compute_update(1, 2, {b"k7": b"won"})
    with store.write_batch() as batch:
        other.stage(batch, won)
    nxt = smap.compute_update(2, 3, {b"k8": b"x"})  # smap settles here: its staged batch was not written
    assert nxt.root == spec_root({**base, b"k7": b"won", b"k8": b"x"})
    stored = {bytes(key[1:]): value for key, value in store.iterate(bytes([KeySpace.STATE_NODES]))}
    cached = _cached_nodes(smap)
    assert cached  # version 1's nodes
    assert all(stored.get(key) == data for key, data in cached.items())  # only ever committed bytes
    assert not any(key[:8] == (2).to_bytes(8, "big") for key in cached)
    assert smap.get(b"k7", 2) == b"won" and smap.get(b"new", 2) is None
    assert smap.latest_version() == 2 and smap.root(2) == won.root  # what it knew of versions, read again


def test_a_staged_update_is_cached_once_written(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"k%d" % i: b"v" for i in range(500)})
    update = smap.compute_update(1, 2, {b"k7": b"x"})
    with store.write_batch() as batch:
        smap.stage(batch, update)
        # Not written yet: a computation in between must not admit it.
        smap.compute_update(1, 2, {b"k8": b"y"})
        assert not any(key[:8] == (2).to_bytes(8, "big") for key in _cached_nodes(smap))
    smap.compute_update(2, 3, {})
    cached = _cached_nodes(smap)
    assert {key for key in cached if key[:8] == (2).to_bytes(8, "big")} == {key for key, _ in update.node_writes}


def test_prune_takes_pruned_nodes_out_of_the_cache(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    rng = random.Random(2)
    model: dict[bytes, bytes] = {}
    for version in range(1, 25):
        changes = _random_changes(rng, 400, 60 if version > 1 else 400)
        smap.commit(version, changes)
        model = apply(model, changes)
    smap.prune(20)
    stored = {bytes(key[1:]) for key, _ in store.iterate(bytes([KeySpace.STATE_NODES]))}
    assert set(_cached_nodes(smap)) <= stored
    assert smap.commit(25, {b"k1": b"after"}) == spec_root(apply(model, {b"k1": b"after"}))


def test_cache_bound_evicts_deepest_levels_first(store: KVStore) -> None:
    smap = AuthenticatedMap(store, cache_nodes=30)
    smap.commit(1, {b"k%d" % i: b"v" for i in range(3000)})
    smap.compute_update(1, 2, {})
    levels = smap._cache.levels
    assert 0 < len(smap._cache) <= 30
    assert len(levels[0]) == 1 and len(levels[1]) == 16  # the root and its children stay
    assert smap.commit(2, {b"k5": b"w"}) == spec_root({**{b"k%d" % i: b"v" for i in range(3000)}, b"k5": b"w"})



# --------------------------------------------------------------------------------------- latest version and roots


class _CountingStore(MemoryStore):
    """Counts the reads of the map's records of versions (STATE_META: roots, the latest version, the stamp)
    and of its internal nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.meta_reads = self.node_reads = self.leaf_reads = 0

    def get(self, key: bytes) -> bytes | None:
        if key[:1] == bytes([KeySpace.STATE_META]):
            self.meta_reads += 1
        elif key[:1] == bytes([KeySpace.STATE_NODES]):
            self.node_reads += 1
        elif key[:1] == bytes([KeySpace.STATE_LEAVES]):
            self.leaf_reads += 1
        return super().get(key)


def test_a_read_after_a_written_batch_finds_its_nodes_in_the_cache() -> None:
    """The nodes of a staged update enter the cache when a read, not only the next update, sees its batch
    written: reads of the new version between two blocks (the mempool's) load no node from the database."""
    store = _CountingStore()
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"k%d" % i: b"v" for i in range(2000)})
    update = smap.compute_update(1, 2, {b"k%d" % i: b"w" for i in range(0, 2000, 7)})
    with store.write_batch() as batch:
        smap.stage(batch, update)
    for i in range(2000):
        assert smap.get(b"k%d" % i, 2) == (b"w" if i % 7 == 0 else b"v")
    assert store.node_reads == 0
    assert store.leaf_reads == 0  # the leaves too: both commits' written ones
    fresh = AuthenticatedMap(store)  # a map after a restart: each leaf from the database once
    for _ in range(2):
        for i in range(2000):
            assert fresh.get(b"k%d" % i, 2) == (b"w" if i % 7 == 0 else b"v")
    assert store.leaf_reads == 2000


def test_a_bounded_leaf_cache_serves_the_same_values() -> None:
    store = _CountingStore()
    smap = AuthenticatedMap(store, cache_leaves=100)
    model = {b"k%d" % i: b"v%d" % i for i in range(1000)}
    smap.commit(1, model)
    for _ in range(2):
        for key, value in model.items():
            assert smap.get(key, 1) == value
    assert len(smap._leaf_cache) <= 100 and store.leaf_reads > 1000


def test_large_leaves_are_not_cached() -> None:
    """The leaf cache is bounded in bytes too: a record over LEAF_CACHE_MAX_BYTES (an upload's chunk list, a
    queue) is read from the database each time."""
    store = _CountingStore()
    smap = AuthenticatedMap(store)
    big = b"x" * (LEAF_CACHE_MAX_BYTES + 1)
    smap.commit(1, {b"big": big, b"small": b"s"})
    for _ in range(3):
        assert smap.get(b"big", 1) == big and smap.get(b"small", 1) == b"s"
    assert store.leaf_reads == 3
    assert all(len(data) <= LEAF_CACHE_MAX_BYTES for data in smap._leaf_cache.values())


def test_reads_of_the_latest_version_cost_no_read_of_its_records_once_known() -> None:
    store = _CountingStore()
    smap = AuthenticatedMap(store)
    assert smap.latest_version() is None
    smap.commit(1, {b"a": b"1"})
    update = smap.compute_update(1, 2, {b"a": b"2"})
    with store.write_batch() as batch:
        smap.stage(batch, update)
    assert smap.latest_version() == 2  # learned from the staged batch's stamp: one read
    reads = store.meta_reads
    for _ in range(10):
        assert smap.latest_version() == 2
        assert smap.get(b"a", 2) == b"2" and smap.get(b"a", 1) == b"1"
        assert smap.root(2) == update.root and smap.has_version(1)
    assert store.meta_reads == reads  # both versions' root records came from their commits


def test_a_staged_but_unwritten_version_is_never_read_and_a_dropped_one_never_remembered(store: KVStore) -> None:
    """A version's root record and the latest version are learned from the database or from a batch seen
    written, never from a staged one: a batch dropped at version 2 and another update written at version 2
    (another fork of the same height) leave the map reading the written one."""
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"a": b"1", b"b": b"1"})
    assert smap.get(b"a", 1) == b"1" and smap.latest_version() == 1
    lost = smap.compute_update(1, 2, {b"a": b"lost"})
    with pytest.raises(OSError), store.write_batch() as batch:
        smap.stage(batch, lost)
        assert smap.latest_version() == 1  # staged, not written
        with pytest.raises(StorageError):
            smap.get(b"a", 2)
        raise OSError("power cut")
    assert smap.latest_version() == 1 and not smap.has_version(2)
    won = smap.compute_update(1, 2, {b"a": b"won"})
    assert won.root != lost.root
    with store.write_batch() as batch:
        smap.stage(batch, won)
    assert smap.latest_version() == 2
    assert smap.root(2) == won.root and smap.get(b"a", 2) == b"won" and smap.get(b"b", 2) == b"1"
    fresh = AuthenticatedMap(store)  # what the database says
    assert fresh.latest_version() == 2 and fresh.root(2) == won.root


def test_a_pruned_version_is_forgotten(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    for version in range(1, 6):
        smap.commit(version, {b"k": b"%d" % version})
        assert smap.get(b"k", version) == b"%d" % version and smap.has_version(version)
    smap.prune(4)
    for version in (1, 2, 3):
        assert not smap.has_version(version)
        with pytest.raises(StorageError):
            smap.root(version)
        with pytest.raises(StorageError):
            smap.get(b"k", version)
    assert smap.get(b"k", 4) == b"4" and smap.get(b"k", 5) == b"5" and smap.latest_version() == 5
    stored = {bytes(key[1:]) for key, _ in store.iterate(bytes([KeySpace.STATE_LEAVES]))}
    assert set(smap._leaf_cache) <= stored  # the pruned leaves are out of the cache too


def test_reads_at_the_head_walk_no_tree_once_known() -> None:
    """The value cache: a key read at the latest version, or written by the update that made it, is served
    without walking the tree (no node and no leaf read, even with the node cache off), and reads of older
    versions still see their own values."""
    store = _CountingStore()
    smap = AuthenticatedMap(store, cache_nodes=0)
    smap.commit(1, {b"k%d" % i: b"v" for i in range(300)})
    assert smap.get(b"k0", 1) == b"v"
    for i in range(300):
        assert smap.get(b"k%d" % i, 1) == b"v"
    assert smap.get(b"absent", 1) is None
    reads = store.node_reads, store.leaf_reads
    for i in range(300):
        assert smap.get(b"k%d" % i, 1) == b"v"
    assert smap.get(b"absent", 1) is None
    assert (store.node_reads, store.leaf_reads) == reads
    smap.commit(2, {**{b"k%d" % i: b"w" for i in range(0, 300, 3)}, b"k1": None, b"absent": b"new"})
    reads = store.node_reads, store.leaf_reads  # the update's own walk aside
    for i in range(300):
        assert smap.get(b"k%d" % i, 2) == (None if i == 1 else b"w" if i % 3 == 0 else b"v")
    assert smap.get(b"absent", 2) == b"new"
    assert (store.node_reads, store.leaf_reads) == reads  # the update's own values, and the unchanged ones
    for i in range(300):
        assert smap.get(b"k%d" % i, 1) == b"v"  # the old version: walked where the key changed since
    assert smap.get(b"absent", 1) is None


def test_the_value_cache_agrees_with_a_map_without_it(store: KVStore) -> None:
    """Random updates (sets, deletes, values over the cache's size bound, a dropped batch, a prune), each
    version read at random keys by a map with the value cache and by one without any cache."""
    rng = random.Random(11)
    smap = AuthenticatedMap(store)
    keys = [b"k%d" % i for i in range(60)]
    models: dict[int, dict[bytes, bytes]] = {}
    model: dict[bytes, bytes] = {}
    for version in range(1, 25):
        changes: dict[bytes, bytes | None] = {}
        for key in rng.sample(keys, 12):
            roll = rng.random()
            changes[key] = (None if roll < 0.25 else b"x" * (LEAF_CACHE_MAX_BYTES + 1) if roll < 0.35
                            else b"v%d" % rng.randrange(1000))
        if version % 5 == 0:
            dropped = smap.compute_update(version - 1, version, {key: b"dropped" for key in keys})
            with pytest.raises(OSError), store.write_batch() as batch:
                smap.stage(batch, dropped)
                raise OSError("power cut")
        smap.commit(version, changes)
        for key, value in changes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        models[version] = dict(model)
        if version == 15:
            smap.prune(8)
            for old in range(1, 8):
                del models[old]
                with pytest.raises(StorageError):
                    smap.get(keys[0], old)
        for _ in range(40):
            at = rng.choice(sorted(models))
            key = rng.choice(keys)
            assert smap.get(key, at) == models[at].get(key)
    plain = AuthenticatedMap(store, cache_nodes=0, cache_leaves=0)
    for at, expected in models.items():
        for key in keys:
            assert smap.get(key, at) == plain.get(key, at) == expected.get(key)


def test_the_value_cache_serves_no_version_that_was_never_committed(store: KVStore) -> None:
    """Versions need not be contiguous: a read at one between two committed versions finds no state, though
    the key's value did not change across it."""
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"a": b"1", b"b": b"1"})
    smap.commit(3, {b"b": b"3"})
    assert smap.get(b"a", 3) == b"1" and smap.get(b"a", 1) == b"1"
    with pytest.raises(StorageError):
        smap.get(b"a", 2)


def test_kept_key_paths_give_the_defined_roots_while_filling_and_emptying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compute_update keeps the key paths of the keys it updated (bounded, emptied when full): every root is
    still the one the definition gives, for keys seen before, new ones, deletions, and across an emptying."""
    from core.state import tree
    from tools.vectors.state import definition_root

    monkeypatch.setattr(tree, "_PATHS_KEPT", 24)
    rng = random.Random(11)
    with LevelDBStore(tmp_path / "db") as db:
        smap = AuthenticatedMap(db)
        model: dict[bytes, bytes] = {}
        for version in range(1, 30):
            # Each block writes up to 12 keys of 41 (some deleted): the memo of 24 fills and empties.
            keys = {b"A%d" % rng.randint(0, 40) for _ in range(rng.randint(1, 12))}
            changes = {key: None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 20)) for key in keys}
            model = {k: v for k, v in {**model, **changes}.items() if v is not None}
            assert smap.commit(version, changes) == definition_root(model)
            assert len(smap._paths) <= 24
        for key in [b"A%d" % i for i in range(41)]:
            assert smap.get(key, 29) == model.get(key)
        bulk = {b"B%d" % i: b"v" for i in range(40)}  # more keys than are kept: none is
        model.update(bulk)
        assert smap.commit(30, bulk) == definition_root(model)
        assert not smap._paths
