"""The mempool store (node/mempool_store.py) over real LevelDB: what the mempool holds is what a restart finds,
bounded as the mempool is; replay goes through the mempool's admission again; outcomes are bounded by count
and age; a corrupt record is skipped with a logged StorageError; a kill -9 mid-write leaves whole batches."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import plyvel
import pytest
import trio

from core.types import Amount
from node.config import MempoolSection
from node.events import EventHub, TxState
from node.mempool import MEMPOOL_FULL, Mempool, RemovalReason
from node.mempool_store import MempoolStore, _Pending, encode_pending, replay, restore_outcomes
from tests.node.test_mempool import CHAIN, KEYS, Accounts, tx

pytestmark = pytest.mark.node


def _keys(path: Path, prefix: bytes) -> list[bytes]:
    db = plyvel.DB(str(path))
    try:
        return [k for k, _ in db.iterator(prefix=prefix)]
    finally:
        db.close()


def _pool(accounts: Accounts, **config: int) -> Mempool:
    return Mempool(CHAIN, accounts, MempoolSection(**config))


async def _replay(store: MempoolStore, mempool: Mempool, events: EventHub,
                  committed: frozenset[bytes] = frozenset()) -> list[bytes]:
    taken = await replay(store, mempool, events, is_committed=lambda h: bytes(h) in committed,
                         verify=lambda txs: [mempool.sig_cache.verify(t) for t in txs])
    return [bytes(s.tx.hash) for s in taken]


def test_the_store_follows_the_mempool_and_a_restart_takes_the_pending_back(tmp_path: Path) -> None:
    accounts = Accounts()
    mempool = _pool(accounts)
    store = MempoolStore(tmp_path / "mempool")
    store.watch(mempool)
    own = [tx(0, n) for n in range(3)]
    gossiped = [tx(1, 0), tx(2, 0)]
    for t in own:
        assert mempool.add(t, from_client=True).added
    for t in gossiped:
        assert mempool.add(t).added
    replacement = tx(2, 0, fee=2000)
    assert mempool.add(replacement).added  # the first of sender 2 leaves: "replaced"
    assert store.stored_pending == 0  # nothing written on the accept path
    store.flush()
    assert store.stored_pending == len(mempool) == 5
    mempool.update(1, [own[0]])  # committed: its record goes, with no outcome
    store.flush()
    assert store.stored_pending == 4 and store.stored_outcomes == 1
    store.close()

    mempool2 = _pool(accounts)
    mempool2.update(1, [])
    accounts.table[bytes(KEYS[0].address)].nonce = 1
    store2 = MempoolStore(tmp_path / "mempool")
    store2.watch(mempool2)
    events = EventHub()
    assert restore_outcomes(store2, events) == 1
    taken = trio.run(_replay, store2, mempool2, events)
    assert set(taken) == {bytes(own[1].hash), bytes(own[2].hash), bytes(gossiped[0].hash), bytes(replacement.hash)}
    assert len(mempool2) == 4 and mempool2.is_gapped(own[1].hash) is False
    assert events.own_pending == 2  # the own clients' ones are remembered as such again
    outcome = events.outcome(tx(2, 0).hash)
    assert outcome is not None and outcome.state is TxState.REJECTED and outcome.reason == RemovalReason.REPLACED.value
    store2.close()


def test_replay_is_the_normal_admission_expired_stale_and_forged_ones_are_dropped_with_a_reason(
        tmp_path: Path) -> None:
    accounts = Accounts()
    mempool = _pool(accounts, ttl_heights=10, gapped_ttl_heights=10)
    store = MempoolStore(tmp_path / "mempool")
    store.watch(mempool)
    mempool.update(5, [])
    old = tx(0, 0)
    assert mempool.add(old, from_client=True).added  # entered at height 5
    mempool.update(8, [])
    young, stale, done = tx(1, 0), tx(2, 0), tx(3, 0)
    for t in (young, stale, done):
        assert mempool.add(t, from_client=True).added  # entered at height 8
    forged = tx(4, 0).replace(fee=Amount(999_999))  # the signature no longer fits
    store.close()
    db = plyvel.DB(str(tmp_path / "mempool"))  # a record for a transaction whose signature does not verify
    key = b"p" + bytes(forged.hash)
    db.put(key, encode_pending(key, _Pending(forged, True, 8)))
    db.close()

    accounts.table[bytes(KEYS[2].address)].nonce = 1  # sender 2's nonce 0 was used by another transaction
    mempool2 = _pool(accounts, ttl_heights=10, gapped_ttl_heights=10)
    mempool2.update(16, [])  # the restart finds height 16: `old` is 11 heights old, `young` 8
    store2 = MempoolStore(tmp_path / "mempool")
    store2.watch(mempool2)
    events = EventHub()
    taken = trio.run(_replay, store2, mempool2, events, frozenset({bytes(done.hash)}))
    assert taken == [bytes(young.hash)]
    assert mempool2.is_gapped(young.hash) is False
    # It keeps its first height: it expires at height 8 + 10, not 16 + 10.
    trio.run(_recheck_at, mempool2, 19)
    assert young.hash not in mempool2

    def reason(t: object) -> str:
        outcome = events.outcome(t.hash)  # type: ignore[attr-defined]
        assert outcome is not None and outcome.state is TxState.REJECTED
        return outcome.reason

    assert reason(old) == RemovalReason.EXPIRED.value
    assert reason(stale).startswith("dropped at restart: nonce 0 already used")
    assert reason(forged) == "dropped at restart: invalid signature"
    assert events.outcome(done.hash) is None  # committed: the block store answers for it
    store2.close()
    assert _keys(tmp_path / "mempool", b"p") == []  # young expired at the recheck; the rest dropped
    assert len(_keys(tmp_path / "mempool", b"o")) == 4  # old, stale, forged, young: own clients' outcomes


async def _recheck_at(mempool: Mempool, height: int) -> None:
    mempool.update(height, [])
    await mempool.recheck()


def test_a_corrupt_or_truncated_record_is_skipped_with_a_logged_storage_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    accounts = Accounts()
    mempool = _pool(accounts)
    store = MempoolStore(tmp_path / "mempool")
    store.watch(mempool)
    good, cut, flipped = tx(0, 0), tx(1, 0), tx(2, 0)
    for t in (good, cut, flipped):
        assert mempool.add(t, from_client=True).added
    assert mempool.add(tx(3, 0)).added and mempool.add(tx(3, 0, fee=5000)).added  # an outcome: replaced
    store.close()
    db = plyvel.DB(str(tmp_path / "mempool"))
    cut_key, flipped_key = b"p" + bytes(cut.hash), b"p" + bytes(flipped.hash)
    db.put(cut_key, db.get(cut_key)[:20])
    value = bytearray(db.get(flipped_key))
    value[-1] ^= 1
    db.put(flipped_key, bytes(value))
    db.put(b"p" + b"\x07" * 3, b"junk")
    outcome_key = next(k for k, _ in db.iterator(prefix=b"g"))
    db.put(outcome_key, b"\x00")
    db.close()

    mempool2 = _pool(accounts)
    store2 = MempoolStore(tmp_path / "mempool")
    store2.watch(mempool2)
    events = EventHub()
    with caplog.at_level(logging.WARNING, logger="node.mempool_store"):
        assert restore_outcomes(store2, events) == 0
        taken = trio.run(_replay, store2, mempool2, events)
    assert set(taken) == {bytes(good.hash), bytes(tx(3, 0, fee=5000).hash)}
    assert store2.skipped == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("StorageError: mempool store:" in m and m.endswith("skipped") for m in messages) == 4
    assert any("truncated" in m for m in messages) and any("checksum" in m for m in messages)
    store2.close()
    assert len(_keys(tmp_path / "mempool", b"p")) == 2  # the bad records are gone


def test_attack_a_flood_cannot_grow_the_store_past_the_mempools_bounds(tmp_path: Path) -> None:
    """Every sender floods with rising fees into a mempool of 16: each newcomer evicts a cheaper one. The store
    holds at most the mempool's 16 pending records and the outcome cap, however many came."""
    accounts = Accounts()
    mempool = _pool(accounts, max_txs=16, max_txs_per_sender=4)
    store = MempoolStore(tmp_path / "mempool", own_outcomes=8, other_outcomes=8)
    store.watch(mempool)
    refused = 0
    for round_ in range(20):
        for key in range(len(KEYS)):
            for nonce in range(4):
                result = mempool.add(tx(key, nonce, fee=1000 + 10 * round_ + key), from_client=key % 2 == 0)
                refused += result.reason == MEMPOOL_FULL
        store.flush()
        assert store.stored_pending == len(mempool) <= 16
        assert store.stored_outcomes <= 16
    assert len(mempool) == 16
    store.close()
    assert len(_keys(tmp_path / "mempool", b"p")) == 16
    assert len(_keys(tmp_path / "mempool", b"o")) == 8 and len(_keys(tmp_path / "mempool", b"g")) == 8


def test_outcomes_are_forgotten_past_their_age(tmp_path: Path) -> None:
    now = [1_000_000.0]
    accounts = Accounts()
    mempool = _pool(accounts)
    store = MempoolStore(tmp_path / "mempool", outcome_max_age_s=60, clock=lambda: now[0])
    store.watch(mempool)
    first = tx(0, 0)
    assert mempool.add(first).added and mempool.add(tx(0, 0, fee=5000)).added  # "replaced" at t
    store.flush()
    now[0] += 30
    second = tx(1, 0)
    assert mempool.add(second).added and mempool.add(tx(1, 0, fee=5000)).added  # at t + 30
    store.flush()
    assert [o.tx_hash for o in store.outcomes()] == [first.hash, second.hash]
    now[0] += 45  # the first is 75 s old, the second 45 s
    assert [o.tx_hash for o in store.outcomes()] == [second.hash]
    store.flush()  # any write prunes what aged out
    assert store.stored_outcomes == 1
    store.close()
    assert len(_keys(tmp_path / "mempool", b"g")) == 1


_WRITER = textwrap.dedent("""
    import sys
    from core.keys import PrivateKey
    from core.types import Address, Amount
    from node.mempool_store import MempoolStore, _Pending
    from vm.txs import Transfer, build_tx

    key = PrivateKey.derive("mempool store crash", "account", 0)
    groups = [[build_tx(key, Transfer(Address(bytes(20)), Amount(1)), chain_id="crash", nonce=g * 1000 + i,
                        gas_limit=1000, fee=1000) for i in range(200)] for g in range(4)]
    store = MempoolStore(sys.argv[1])
    for round_ in range(1_000_000):
        g = round_ % 4
        ops = {b"p" + bytes(t.hash): _Pending(t, True, round_) for t in groups[g]}
        ops.update({b"p" + bytes(t.hash): None for t in groups[(g - 1) % 4]})
        store.write(ops)
        if round_ == 2:
            print("writing", flush=True)
""")


def test_a_kill_9_mid_write_leaves_whole_batches_only(tmp_path: Path) -> None:
    """A process rewrites the store in batches of 400 (200 records in, the previous 200 out) as fast as it can
    and is killed with SIGKILL mid-stream: the store then holds exactly one whole group, every record intact."""
    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "mempool"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"writing\n"
        os.kill(proc.pid, signal.SIGKILL)  # somewhere in the stream of batches
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    store = MempoolStore(path)
    try:
        found = store.pending()
        assert store.skipped == 0
        nonces = sorted(int(s.tx.nonce) for s in found)
        assert len(nonces) == 200
        group = nonces[0] // 1000
        assert nonces == [group * 1000 + i for i in range(200)]
        assert len({s.added_height for s in found}) == 1
    finally:
        store.close()


def test_a_clean_close_writes_what_gathered_since_the_last_flush(tmp_path: Path) -> None:
    mempool = _pool(Accounts())
    store = MempoolStore(tmp_path / "mempool", flush_delay_s=3600)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            assert mempool.add(tx(0, 0)).added
            await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    store.watch(mempool)
    trio.run(main)
    store.close()
    assert _keys(tmp_path / "mempool", b"p") == [b"p" + bytes(tx(0, 0).hash)]


def test_a_failed_write_keeps_the_changes_for_the_next_try_and_the_task_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database goes away under the writer (what a failing disk looks like to it: a StorageError on
    every call): the task logs, keeps what it could not write and tries again; once the disk is back the
    record lands."""
    from node.leveldb import LevelDBStore
    from node.mempool_store import RETRY_S

    mempool = _pool(Accounts())
    store = MempoolStore(tmp_path / "mempool", flush_delay_s=0.01)
    store.watch(mempool)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            store._db.close()
            assert mempool.add(tx(0, 0)).added
            with trio.fail_after(30):
                while not any("write failed" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            store._db = LevelDBStore(tmp_path / "mempool")  # the disk is back
            with trio.fail_after(30 + RETRY_S):
                while store.stored_pending != 1:  # noqa: ASYNC110 - the writer's count, no event
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="node.mempool_store"):
        trio.run(main)
    store.close()
    assert _keys(tmp_path / "mempool", b"p") == [b"p" + bytes(tx(0, 0).hash)]


def test_a_disk_that_stays_broken_turns_the_store_off_instead_of_growing_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import node.mempool_store

    monkeypatch.setattr(node.mempool_store, "MAX_UNWRITTEN", 5)
    mempool = _pool(Accounts())
    store = MempoolStore(tmp_path / "mempool", flush_delay_s=0.01)
    store.watch(mempool)

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                store._db.close()
                for key in range(len(KEYS)):
                    assert mempool.add(tx(key, 0)).added
                # run() returns by itself once it gives up; the nursery then closes

    with caplog.at_level(logging.ERROR, logger="node.mempool_store"):
        trio.run(main)
    assert not store.enabled and not store._ops
    assert any("the store is off until the node restarts" in r.getMessage() for r in caplog.records)
    assert mempool.add(tx(0, 1)).added and not store._ops  # the mempool runs on; nothing more is noted
    store.close()


def test_records_written_before_a_restart_are_deleted_and_counted_once(tmp_path: Path) -> None:
    """The store knows which pending records are on disk without reading each one: the ones a previous run
    wrote too (read once at the first write), a record rewritten is counted once, a delete of one never
    written writes nothing."""
    path = tmp_path / "mempool"
    txs = [tx(0, n) for n in range(4)]
    store = MempoolStore(path)
    for t in txs:
        store._added(t.hash, t, False, 1)
    store.flush()
    store.close()
    store2 = MempoolStore(path)
    store2.forget(txs[0].hash)  # written by the run before
    store2.forget(tx(1, 0).hash)  # never written
    store2._added(txs[1].hash, txs[1], True, 2)  # written again
    store2.flush()
    assert store2.stored_pending == 3
    store2.close()
    assert sorted(_keys(path, b"p")) == sorted(b"p" + bytes(t.hash) for t in txs[1:])
    store3 = MempoolStore(path)
    assert {bytes(s.tx.hash): (s.own, s.added_height) for s in store3.pending()} == {
        bytes(txs[1].hash): (True, 2), bytes(txs[2].hash): (False, 1), bytes(txs[3].hash): (False, 1)}
    store3.close()
