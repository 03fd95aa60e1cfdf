"""The block store: committed blocks by height and id, the commit that finalized each, and a tx index.

Writes are only staged into a caller's batch (`stage`), the same batch the application stages its state
writes into, so a crash leaves the node at block h or h+1, never between (docs/design.md §6). The in-memory head
moves only after that batch committed (`advance`).

Key layout (each in its own KeySpace):
    META              b"chain_id" -> utf-8; b"head" -> height(8) ‖ block id(32); b"base" -> height(8);
                      b"next_proposers" -> the proposer priorities of height head+1 (consensus's encoding)
    BLOCKS_BY_HEIGHT  height(8)   -> Block bytes
    BLOCK_HASH_INDEX  block id    -> height(8)
    COMMITS           height(8)   -> the Commit this node saw finalize that block
    TX_INDEX          tx hash     -> height(8) ‖ index(4)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from core.block import Block
from core.errors import DecodeError, StorageError
from core.hashing import ZERO_HASH
from core.store import KeySpace, KVStore, WriteBatch, space
from core.types import Hash32, Height
from core.votes import Commit

_HEAD = b"head"
_BASE = b"base"
_CHAIN_ID = b"chain_id"
_NEXT_PROPOSERS = b"next_proposers"
# Decoded blocks kept for readers (the RPC, the next height's start): the newest, at most _CACHE_BLOCKS of them
# and, past the newest _CACHE_MIN_BLOCKS, at most _CACHE_TXS transactions in all. Everything a cached block holds
# (transactions, payloads, results: ~10 tracked objects each) is walked by every middle and full collection
# of the cyclic garbage collector, so the cache is bounded by what it holds, not only by its blocks: 32 blocks of
# ~2,500 inferences kept ~80,000 transactions' objects alive for ~45 s after their commit
# (docs/performance-cpu.md, "Garbage collection under the inference load (gcinf)").
_CACHE_BLOCKS = 32
_CACHE_MIN_BLOCKS = 2
_CACHE_TXS = 8_192
_T = TypeVar("_T", Block, Commit)


def height_key(height: int) -> bytes:
    return int(height).to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: Height
    index: int


class BlockStore:
    """Committed chain data in the node's LevelDB. Reads are safe from worker threads."""

    def __init__(self, db: KVStore, chain_id: str) -> None:
        self._db = db
        self._meta = space(db, KeySpace.META)
        self._blocks = space(db, KeySpace.BLOCKS_BY_HEIGHT)
        self._by_hash = space(db, KeySpace.BLOCK_HASH_INDEX)
        self._commits = space(db, KeySpace.COMMITS)
        self._txs = space(db, KeySpace.TX_INDEX)
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._cached_txs = 0  # transactions in the cached blocks
        stored_chain = self._meta.get(_CHAIN_ID)
        if stored_chain is not None and stored_chain.decode() != chain_id:
            raise StorageError(f"database belongs to chain {stored_chain.decode()!r}, not {chain_id!r}")
        self.chain_id = chain_id
        head = self._meta.get(_HEAD)
        if head is None:
            self._height, self._head_id = Height(0), ZERO_HASH
        else:
            if len(head) != 40:
                raise StorageError("corrupt block store head record")
            self._height, self._head_id = Height(int.from_bytes(head[:8], "big")), Hash32(head[8:])
        base = self._meta.get(_BASE)
        self._base = Height(int.from_bytes(base, "big")) if base is not None else Height(min(1, self._height))

    # ---------------------------------------------------------------- head

    @property
    def height(self) -> Height:
        """Height of the last committed block; 0 before the first."""
        return self._height

    @property
    def head_id(self) -> Hash32:
        return self._head_id

    @property
    def base(self) -> Height:
        """Lowest height whose block this store holds (1 unless pruned; 0 when empty)."""
        return self._base

    # ---------------------------------------------------------------- writes

    def stage(self, batch: WriteBatch, block: Block, commit: Commit, next_proposers: bytes | None = None) -> None:
        """Put `block`, its finalizing `commit`, its tx index and the proposer priorities of the next height
        into `batch` (opened on the root store).

        Refuses a block that does not extend the head: the store only ever grows by one block at a time.
        """
        h = block.height
        if h != self._height + 1:
            raise StorageError(f"block {h} does not follow the stored head {self._height}")
        if block.header.last_block_id != self._head_id and self._height > 0:
            raise StorageError(f"block {h} does not extend the stored head {self._head_id.hex()[:16]}")
        if commit.height != h or commit.block_id != block.id:
            raise StorageError(f"commit {commit.height}/{commit.block_id.hex()[:16]} is not for block {h}")
        key = height_key(h)
        blocks = self._blocks.bind(batch)
        blocks.put(key, block.encode())
        self._by_hash.bind(batch).put(block.id, key)
        self._commits.bind(batch).put(key, commit.encode())
        put, prefix = batch.put, self._txs.prefix  # one put per transaction: no view wrapper per key
        for index, tx in enumerate(block.txs):
            put(prefix + tx.hash, key + index.to_bytes(4, "big"))
        meta = self._meta.bind(batch)
        meta.put(_HEAD, key + block.id)
        if next_proposers is not None:
            meta.put(_NEXT_PROPOSERS, next_proposers)
        if self._height == 0:
            meta.put(_CHAIN_ID, self.chain_id.encode())
            meta.put(_BASE, key)

    def advance(self, block: Block) -> None:
        """Move the in-memory head after the batch holding `block` committed."""
        with self._lock:
            if self._height == 0:
                self._base = block.height
            self._height, self._head_id = block.height, block.id
            self._remember(block)

    def save(self, block: Block, commit: Commit, *, sync: bool = True) -> None:
        """Stage and commit `block` alone (no state writes): for tests and tools, not the node's commit path."""
        with self._db.write_batch(sync=sync) as batch:
            self.stage(batch, block, commit)
        self.advance(block)

    def reload_head(self) -> None:
        """Re-read the head from disk (after a failed batch, to drop anything assumed in memory)."""
        head = self._meta.get(_HEAD)
        with self._lock:
            if head is None:
                self._height, self._head_id = Height(0), ZERO_HASH
            else:
                self._height, self._head_id = Height(int.from_bytes(head[:8], "big")), Hash32(head[8:])
            self._cache.clear()
            self._cached_txs = 0

    # ---------------------------------------------------------------- reads

    def next_proposers(self) -> bytes | None:
        """The encoded proposer priorities of height `height + 1`, stored with the head block."""
        return self._meta.get(_NEXT_PROPOSERS)

    def stored_next_proposers(self) -> tuple[Height, bytes | None]:
        """The stored head's height with the proposer priorities of the height after it, read as one pair.

        A commit writes both in one batch but moves `height` only after it (from a worker thread), so
        `height` and `next_proposers()` read meanwhile belong to different heights; this reads the head
        record around the priorities until both reads agree."""
        while True:
            before = self._meta.get(_HEAD)
            raw = self._meta.get(_NEXT_PROPOSERS)
            if self._meta.get(_HEAD) == before:
                return Height(0 if before is None else int.from_bytes(before[:8], "big")), raw

    def block_bytes(self, height: int) -> bytes | None:
        if not 1 <= height <= self._height:
            return None
        return self._blocks.get(height_key(height))

    def block(self, height: int) -> Block | None:
        """The committed block at `height`; None above the head, as `block_bytes` and `commit` answer, so that
        a reader never gets a block whose commit it cannot read (the cache is checked against the head too)."""
        with self._lock:
            if not 1 <= height <= self._height:
                return None
            cached = self._cache.get(height)
        if cached is not None:
            return cached
        raw = self.block_bytes(height)
        if raw is None:
            return None
        block = _decode(Block, raw, f"block {height}")
        with self._lock:
            if height <= self._height:  # a head reloaded lower meanwhile must not find it cached
                self._remember(block)
        return block

    def block_by_id(self, block_id: bytes) -> Block | None:
        height = self.height_of(block_id)
        return None if height is None else self.block(height)

    def height_of(self, block_id: bytes) -> Height | None:
        raw = self._by_hash.get(bytes(block_id))
        return None if raw is None else Height(int.from_bytes(raw, "big"))

    def commit_bytes(self, height: int) -> bytes | None:
        if not 1 <= height <= self._height:
            return None
        return self._commits.get(height_key(height))

    def commit(self, height: int) -> Commit | None:
        """The commit this node saw finalize block `height` (block height+1 carries a canonical one too)."""
        raw = self.commit_bytes(height)
        return None if raw is None else _decode(Commit, raw, f"commit {height}")

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        raw = self._txs.get(bytes(tx_hash))
        if raw is None:
            return None
        if len(raw) != 12:
            raise StorageError("corrupt transaction index entry")
        return TxLocation(Height(int.from_bytes(raw[:8], "big")), int.from_bytes(raw[8:], "big"))

    def _remember(self, block: Block) -> None:
        cache = self._cache
        old = cache.pop(int(block.height), None)
        cache[int(block.height)] = block
        self._cached_txs += len(block.txs) - (len(old.txs) if old is not None else 0)
        while len(cache) > _CACHE_BLOCKS or (len(cache) > _CACHE_MIN_BLOCKS and self._cached_txs > _CACHE_TXS):
            _, dropped = cache.popitem(last=False)
            self._cached_txs -= len(dropped.txs)

    @property
    def cached_blocks(self) -> int:
        """Decoded blocks held in memory now (bounded by _CACHE_BLOCKS and _CACHE_TXS)."""
        return len(self._cache)


def _decode(cls: type[_T], raw: bytes, what: str) -> _T:
    try:
        return cls.decode(raw)
    except DecodeError as exc:
        raise StorageError(f"stored {what} is corrupt: {exc}") from exc
