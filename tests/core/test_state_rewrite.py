"""A block that sets many keys, as the devnet's do (many changed keys under each node: `_Updater.update`'s loop
and `_bottom`, not `single`): one leaf and one stale entry per changed key, nothing for a key set to its own
value."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.state import AuthenticatedMap
from core.store import KVStore
from node.leveldb import LevelDBStore
from tools.vectors.state import definition_root

pytestmark = pytest.mark.core

KEYS = [b"A" + os.urandom(20) for _ in range(600)]  # many keys per node at depth 2: update's loop, not `single`


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KVStore]:
    db = LevelDBStore(str(tmp_path / "db"))
    try:
        yield db
    finally:
        db.close()


def test_keys_set_to_their_own_values_write_nothing(store: KVStore) -> None:
    m = AuthenticatedMap(store)
    values = {k: os.urandom(80) for k in KEYS}
    root = m.commit(1, values)
    update = m.compute_update(1, 2, dict(values))
    assert update.root == root
    assert update.leaf_writes == () and update.node_writes == () and update.stale == ()


def test_new_values_write_one_leaf_each_and_retire_the_old(store: KVStore) -> None:
    m = AuthenticatedMap(store)
    values = {k: os.urandom(80) for k in KEYS}
    m.commit(1, values)
    changed = {k: os.urandom(80) for k in KEYS[::2]}
    update = m.compute_update(1, 2, changed)
    assert len(update.leaf_writes) == len(changed)
    assert sum(1 for s in update.stale if s[:1] == b"\x01") == len(changed)  # one stale leaf per changed key
    values.update(changed)
    assert update.root == definition_root(values)
    with store.write_batch() as batch:
        m.stage(batch, update)
    for key, value in changed.items():
        assert m.get(key, 2) == value
        assert m.get(key, 1) != value
