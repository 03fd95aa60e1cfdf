"""The authenticated map: it behaves like a dict per version, its root is the sparse-Merkle root of its contents,
its proofs convince a verifier without a database, and it survives reopening and pruning."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import StorageError
from core.hashing import ZERO_HASH
from core.state import EMPTY_ROOT, AuthenticatedMap, key_path, verify_proof
from core.state.hashing import leaf_hash, value_hash
from core.state.nodes import child_prefix, decode_internal, leaf_key, node_key
from core.store import KeySpace, KVStore, MemoryStore, space
from core.types import Hash32
from node.leveldb import LevelDBStore
from tools.vectors.state import definition_root

pytestmark = pytest.mark.core


# --------------------------------------------------------------------------------------- the specification


# The root by definition (the binary sparse Merkle tree over SHA-256(key), one-entry subtrees collapsed to
# their leaf), written once, independently of the 16-way storage layout it checks; the vectors use it too.
spec_root = definition_root


def apply(model: dict[bytes, bytes], changes: Mapping[bytes, bytes | None]) -> dict[bytes, bytes]:
    out = dict(model)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.fixture(params=["leveldb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    db: KVStore = LevelDBStore(tmp_path / "db") if request.param == "leveldb" else MemoryStore()
    yield db
    db.close()


# --------------------------------------------------------------------------------------- against a dict model

KEY = st.integers(0, 60).map(lambda i: b"acct/%d" % i)
VALUE = st.binary(max_size=12)
CHANGES = st.dictionaries(KEY, st.none() | VALUE, max_size=20)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(CHANGES, min_size=1, max_size=8))
def test_map_matches_a_dict_model(batches: list[dict[bytes, bytes | None]]) -> None:
    smap = AuthenticatedMap(MemoryStore())
    model: dict[bytes, bytes] = {}
    history: list[dict[bytes, bytes]] = []
    for version, changes in enumerate(batches):
        root = smap.commit(version, changes)
        model = apply(model, changes)
        history.append(model)
        assert root == spec_root(model)
        assert smap.root(version) == root
        assert smap.latest_version() == version
        assert dict(smap.items(version)) == model
    for version, contents in enumerate(history):  # older versions stay readable
        for i in range(61):
            key = b"acct/%d" % i
            assert smap.get(key, version) == contents.get(key)


def test_map_matches_model_on_leveldb_over_many_versions(tmp_path: Path) -> None:
    rng = random.Random(7)
    with LevelDBStore(tmp_path / "db") as db:
        smap = AuthenticatedMap(db)
        model: dict[bytes, bytes] = {}
        for version in range(1, 40):
            changes: dict[bytes, bytes | None] = {}
            for _ in range(rng.randint(0, 50)):
                key = b"k%d" % rng.randint(0, 300)
                changes[key] = None if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 40))
            model = apply(model, changes)
            assert smap.commit(version, changes) == spec_root(model)
        assert dict(smap.items(39)) == model
        for key in [b"k%d" % i for i in range(0, 310, 3)]:
            assert smap.get(key, 39) == model.get(key)


def test_empty_map_has_the_documented_empty_root(store: KVStore) -> None:
    assert EMPTY_ROOT == ZERO_HASH == Hash32(bytes(32))
    smap = AuthenticatedMap(store)
    assert smap.latest_version() is None
    assert smap.commit(0, {}) == EMPTY_ROOT
    assert smap.get(b"x", 0) is None
    smap.commit(1, {b"a": b"1", b"b": b"2"})
    assert smap.commit(2, {b"a": None, b"b": None, b"never": None}) == EMPTY_ROOT
    assert list(smap.items(2)) == []


def test_single_entry_root_is_its_leaf_hash(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    root = smap.commit(1, {b"only": b"value"})
    assert root == leaf_hash(key_path(b"only"), value_hash(b"value"))


def test_empty_value_is_present_not_deleted(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"k": b""})
    assert smap.get(b"k", 1) == b""
    assert verify_proof(smap.root(1), b"k", b"", smap.prove(b"k", 1))
    assert not verify_proof(smap.root(1), b"k", None, smap.prove(b"k", 1))


# --------------------------------------------------------------------------------------- order independence


@settings(max_examples=30, deadline=None)
@given(changes=CHANGES, seed=st.integers(0, 2**32))
def test_root_does_not_depend_on_change_order_or_batching(changes: dict[bytes, bytes | None], seed: int) -> None:
    base = {b"acct/%d" % i: b"v%d" % i for i in range(0, 60, 4)}
    shuffled = list(changes.items())
    random.Random(seed).shuffle(shuffled)

    first = AuthenticatedMap(MemoryStore())
    first.commit(1, base)
    second = AuthenticatedMap(MemoryStore())
    second.commit(1, dict(reversed(list(base.items()))))
    assert first.root(1) == second.root(1)
    assert first.commit(2, changes) == second.commit(2, dict(shuffled))

    # The same end state reached in many small steps has the same root (history independence).
    third = AuthenticatedMap(MemoryStore())
    version = 0
    for key, value in sorted(base.items(), reverse=True):
        third.commit(version, {key: value})
        version += 1
    for key, value in shuffled:
        third.commit(version, {key: value})
        version += 1
    assert third.root(version - 1) == first.root(2)


# --------------------------------------------------------------------------------------- proofs


@settings(max_examples=25, deadline=None)
@given(contents=st.dictionaries(KEY, VALUE, max_size=40), probe=KEY)
def test_proofs_verify_for_present_and_absent_keys(contents: dict[bytes, bytes], probe: bytes) -> None:
    smap = AuthenticatedMap(MemoryStore())
    root = smap.commit(1, contents)
    proof = smap.prove(probe, 1)
    value = contents.get(probe)
    assert verify_proof(root, probe, value, proof)
    assert not verify_proof(root, probe, (value or b"") + b"x", proof)  # wrong value
    if value is not None:
        assert not verify_proof(root, probe, None, proof)  # claims absence of a present key
    wrong_root = Hash32(bytes(31) + b"\x01") if root == bytes(32) else Hash32(bytes(32))
    assert not verify_proof(wrong_root, probe, value, proof)
    for other in [b"acct/%d" % i for i in range(61)]:
        if other != probe and contents.get(other) != value:
            assert not verify_proof(root, other, value, proof)  # the proof speaks for one key only


def test_tampered_proofs_fail(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    contents = {b"k%d" % i: b"v%d" % i for i in range(500)}
    root = smap.commit(1, contents)
    for key, value in [(b"k7", b"v7"), (b"absent", None)]:
        proof = smap.prove(key, 1)
        assert verify_proof(root, key, value, proof)
        assert len(proof.siblings) >= 8  # 500 keys: the path is at least log2(500) deep
        for index in range(len(proof.siblings)):
            siblings = list(proof.siblings)
            siblings[index] = Hash32(bytes(b ^ 1 for b in siblings[index]))
            assert not verify_proof(root, key, value, proof.replace(siblings=tuple(siblings)))
        assert not verify_proof(root, key, value, proof.replace(siblings=proof.siblings[:-1]))
        assert not verify_proof(root, key, value, proof.replace(siblings=(*proof.siblings, EMPTY_ROOT)))
    # An exclusion proof that ends at another key's leaf cannot be turned into an inclusion proof.
    exclusion = smap.prove(b"absent", 1)
    if exclusion.leaf is not None:
        assert not verify_proof(root, b"absent", b"v7", exclusion)


def test_proof_against_an_older_version(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    old = smap.commit(1, {b"a": b"1", b"b": b"2"})
    new = smap.commit(2, {b"a": b"changed"})
    old_proof = smap.prove(b"a", 1)
    assert verify_proof(old, b"a", b"1", old_proof)
    assert not verify_proof(new, b"a", b"1", old_proof)
    assert verify_proof(new, b"a", b"changed", smap.prove(b"a", 2))


# --------------------------------------------------------------------------------------- persistence


def test_roots_and_contents_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = random.Random(3)
    roots = {}
    contents: dict[int, dict[bytes, bytes]] = {}
    model: dict[bytes, bytes] = {}
    with LevelDBStore(path) as db:
        smap = AuthenticatedMap(db)
        for version in range(1, 6):
            changes = {b"k%d" % rng.randint(0, 200): rng.randbytes(8) for _ in range(80)}
            roots[version] = smap.commit(version, changes)
            model = apply(model, changes)
            contents[version] = model
    with LevelDBStore(path, create=False) as db:
        smap = AuthenticatedMap(db)
        assert smap.latest_version() == 5
        for version, root in roots.items():
            assert smap.root(version) == root
            assert dict(smap.items(version)) == contents[version]
        assert smap.commit(6, {b"k1": b"after reopen"}) == spec_root(apply(model, {b"k1": b"after reopen"}))


# --------------------------------------------------------------------------------------- staging


def _all_items(db: KVStore) -> list[tuple[bytes, bytes]]:
    return list(db.iterate())


def test_compute_update_writes_nothing(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"a": b"1", b"b": b"2"})
    before = _all_items(store)
    update = smap.compute_update(1, 2, {b"a": None, b"c": b"3"})
    assert _all_items(store) == before
    assert update.root == spec_root({b"b": b"2", b"c": b"3"})
    assert smap.latest_version() == 1


def test_block_and_state_commit_in_one_batch_or_not_at_all(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"a": b"1"})
    blocks = space(store, KeySpace.BLOCKS_BY_HEIGHT)
    update = smap.compute_update(1, 2, {b"a": b"2", b"b": b"3"})
    with pytest.raises(OSError), store.write_batch() as batch:
        blocks.bind(batch).put(b"2", b"block 2")
        smap.stage(batch, update)
        raise OSError("power cut")
    assert smap.latest_version() == 1 and blocks.get(b"2") is None
    assert smap.get(b"a", 1) == b"1"
    with store.write_batch(sync=True) as batch:
        blocks.bind(batch).put(b"2", b"block 2")
        smap.stage(batch, update)
    assert smap.latest_version() == 2 and blocks.get(b"2") == b"block 2"
    assert smap.root(2) == update.root and smap.get(b"b", 2) == b"3"


def test_stage_refuses_an_update_on_a_stale_base(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"a": b"1"})
    first = smap.compute_update(1, 2, {b"a": b"2"})
    rival = smap.compute_update(1, 2, {b"a": b"3"})
    with store.write_batch() as batch:
        smap.stage(batch, first)
    with pytest.raises(ValueError), store.write_batch() as batch:
        smap.stage(batch, rival)
    assert smap.get(b"a", 2) == b"2"
    with pytest.raises(ValueError):
        smap.compute_update(2, 2, {})


def test_unknown_version_raises_storage_error(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    with pytest.raises(StorageError):
        smap.root(0)
    smap.commit(3, {b"a": b"1"})
    with pytest.raises(StorageError):
        smap.get(b"a", 2)
    with pytest.raises(StorageError):
        smap.compute_update(2, 4, {})


def test_map_in_a_view_does_not_touch_other_spaces(store: KVStore) -> None:
    own = AuthenticatedMap(store)
    other = AuthenticatedMap(space(store, KeySpace.MODELS))
    own.commit(1, {b"a": b"1", b"b": b"2"})
    other.commit(1, {b"a": b"other", b"b": b"2"})
    assert own.get(b"a", 1) == b"1" and other.get(b"a", 1) == b"other"
    assert {k[0] for k, _ in store.iterate()} == {
        KeySpace.STATE_NODES, KeySpace.STATE_LEAVES, KeySpace.STATE_META, KeySpace.MODELS,
    }


def test_update_cost_follows_touched_keys_not_state_size(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    smap.commit(1, {b"k%d" % i: b"v" for i in range(5000)})
    update = smap.compute_update(1, 2, {b"k17": b"new"})
    # One path: 5000 keys need about log16(5000) ~ 3 to 4 internal nodes, plus the leaf.
    assert len(update.node_writes) <= 5 and len(update.leaf_writes) == 1
    assert len(update.stale) == len(update.node_writes) + 1
    update = smap.compute_update(1, 2, {b"k%d" % i: b"new" for i in range(0, 5000, 50)})
    assert len(update.node_writes) <= 100 * 5 and len(update.leaf_writes) == 100
    unchanged = smap.compute_update(1, 2, {b"k17": b"v", b"absent": None})
    assert unchanged.node_writes == unchanged.leaf_writes == unchanged.stale == ()
    assert unchanged.root == smap.root(1)


# --------------------------------------------------------------------------------------- pruning


def _reachable(db: KVStore, version: int) -> set[bytes]:
    """Full database keys of the nodes and leaves reachable from `version`'s root, found by walking them."""
    record = db.get(bytes([KeySpace.STATE_META]) + b"r" + version.to_bytes(8, "big"))
    assert record is not None
    found: set[bytes] = set()
    if record == b"\x00":
        return found
    path = record[41:73] if record[0] == 2 else None
    stack: list[tuple[int, bytes | None, int, bytes]] = [(int.from_bytes(record[1:9], "big"), path, 0, b"")]
    while stack:
        node_version, leaf_path, depth, packed = stack.pop()
        if leaf_path is not None:
            key = bytes([KeySpace.STATE_LEAVES]) + leaf_key(node_version, leaf_path)
            assert db.get(key) is not None, "a reachable leaf was deleted"
            found.add(key)
            continue
        key = bytes([KeySpace.STATE_NODES]) + node_key(node_version, depth, packed)
        data = db.get(key)
        assert data is not None, "a reachable node was deleted"
        found.add(key)
        for nibble, (_, child_version, child_path) in decode_internal(data).items():
            stack.append((child_version, child_path, depth + 1, child_prefix(packed, depth, nibble)))
    return found


def _stored(db: KVStore) -> set[bytes]:
    return {k for k, _ in db.iterate(bytes([KeySpace.STATE_NODES]))} | {
        k for k, _ in db.iterate(bytes([KeySpace.STATE_LEAVES]))
    }


def test_prune_keeps_newer_versions_and_frees_the_rest(store: KVStore) -> None:
    smap = AuthenticatedMap(store)
    rng = random.Random(11)
    model: dict[bytes, bytes] = {}
    history: dict[int, dict[bytes, bytes]] = {}
    for version in range(1, 31):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(30):
            changes[b"k%d" % rng.randint(0, 150)] = None if rng.random() < 0.2 else rng.randbytes(6)
        smap.commit(version, changes)
        model = apply(model, changes)
        history[version] = model
    removed = smap.prune(20)
    assert removed > 0
    for version in range(20, 31):
        assert dict(smap.items(version)) == history[version]
        assert smap.root(version) == spec_root(history[version])
        assert verify_proof(smap.root(version), b"k5", history[version].get(b"k5"), smap.prove(b"k5", version))
    for version in range(1, 20):
        with pytest.raises(StorageError):
            smap.root(version)
    live = set().union(*(_reachable(store, v) for v in range(20, 31)))
    assert _stored(store) == live  # nothing reachable was lost, nothing unreachable was kept
    assert smap.prune(20) == 0
    # The latest version always survives, and the map keeps working after a prune.
    smap.prune(10**9)
    assert dict(smap.items(30)) == history[30]
    assert _stored(store) == _reachable(store, 30)
    assert smap.commit(31, {b"k1": b"x"}) == spec_root(apply(history[30], {b"k1": b"x"}))


def test_prune_on_an_empty_map_is_a_no_op(store: KVStore) -> None:
    assert AuthenticatedMap(store).prune(100) == 0
