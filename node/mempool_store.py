"""The mempool across restarts: accepted-but-uncommitted transactions, and why others left.

A client told "accepted" must not find its transaction silently gone because the node (or every validator)
restarted before a block took it. `MempoolStore` keeps, in its own LevelDB at `<home>/mempool` (nothing here is
consensus data; deleting the directory loses only this),

    p ‖ tx hash                       -> pending   crc32 ‖ flags ‖ height it entered at (8) ‖ transaction
    o ‖ time ms (8) ‖ tx hash         -> outcome   crc32 ‖ reason        (own clients' transactions)
    g ‖ time ms (8) ‖ tx hash         -> outcome   crc32 ‖ reason        (gossiped ones)

(crc32 over key and the rest of the value). The mempool's listeners only note each change in a dict (the RPC
accept path pays no disk write and no fsync); a task writes what gathered as one LevelDB batch every
`flush_delay_s`, in a worker thread, and fsyncs at most once per `sync_interval_s`: a batch is written with
`sync=True` when the last synced one is that old, and when nothing new comes within that time after an
unsynced one, an empty synced write makes it durable (LevelDB's log is one file: one fsync covers every batch
before it). A batch is atomic in LevelDB's log and an unsynced one is in the OS's page cache once written, so a
kill -9 of the process at any moment leaves the store as of some earlier batch, never half a record; what was
accepted in the last `flush_delay_s` before a process crash is the window that can still be lost, and in the
last `sync_interval_s` + `flush_delay_s` before an OS crash or power loss (docs/node.md, "Mempool"). An fsync
costs ~0.3-0.4 ms of CPU (kernel journal work; docs/performance-cpu.md, "Thread hand-offs per gossip message (handoffs round)").

Bounds: pending records mirror the mempool (put when it takes a transaction, deleted when it leaves, for
whatever reason), so the store holds no more than the mempool's own `max_txs`; outcomes are capped by count
(each memory apart, as `node.events` keeps them) and by age (`outcome_max_age_s`), oldest first.

At start-up (`replay`) every pending record goes through the mempool's normal admission again (signature,
nonce and balance against the committed state, fees) with the height it first entered at, so its TTL still
counts from then; one already committed is forgotten, one expired or refused now is recorded as an outcome with
its reason. A record that does not decode (a disk fault, a foreign write) is skipped and deleted with a logged
`StorageError`; the node starts regardless. A write that fails (our disk) is retried with its changes kept;
past MAX_UNWRITTEN of them the store turns itself off until the next start instead of growing memory.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import trio
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.errors import InferchainError, StorageError
from core.tx import Transaction
from core.types import Hash32
from node.events import EventHub
from node.leveldb import LevelDBStore
from node.mempool import Mempool, RemovalReason
from p2p import offload

logger = logging.getLogger(__name__)

# What gathers between two writes (seconds): the window a kill -9 can still lose.
FLUSH_DELAY_S = 0.05
# Seconds between two fsyncs of the store at most (the window an OS crash or power loss can lose).
SYNC_INTERVAL_S = 1.0
# Outcomes kept, as node.events keeps them in memory (OWN_OUTCOME_MEMORY, OUTCOME_MEMORY), and for how long.
OWN_OUTCOMES = 100_000
OTHER_OUTCOMES = 10_000
OUTCOME_MAX_AGE_S = 24 * 3600.0
# After a failed write (a full or failing disk), the next try waits this long (seconds).
RETRY_S = 1.0
# Changes kept for a retry at most; past it (a disk that stays broken) the store turns itself off.
MAX_UNWRITTEN = 200_000
# A reason longer than this is cut (reasons are one line, well under it).
MAX_REASON_BYTES = 256

_PENDING = b"p"
_OWN = b"o"
_OTHER = b"g"
_FLAG_OWN = 1
_HEAD = struct.Struct(">IBQ")  # crc32, flags, height it entered at
_CRC = struct.Struct(">I")
_TIME = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class StoredTx:
    """One pending transaction as the store kept it."""

    tx: Transaction
    own: bool  # from this node's own client (it answered "accepted")
    added_height: int


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """Why a transaction left the mempool without a block, as the store kept it."""

    tx_hash: Hash32
    reason: str
    own: bool
    at: float  # wall time (s) it was recorded


class _Pending(NamedTuple):
    """A pending record to write (a named tuple: made once per transaction the mempool takes, cheaper than a
    frozen dataclass)."""

    tx: Transaction
    own: bool
    added_height: int


# What a flush writes: a pending transaction, an outcome's value, or None (delete the key).
_Op = _Pending | bytes | None


def _crc(key: bytes, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(key))


def encode_pending(key: bytes, item: _Pending) -> bytes:
    body = bytes((_FLAG_OWN if item.own else 0,)) + item.added_height.to_bytes(8, "big") + item.tx.encode()
    return _CRC.pack(_crc(key, body)) + body


def decode_pending(key: bytes, value: bytes) -> StoredTx:
    """The pending record at `key`; StorageError for one that is truncated, corrupt or not this key's."""
    if len(key) != 33 or len(value) < _HEAD.size:
        raise StorageError(f"mempool store: pending record {key.hex()[:18]} truncated ({len(value)} bytes)")
    crc, flags, height = _HEAD.unpack_from(value)
    if crc != _crc(key, value[4:]):
        raise StorageError(f"mempool store: pending record {key.hex()[:18]} fails its checksum")
    try:
        tx = Transaction.decode(value[_HEAD.size:])
    except InferchainError as exc:
        raise StorageError(f"mempool store: pending record {key.hex()[:18]}: {exc}") from None
    if bytes(tx.hash) != key[1:]:
        raise StorageError(f"mempool store: pending record {key.hex()[:18]} holds another transaction")
    return StoredTx(tx, bool(flags & _FLAG_OWN), height)


def _outcome_key(own: bool, at: float, tx_hash: bytes) -> bytes:
    return (_OWN if own else _OTHER) + _TIME.pack(max(0, int(at * 1000))) + bytes(tx_hash)


def encode_outcome(key: bytes, reason: str) -> bytes:
    body = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return _CRC.pack(_crc(key, body)) + body


def decode_outcome(key: bytes, value: bytes) -> StoredOutcome:
    """The outcome record at `key`; StorageError for one that is truncated or corrupt."""
    if len(key) != 41 or len(value) < _CRC.size:
        raise StorageError(f"mempool store: outcome record {key.hex()[:18]} truncated ({len(value)} bytes)")
    (crc,) = _CRC.unpack_from(value)
    body = value[_CRC.size:]
    if crc != _crc(key, body):
        raise StorageError(f"mempool store: outcome record {key.hex()[:18]} fails its checksum")
    (ms,) = _TIME.unpack_from(key, 1)
    return StoredOutcome(Hash32(key[9:]), body.decode("utf-8", "replace"), key[:1] == _OWN, ms / 1000)


class MempoolStore:
    """The mempool's pending transactions and recent outcomes, kept across restarts (see the module doc).

    `watch(mempool)` hooks it to the mempool's changes; `run` (in the node's nursery) writes them in batches;
    `close` writes what is left and closes the database. `clock` is wall time for outcomes' age (node-side
    bookkeeping only; consensus never reads it)."""

    def __init__(self, path: str | os.PathLike[str], *, flush_delay_s: float = FLUSH_DELAY_S,
                 sync_interval_s: float = SYNC_INTERVAL_S, own_outcomes: int = OWN_OUTCOMES, other_outcomes: int = OTHER_OUTCOMES,
                 outcome_max_age_s: float = OUTCOME_MAX_AGE_S, clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self._db = LevelDBStore(self.path)
        self.flush_delay_s = flush_delay_s
        self.sync_interval_s = sync_interval_s
        self._synced_at = -math.inf  # when `run` last wrote with sync (trio clock)
        self._unsynced = False  # a batch was written since it, not yet fsynced
        self.syncs = 0
        self._caps = {_OWN: own_outcomes, _OTHER: other_outcomes}
        self.outcome_max_age_s = outcome_max_age_s
        self._clock = clock
        self._ops: dict[bytes, _Op] = {}
        self._own: set[bytes] = set()  # pending hashes from our own clients (bounded by the mempool)
        self._dirty = trio.Event()
        self._counts = {_PENDING: 0, _OWN: 0, _OTHER: 0}  # records on disk (kept by the flushing thread)
        # The pending keys on disk (kept by the flushing thread with the counts; bounded by the mempool's
        # max_txs): a write knows whether a put adds a record and whether a delete has one to delete without
        # a LevelDB get per transaction.
        self._stored: set[bytes] = set()
        self.flushes = 0
        self.skipped = 0  # records that did not decode (logged, deleted)
        self._counted = False
        self.enabled = True  # False once writes failed for good (see `run`)

    # ---------------------------------------------------------------- the mempool's listeners (hot path)

    def watch(self, mempool: Mempool) -> None:
        mempool.on_added(self._added)
        mempool.on_removed(self._removed)

    def _added(self, tx_hash: Hash32, tx: Transaction, own: bool, added_height: int) -> None:
        if not self.enabled:
            return
        key = bytes(tx_hash)
        if own:
            self._own.add(key)
        self._ops[_PENDING + key] = _Pending(tx, own, added_height)
        if not self._dirty.is_set():
            self._dirty.set()

    def _removed(self, tx_hash: Hash32, tx: Transaction, reason: RemovalReason) -> None:
        if not self.enabled:
            return
        key = bytes(tx_hash)
        own = key in self._own
        self._own.discard(key)
        self._ops[_PENDING + key] = None
        if reason is not RemovalReason.COMMITTED:
            self._note_outcome(key, reason.value, own)
        if not self._dirty.is_set():
            self._dirty.set()

    def dropped(self, tx_hash: Hash32, reason: str, *, own: bool) -> None:
        """A pending record not taken back at start-up: forget it and keep why."""
        if not self.enabled:
            return
        key = bytes(tx_hash)
        self._own.discard(key)
        self._ops[_PENDING + key] = None
        self._note_outcome(key, reason, own)
        self._dirty.set()

    def forget(self, tx_hash: Hash32) -> None:
        """A pending record whose transaction is committed already."""
        if not self.enabled:
            return
        self._ops[_PENDING + bytes(tx_hash)] = None
        self._dirty.set()

    def _note_outcome(self, key: bytes, reason: str, own: bool) -> None:
        okey = _outcome_key(own, self._clock(), key)
        self._ops[okey] = encode_outcome(okey, reason)

    # ---------------------------------------------------------------- writing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write what the listeners noted, one batch per `flush_delay_s` at most, off the event loop; fsync at
        most once per `sync_interval_s`, and within it after the last unsynced batch."""
        task_status.started()
        while True:
            if self._unsynced:
                with trio.move_on_after(self.sync_interval_s):
                    await self._dirty.wait()
            else:
                await self._dirty.wait()
            if self._dirty.is_set():
                await trio.sleep(self.flush_delay_s)  # let a burst gather into one batch
            self._dirty = trio.Event()
            ops, self._ops = self._ops, {}
            # idle since an unsynced batch (no ops): an empty synced write makes it durable
            now = trio.current_time()
            sync = not ops or now - self._synced_at >= self.sync_interval_s
            try:
                await offload.run_sync(self.write, ops, sync)
                if sync:
                    self._synced_at = now
            except StorageError as exc:  # our disk's fault: keep the ops for the next try, keep the node up
                for key, op in ops.items():
                    self._ops.setdefault(key, op)  # a newer note of the same key wins
                if len(self._ops) > MAX_UNWRITTEN:  # the disk is not coming back: stop growing memory
                    logger.error("mempool store: %d changes could not be written (%s); the store is off until "
                                 "the node restarts", len(self._ops), exc)
                    self.enabled = False
                    self._ops = {}
                    return
                logger.error("mempool store: write failed, retrying: %s", exc)
                self._counted = False
                self._dirty.set()
                await trio.sleep(RETRY_S)

    def flush(self) -> None:
        """Write what is noted now, in this thread (tests; `close`)."""
        ops, self._ops = self._ops, {}
        self._dirty = trio.Event()
        self.write(ops)

    def write(self, ops: dict[bytes, _Op], sync: bool = True) -> None:
        """One atomic batch of `ops`, with the outcome bounds (count and age) applied in it; fsynced (with every
        unsynced batch before it) when `sync`."""
        self._count()
        outcomes = [key for key in ops if key[:1] != _PENDING]
        skip, delete = self._past_bounds(ops, outcomes)
        stored = self._stored
        with self._db.write_batch(sync=sync) as batch:
            put, drop = batch.put, batch.delete
            for key, op in ops.items():
                if isinstance(op, _Pending):  # the pending records: the hot path, one per transaction
                    stored.add(key)
                    put(key, encode_pending(key, op))
                elif op is None and key in stored:  # (outcome keys are never in it)
                    stored.discard(key)
                    drop(key)
            self._counts[_PENDING] = len(stored)
            for key in outcomes:
                op = ops[key]
                prefix = key[:1]
                if op is None:
                    if self._db.get(key) is not None:
                        drop(key)
                        self._counts[prefix] -= 1
                    continue
                if key in skip:
                    continue
                if self._db.get(key) is None:
                    self._counts[prefix] += 1
                put(key, op if isinstance(op, bytes) else encode_pending(key, op))
            for key in delete:
                drop(key)
                self._counts[key[:1]] -= 1
        self.flushes += 1
        if sync:
            self._unsynced = False
            self.syncs += 1
        else:
            self._unsynced = True

    def _past_bounds(self, ops: dict[bytes, _Op], outcomes: list[bytes]) -> tuple[set[bytes], list[bytes]]:
        """The outcomes past the count cap or the age limit once `ops` are in (`outcomes`: their outcome
        keys), oldest first (key order): the new ones not to write, and the stored ones to delete."""
        oldest_kept = _TIME.pack(max(0, int((self._clock() - self.outcome_max_age_s) * 1000)))
        skip: set[bytes] = set()
        delete: list[bytes] = []
        for prefix, cap in self._caps.items():
            new = sorted(k for k in outcomes if k[:1] == prefix and ops[k] is not None and self._db.get(k) is None)
            excess = self._counts[prefix] + len(new) - cap
            fresh = set(new)
            for key in heapq.merge((k for k, _ in self._db.iterate(prefix)), new):
                if excess <= 0 and key[1:9] >= oldest_kept:
                    break
                if key in fresh:
                    skip.add(key)
                else:
                    delete.append(key)
                excess -= 1
        return skip, delete

    def _count(self) -> None:
        if self._counted:
            return
        for prefix in (_OWN, _OTHER):
            self._counts[prefix] = sum(1 for _ in self._db.iterate(prefix))
        self._stored = {key for key, _ in self._db.iterate(_PENDING)}
        self._counts[_PENDING] = len(self._stored)
        self._counted = True

    def close(self) -> None:
        """Write what is left (a clean stop loses nothing) and close the database."""
        if self._db.closed:
            return
        try:
            self.flush()
        except StorageError as exc:
            logger.error("mempool store: the last write failed at close: %s", exc)
        finally:
            self._db.close()

    # ---------------------------------------------------------------- reading (start-up)

    def pending(self) -> list[StoredTx]:
        """Every pending record that decodes; the others are logged, counted in `skipped` and deleted."""
        return [item for item in self._read(_PENDING, decode_pending) if isinstance(item, StoredTx)]

    def outcomes(self) -> list[StoredOutcome]:
        """Every outcome recorded within the age limit, oldest first (own clients', then gossiped)."""
        oldest = self._clock() - self.outcome_max_age_s
        found = [item for prefix in (_OWN, _OTHER) for item in self._read(prefix, decode_outcome)
                 if isinstance(item, StoredOutcome)]
        return [o for o in found if o.at >= oldest]

    def _read(self, prefix: bytes,
              decode: Callable[[bytes, bytes], StoredTx | StoredOutcome]) -> Iterator[StoredTx | StoredOutcome]:
        bad: list[bytes] = []
        for key, value in self._db.iterate(prefix):
            try:
                yield decode(key, value)
            except StorageError as exc:
                logger.warning("%s: %s; skipped", type(exc).__name__, exc)
                bad.append(key)
        if bad:
            self.skipped += len(bad)
            with self._db.write_batch(sync=True) as batch:
                for key in bad:
                    batch.delete(key)
            self._counted = False

    # ---------------------------------------------------------------- inspection

    @property
    def stored_pending(self) -> int:
        """Pending records on disk as of the last write."""
        return self._counts[_PENDING]

    @property
    def stored_outcomes(self) -> int:
        return self._counts[_OWN] + self._counts[_OTHER]

    def collector(self) -> Collector:
        """Gauges for the node's /metrics: records on disk (what a restart would find)."""
        return _StoreCollector(self)


class _StoreCollector(Collector):
    def __init__(self, store: MempoolStore) -> None:
        self._store = store

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        s = self._store
        yield GaugeMetricFamily("inferchain_mempool_stored_txs",
                                "Pending transactions written to the mempool store (what a restart finds)",
                                value=s.stored_pending)
        yield GaugeMetricFamily("inferchain_mempool_stored_outcomes",
                                "Rejections written to the mempool store", value=s.stored_outcomes)


def restore_outcomes(store: MempoolStore, events: EventHub) -> int:
    """The outcomes kept before a restart, into the event hub (so `tx status` still says why)."""
    found = store.outcomes()
    for outcome in found:
        events.restore_rejected(outcome.tx_hash, outcome.reason, own=outcome.own)
    return len(found)


async def replay(store: MempoolStore, mempool: Mempool, events: EventHub, *,
                 is_committed: Callable[[Hash32], bool],
                 verify: Callable[[Sequence[Transaction]], object]) -> list[StoredTx]:
    """Take the stored pending transactions back through the mempool's admission (module doc); returns those
    taken, for the caller to gossip again. `verify` checks the signatures into the cache (a worker thread)."""
    stored = await trio.to_thread.run_sync(store.pending)
    stored.sort(key=lambda s: (int(s.tx.nonce), s.added_height))  # each sender's nonces in order
    await trio.to_thread.run_sync(verify, [s.tx for s in stored])
    ttl = mempool.config.ttl_heights
    height = mempool.height
    taken: list[StoredTx] = []
    for i, item in enumerate(stored):
        if i and i % 64 == 0:
            await trio.lowlevel.checkpoint()
        tx_hash = item.tx.hash
        if is_committed(tx_hash):
            store.forget(tx_hash)
            continue
        if height - item.added_height > ttl:
            reason = RemovalReason.EXPIRED.value
        else:
            result = mempool.add(item.tx, from_client=item.own, added_height=item.added_height)
            if result.accepted:
                if item.own:
                    events.own_accepted(tx_hash)
                taken.append(item)
                continue
            reason = f"dropped at restart: {result.reason}"
        if item.own:
            events.own_accepted(tx_hash)
        events.tx_rejected(tx_hash, reason)
        store.dropped(tx_hash, reason, own=item.own)
    dropped = len(stored) - len(taken)
    if stored:
        logger.info("mempool store: %d transactions pending before the restart taken back, %d not%s", len(taken),
                    dropped, f" ({store.skipped} unreadable records skipped)" if store.skipped else "")
    return taken


__all__ = ["FLUSH_DELAY_S", "MempoolStore", "StoredOutcome", "StoredTx", "replay", "restore_outcomes"]
