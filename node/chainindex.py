"""The explorer's indexes: a LevelDB of its own (`<home>/index`), written after each commit, off the commit
path, by a task that follows the node's event hub and reads committed blocks from the block store.

    a ‖ address ‖ height ‖ index  -> tx hash    every transaction an account sent or received (transfers)
    p ‖ height                    -> outcomes   how each validator's PoI answer for challenge `height` scored
    c ‖ model id                  -> count      inference transactions on the model that ran (status ok)
    h                             -> height     the last block indexed
    i                             -> block id   its id: an index of another chain (a reset home) is dropped

Everything here is derived from committed blocks: losing the directory loses nothing (it is rebuilt from the
block store on the next start), and the index never feeds back into consensus or the VM. The PoI outcomes are
computed with the VM's own rule (`vm.poi.score_commitments`): challenge h's commitments are the precommits of
the commit of h (carried by block h+1), scored against the output revealed in block h+2.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from typing import cast

import trio

from core.block import Block
from core.header import TxStatus
from core.store import KVStore
from core.tx import Transaction
from core.types import Address, Hash32, Height
from node.events import SubscriberTooSlow
from vm.poi import PoiOutcome, score_commitments
from vm.state import PendingPoi, PoiEntry
from vm.txs import Transfer, TxKind, decoded_payload, infer_payload

log = logging.getLogger(__name__)

_HEIGHT = b"h"
_HEAD_ID = b"i"
_ACCOUNT = b"a"
_POI = b"p"
_CALLS = b"c"
_OUTCOME_CODE = {PoiOutcome.CORRECT: 1, PoiOutcome.WRONG: 2, PoiOutcome.ABSENT: 3}
_OUTCOME_OF = {code: outcome for outcome, code in _OUTCOME_CODE.items()}
CATCH_UP_BATCH = 256
"""Blocks indexed per worker-thread call: a long catch-up yields to the event loop between batches."""

Members = Callable[[int], Sequence[tuple[Address, int]] | None]
"""The validator set (address, power) that signed a height, or None when the node no longer knows it."""


@dataclass(frozen=True, slots=True)
class AccountTx:
    height: int
    index: int
    tx_hash: Hash32


def _infer_model(tx: Transaction) -> bytes | None:
    """The model an inference called, from its payload as the VM decoded it (`vm.txs.infer_payload` keeps it on
    the transaction); None when it does not decode (cannot happen for a call that ran; never let it stop the
    index)."""
    payload = infer_payload(tx)
    return bytes(payload.model_id) if payload is not None else None


def _recipient(tx: Transaction) -> bytes | None:
    """The recipient of a transfer; None when its payload does not decode (refused in-block: only its sender is
    indexed). The payload as `vm.txs.decoded_payload` keeps it: a transaction the VM executed is decoded already."""
    payload = decoded_payload(tx)
    return bytes(payload.to) if isinstance(payload, Transfer) else None


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class ChainIndex:
    """Reads and writes the explorer's indexes. `blocks(h)` reads a committed block, `head()` the last
    committed height, `members(h)` the set that signed height h."""

    def __init__(self, db: KVStore, blocks: Callable[[int], Block | None], head: Callable[[], int],
                 members: Members) -> None:
        self.db = db
        self._blocks = blocks
        self._head = head
        self._members = members

    # ------------------------------------------------------------------------------------------ reading

    def indexed_height(self) -> int:
        raw = self.db.get(_HEIGHT)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def account_txs(self, address: Address, limit: int, before: tuple[int, int] | None = None) -> list[AccountTx]:
        """Up to `limit` transactions of `address`, newest first; `before` (height, index) continues a page."""
        prefix = _ACCOUNT + bytes(address)
        start = None if before is None else prefix + _u64(before[0]) + before[1].to_bytes(4, "big")
        out: list[AccountTx] = []
        for key, value in self.db.iterate(prefix, start=start, reverse=True):
            height = int.from_bytes(key[len(prefix):len(prefix) + 8], "big")
            index = int.from_bytes(key[len(prefix) + 8:], "big")
            if before is not None and (height, index) >= before:
                continue
            out.append(AccountTx(height, index, Hash32(value)))
            if len(out) >= limit:
                break
        return out

    def model_calls(self, model_id: Hash32) -> int:
        raw = self.db.get(_CALLS + bytes(model_id))
        return 0 if raw is None else int.from_bytes(raw, "big")

    def poi_outcomes(self, height: int) -> list[tuple[Address, PoiOutcome]] | None:
        """How each member's answer to challenge `height` scored; None until block height+2 is indexed."""
        raw = self.db.get(_POI + _u64(height))
        if raw is None:
            return None
        n = Address.SIZE
        return [(Address(raw[i:i + n]), _OUTCOME_OF[raw[i + n]]) for i in range(0, len(raw), n + 1)]

    # ------------------------------------------------------------------------------------------ writing

    def catch_up(self, limit: int = CATCH_UP_BATCH) -> int:
        """Index up to `limit` committed blocks above the indexed height; returns how many (blocking I/O)."""
        self._drop_if_foreign()
        done = 0
        previous: Block | None = None
        height = self.indexed_height()
        while done < limit and height < self._head():
            block = self._blocks(height + 1)
            if block is None:
                break
            if previous is None or int(previous.height) != height:
                previous = self._blocks(height) if height >= 1 else None
            self._index(block, previous)
            previous = block
            height += 1
            done += 1
        return done

    def _drop_if_foreign(self) -> None:
        """Delete the whole index when its last block is not this chain's block at that height."""
        height = self.indexed_height()
        if height == 0:
            return
        block = self._blocks(height) if height <= self._head() else None
        if block is not None and self.db.get(_HEAD_ID) == bytes(block.id):
            return
        log.warning("the explorer index at height %d is not of this chain; rebuilding it", height)
        pending: list[bytes] = []
        for key, _ in self.db.iterate():  # LevelDB iterates a snapshot: deleting meanwhile is safe
            pending.append(key)
            if len(pending) >= 10_000:
                self._delete(pending)
        self._delete(pending)

    def _delete(self, keys: list[bytes]) -> None:
        with self.db.write_batch() as batch:
            for key in keys:
                batch.delete(key)
        keys.clear()

    def _index(self, block: Block, previous: Block | None) -> None:
        # Two puts per transfer at blocks of a thousand or more: the loop builds each key with one
        # concatenation, reads a transaction's hash and sender once, and takes the recipient of a transfer
        # from its payload as the VM decoded it (`_recipient`).
        height = int(block.height)
        calls: dict[bytes, int] = {}
        head = _u64(height)
        account, transfer, infer, ok = _ACCOUNT, TxKind.TRANSFER, TxKind.INFER, TxStatus.OK
        with self.db.write_batch() as batch:
            put = batch.put
            for index, (tx, result) in enumerate(zip(block.txs, block.results, strict=False)):
                kind = tx.kind
                sender = tx.sender_address
                suffix = head + index.to_bytes(4, "big")
                tx_hash = tx.hash  # a bytes subclass: LevelDB copies it as it is
                put(account + sender + suffix, tx_hash)
                if kind == transfer:
                    to = _recipient(tx)
                    if to is not None and to != sender:
                        put(account + to + suffix, tx_hash)
                elif kind == infer and result.status == ok:
                    model_id = _infer_model(tx)
                    if model_id is not None:
                        calls[model_id] = calls.get(model_id, self.model_calls(Hash32(model_id))) + 1
            for model_id, count in calls.items():
                put(_CALLS + model_id, _u64(count))
            scored = self._score(block, previous)
            if scored is not None:
                put(_POI + _u64(height - 2), scored)
            put(_HEIGHT, head)
            put(_HEAD_ID, bytes(block.id))

    def _score(self, block: Block, previous: Block | None) -> bytes | None:
        """The outcomes of challenge height-2, if this block reveals its output and the previous block's last
        commit holds its commitments."""
        reveal = block.header.poi_reveal
        commit = previous.last_commit if previous is not None else None
        if reveal is None or commit is None or int(commit.height) != int(block.height) - 2:
            return None
        votes = {bytes(v.validator_address): v for v in commit.precommits}
        members = self._members(int(commit.height))
        if members is None:  # the set is too old for the node to know: score the precommits it holds
            members = [(v.validator_address, 0) for v in commit.precommits]
        entries = tuple(PoiEntry(address, power, bytes(address) in votes,
                                 votes[bytes(address)].poi if bytes(address) in votes else None)
                        for address, power in members)
        scores = score_commitments(PendingPoi(Height(int(commit.height)), entries), reveal)
        return b"".join(bytes(s.validator) + bytes((_OUTCOME_CODE[s.outcome],)) for s in scores)

    # ------------------------------------------------------------------------------------------ running

    async def run(self, committed_blocks: Callable[[], AbstractAsyncContextManager[AsyncIterator[Block]]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Catch up with the block store, then index after every commit the node's hub announces. A slow
        index is cut off by the hub and simply catches up from the store again."""
        started = False
        while True:
            try:
                async with committed_blocks() as blocks, aclosing(cast(AsyncGenerator[Block, None], blocks)):
                    # aclosing: a cancel that lands while a batch is indexed leaves the stream suspended at
                    # its yield; it is closed here, not by the garbage collector.
                    # A call that indexed less than a full batch reached the head: no second call to find
                    # that out (one worker-thread hand-off per commit, not two).
                    while await trio.to_thread.run_sync(self.catch_up) >= CATCH_UP_BATCH:
                        pass
                    if not started:
                        task_status.started()
                        started = True
                    async for _ in blocks:
                        while await trio.to_thread.run_sync(self.catch_up) >= CATCH_UP_BATCH:
                            pass
            except SubscriberTooSlow:
                log.info("the explorer index fell behind the node's hub; catching up from the block store")
