"""The KV store: LevelDB and its in-memory double behave alike, batches are all-or-nothing, views are confined."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.errors import StorageError
from core.store import KeySpace, KVStore, MemoryStore, PrefixedStore, prefix_upper_bound, space
from node.leveldb import LevelDBStore

pytestmark = pytest.mark.core


@pytest.fixture(params=["leveldb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    db: KVStore = LevelDBStore(tmp_path / "db") if request.param == "leveldb" else MemoryStore()
    yield db
    db.close()


def fill(db: KVStore, items: dict[bytes, bytes]) -> None:
    with db.write_batch() as batch:
        for key, value in items.items():
            batch.put(key, value)


def keys(it: Iterator[tuple[bytes, bytes]]) -> list[bytes]:
    return [key for key, _ in it]


def test_put_get_delete(store: KVStore) -> None:
    fill(store, {b"a": b"1", b"b": b"2"})
    assert store.get(b"a") == b"1"
    assert store.get(b"c") is None
    with store.write_batch() as batch:
        batch.delete(b"a")
        batch.put(b"b", b"3")
        batch.delete(b"missing")
    assert store.get(b"a") is None
    assert store.get(b"b") == b"3"


def test_last_write_in_a_batch_wins(store: KVStore) -> None:
    with store.write_batch() as batch:
        batch.put(b"k", b"1")
        batch.delete(b"k")
        batch.put(b"j", b"1")
        batch.put(b"j", b"2")
    assert store.get(b"k") is None
    assert store.get(b"j") == b"2"


def test_batch_that_raises_writes_nothing(store: KVStore) -> None:
    fill(store, {b"keep": b"old"})
    with pytest.raises(RuntimeError), store.write_batch() as batch:
        batch.put(b"new", b"x")
        batch.put(b"keep", b"changed")
        batch.delete(b"keep")
        raise RuntimeError("crash mid-block")
    assert store.get(b"new") is None
    assert store.get(b"keep") == b"old"
    assert keys(store.iterate()) == [b"keep"]


def test_one_batch_spans_key_spaces_atomically(store: KVStore) -> None:
    blocks = space(store, KeySpace.BLOCKS_BY_HEIGHT)
    state = space(store, KeySpace.STATE_NODES)
    with pytest.raises(ValueError), store.write_batch() as batch:
        blocks.bind(batch).put(b"h1", b"block")
        state.bind(batch).put(b"n1", b"node")
        raise ValueError
    assert blocks.get(b"h1") is None and state.get(b"n1") is None
    with store.write_batch(sync=True) as batch:
        blocks.bind(batch).put(b"h1", b"block")
        state.bind(batch).put(b"n1", b"node")
    assert blocks.get(b"h1") == b"block"
    assert state.get(b"n1") == b"node"
    assert store.get(bytes([KeySpace.BLOCKS_BY_HEIGHT]) + b"h1") == b"block"
    assert store.get(bytes([KeySpace.STATE_NODES]) + b"n1") == b"node"


def test_view_is_confined_to_its_space(store: KVStore) -> None:
    fill(store, {b"\x01a": b"meta", b"\x02a": b"blk1", b"\x02b": b"blk2", b"\x03a": b"idx"})
    view = space(store, KeySpace.BLOCKS_BY_HEIGHT)
    assert list(view.iterate()) == [(b"a", b"blk1"), (b"b", b"blk2")]
    assert list(view.iterate(reverse=True)) == [(b"b", b"blk2"), (b"a", b"blk1")]
    assert view.get(b"a") == b"blk1"
    with view.write_batch() as batch:
        batch.put(b"c", b"blk3")
        batch.delete(b"a")
    assert store.get(b"\x02c") == b"blk3"
    assert store.get(b"\x02a") is None
    assert store.get(b"\x01a") == b"meta" and store.get(b"\x03a") == b"idx"
    view.close()  # a view does not own the database
    assert store.get(b"\x01a") == b"meta"


def test_view_of_a_view_is_flattened(store: KVStore) -> None:
    outer = space(store, KeySpace.STATE_META)
    inner = PrefixedStore(outer, b"r")
    assert inner.root is store
    assert inner.prefix == bytes([KeySpace.STATE_META]) + b"r"
    with store.write_batch() as batch:
        inner.bind(batch).put(b"1", b"x")
    assert outer.get(b"r1") == b"x"
    assert list(inner.iterate()) == [(b"1", b"x")]


def test_iteration_is_in_unsigned_byte_order(store: KVStore) -> None:
    items = {b"\x00": b"", b"\x7f": b"", b"\x80": b"", b"\xff": b"", b"\xff\xff": b"", b"a": b"", b"ab": b""}
    fill(store, items)
    assert keys(store.iterate()) == sorted(items)
    assert keys(store.iterate(reverse=True)) == sorted(items, reverse=True)
    assert keys(store.iterate(b"\xff")) == [b"\xff", b"\xff\xff"]
    assert keys(store.iterate(b"\xff", reverse=True)) == [b"\xff\xff", b"\xff"]


# A four-letter alphabet with the extreme bytes, so keys share prefixes and hit the 0xff edge cases.
KEYS = st.binary(max_size=3).map(lambda b: bytes((0x00, 0x01, 0xFE, 0xFF)[x % 4] for x in b))


@settings(max_examples=60, deadline=None)
@given(
    contents=st.sets(KEYS, max_size=25),
    prefix=KEYS.map(lambda k: k[:2]),
    start=st.none() | KEYS,
    reverse=st.booleans(),
    leveldb=st.booleans(),
)
# plyvel yields nothing in reverse when the only key in range is the prefix itself (found by this test).
@example(contents={b"\x00"}, prefix=b"\x00", start=None, reverse=True, leveldb=True)
@example(contents={b"\x00", b"\x00\x01"}, prefix=b"\x00", start=b"\x00", reverse=True, leveldb=True)
def test_iterate_matches_a_sorted_model(
    contents: set[bytes], prefix: bytes, start: bytes | None, reverse: bool, leveldb: bool
) -> None:
    expected = sorted(k for k in contents if k.startswith(prefix))
    if start is not None:
        expected = [k for k in expected if (k <= start if reverse else k >= start)]
    if reverse:
        expected.reverse()
    with tempfile.TemporaryDirectory() as tmp:
        db: KVStore = LevelDBStore(os.path.join(tmp, "db")) if leveldb else MemoryStore()
        try:
            fill(db, {k: k + b"!" for k in contents})
            got = list(db.iterate(prefix, start=start, reverse=reverse))
            assert [k for k, _ in got] == expected
            assert all(v == k + b"!" for k, v in got)
            view = PrefixedStore(db, prefix)
            view_start = None if start is None or not start.startswith(prefix) else start[len(prefix) :]
            if start is None or view_start is not None:
                assert [prefix + k for k, _ in view.iterate(start=view_start, reverse=reverse)] == expected
        finally:
            db.close()


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound(b"") is None
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"a") == b"b"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\x01\x02") == b"\x01\x03"


def test_memory_iterator_is_a_snapshot() -> None:
    db = MemoryStore()
    fill(db, {b"a": b"1", b"b": b"2"})
    it = db.iterate()
    fill(db, {b"c": b"3", b"a": b"changed"})
    assert list(it) == [(b"a", b"1"), (b"b", b"2")]


def test_leveldb_contents_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LevelDBStore(path) as db:
        fill(db, {b"k": b"v"})
    with LevelDBStore(path, create=False) as db:
        assert db.get(b"k") == b"v"


def _corrupt(path: Path) -> None:
    for name in os.listdir(path):
        if name.startswith("MANIFEST"):
            (path / name).write_bytes(b"not a manifest" * 8)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: LevelDBStore(p / "absent", create=False), "no database"),
        (lambda p: LevelDBStore(p / "no" / "such" / "parent"), "not a directory"),
        (lambda p: (p / "file").write_bytes(b"x") and LevelDBStore(p / "file"), "cannot open"),
        (lambda p: (_corrupt_db(p), LevelDBStore(p / "db", create=False)), "corrupt"),
    ],
    ids=["missing", "missing-parent", "not-a-directory", "corrupt"],
)
def test_bad_path_raises_storage_error(tmp_path: Path, make: Callable[[Path], object], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        make(tmp_path)


def _corrupt_db(tmp_path: Path) -> None:
    with LevelDBStore(tmp_path / "db") as db:
        fill(db, {b"k": b"v"})
    _corrupt(tmp_path / "db")


def test_locked_database_raises_storage_error(tmp_path: Path) -> None:
    with LevelDBStore(tmp_path / "db"), pytest.raises(StorageError, match="locked"):
        LevelDBStore(tmp_path / "db")


def test_closed_store_raises_storage_error(store: KVStore) -> None:
    store.close()
    with pytest.raises(StorageError):
        store.get(b"k")
    with pytest.raises(StorageError):
        store.write_batch()
