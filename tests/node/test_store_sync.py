"""When the mempool store fsyncs (node/mempool_store.py): batches are written every flush_delay_s, but with
`sync=True` at most once per sync_interval_s; an unsynced batch followed by quiet gets an empty synced write
within the interval; a clean close syncs; unsynced batches survive a kill -9 of the process as whole batches
(the OS's page cache has them). Real LevelDB, a real killed process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import tests.node.test_mempool_persist as persist
from node.leveldb import LevelDBStore
from node.mempool_store import MempoolStore
from tests.node.test_mempool import Accounts, tx
from tests.node.test_mempool_persist import _keys, _pool

pytestmark = pytest.mark.node

WAIT_S = 30.0


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """The `sync` flag of every LevelDB write batch opened meanwhile."""
    flags: list[bool] = []
    original = LevelDBStore.write_batch

    def recording(self: LevelDBStore, *, sync: bool = False) -> Any:
        flags.append(sync)
        return original(self, sync=sync)

    monkeypatch.setattr(LevelDBStore, "write_batch", recording)
    yield flags


async def _flushed(store: MempoolStore, count: int) -> None:
    with trio.fail_after(WAIT_S):
        while store.flushes < count:  # noqa: ASYNC110 - the writer's count, no event
            await trio.sleep(0.005)


def test_batches_within_the_sync_interval_are_written_unsynced_and_close_syncs(
        tmp_path: Path, syncs: list[bool]) -> None:
    mempool = _pool(Accounts())
    store = MempoolStore(tmp_path / "mempool", flush_delay_s=0.001, sync_interval_s=3600)
    store.watch(mempool)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for nonce in range(3):
                assert mempool.add(tx(0, nonce)).added
                await _flushed(store, nonce + 1)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert syncs == [True, False, False] and store.syncs == 1
    store.close()
    assert syncs[-1] is True
    assert len(_keys(tmp_path / "mempool", b"p")) == 3


def test_quiet_after_an_unsynced_batch_brings_an_empty_synced_write(tmp_path: Path, syncs: list[bool]) -> None:
    mempool = _pool(Accounts())
    store = MempoolStore(tmp_path / "mempool", flush_delay_s=0.001, sync_interval_s=0.01)
    store.watch(mempool)
    assert mempool.add(tx(0, 0)).added
    ops, store._ops = store._ops, {}
    store.write(ops, sync=False)  # as `run` writes a batch within the interval of the last sync

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await _flushed(store, 2)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert syncs == [False, True] and store.syncs == 1 and store.stored_pending == 1
    store.close()


def test_unsynced_batches_survive_a_kill_9_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash test of tests/node/test_mempool_persist.py with every batch written unsynced: killed with
    SIGKILL mid-stream, the store holds exactly one whole group of 200, as with synced batches."""
    unsynced = persist._WRITER.replace("store.write(ops)", "store.write(ops, sync=False)")
    assert unsynced != persist._WRITER
    monkeypatch.setattr(persist, "_WRITER", unsynced)
    persist.test_a_kill_9_mid_write_leaves_whole_batches_only(tmp_path)
