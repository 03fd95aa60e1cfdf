"""Transaction batcher: gossip transactions in batches of ~256 KiB, never one message per transaction.

py-libp2p's cost is per message (~3 ms of CPU per delivery), not per byte (docs/design.md §5.2), so batching is
what lets gossip carry thousands of transactions per second. Two clocks bound a batch: `max_delay_s` after its
first transaction (what a lone transaction waits on an idle node), and `min_interval_s` after the previous
publish (under steady load batches go out at most that often, so they grow with the load instead of staying
at one delay's worth: every message costs each of the other validators its transport, its decode and its
relays, docs/performance-cpu.md "CPU per transaction"); after a batch of `busy_txs` or more, the interval is
`busy_interval_s` (a load that fills such batches, not a light one, waits for it). A batch that reaches
`target_bytes` goes at once.

Items are numbered in the order they are added (`add` returns the number); after each publish `on_published`
hears how many items are out (published, or left out as a batch's second copy), so the node knows when its
own clients' transactions went out (node.proposal_hold).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio

from core.tx import Transaction
from p2p.limits import TX_BATCH_MAX, TX_BATCH_TARGET, TXS_PER_BATCH_MAX

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (a libp2p dependency) export it only here

Publish = Callable[[bytes], Awaitable[object]]
OnPublished = Callable[[int], None]

# Under load, at most one batch per this many seconds per node (see the module doc) ...
MIN_INTERVAL_S = 0.1
# ... and after a batch of at least BUSY_TXS transactions (a node taking ~300 tx/s or more from its clients),
# at most one per BUSY_INTERVAL_S: twice the transactions per message, so half the messages (and their copies)
# per transaction, where the load is high enough that every message's cost counts. A lighter load never
# reaches it and waits no longer than before (docs/p2p.md, "Topics and message types").
BUSY_TXS = 32
BUSY_INTERVAL_S = 0.2


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_tx_batch(encoded_txs: Sequence[bytes]) -> bytes:
    """The canonical TxBatch bytes built from already-encoded transactions (msgpack nests by concatenation),
    so a batch costs no re-encoding."""
    return _array_header(1) + _array_header(len(encoded_txs)) + b"".join(encoded_txs)


class TxBatcher:
    """Collects transactions and publishes a batch when it reaches `target_bytes`, or when both `max_delay_s`
    have passed since its first transaction and `min_interval_s` since the previous publish (`busy_interval_s`
    when that batch held at least `busy_txs` transactions). `add` waits when `capacity` transactions are
    already queued."""

    def __init__(self, publish: Publish, *, target_bytes: int = TX_BATCH_TARGET, max_delay_s: float = 0.1,
                 min_interval_s: float = MIN_INTERVAL_S, busy_txs: int = BUSY_TXS,
                 busy_interval_s: float = BUSY_INTERVAL_S, capacity: int = 16384,
                 on_published: OnPublished | None = None) -> None:
        self._publish = publish
        self._on_published = on_published
        self._target = target_bytes
        self._max_delay = max_delay_s
        self._min_interval = min_interval_s
        self._busy_txs = busy_txs
        self._busy_interval = max(busy_interval_s, min_interval_s)
        self._send, self._receive = trio.open_memory_channel[bytes](capacity)
        self.batches = 0
        self.txs = 0
        self.added = 0  # items added so far: the next one's number
        self.taken = 0  # items taken from the queue so far (FIFO)

    async def add(self, tx: Transaction | bytes) -> int:
        """Queue one transaction; returns its item number (see `on_published`)."""
        seq = self.added
        self.added += 1
        await self._send.send(tx.encode() if isinstance(tx, Transaction) else bytes(tx))
        return seq

    async def add_many(self, txs: Sequence[Transaction | bytes]) -> int:
        """Queue `txs` in order under consecutive item numbers; returns the first. One schedule point for the
        lot while the queue has room (`add` costs one per transaction: a pass of the event loop each, with its
        epoll call, which was most of an RPC batch's own cost, docs/performance-cpu.md, "The RPC entry and the commit's mempool update")."""
        first = self.added
        for tx in txs:
            self.added += 1
            data = tx.encode() if isinstance(tx, Transaction) else bytes(tx)
            try:
                self._send.send_nowait(data)
            except trio.WouldBlock:
                await self._send.send(data)  # full: wait for room, as `add` does
        await trio.lowlevel.checkpoint()
        return first

    async def _next(self) -> bytes:
        """The next queued item, without a schedule point while items are waiting (the batch loop ends at
        the target size or TXS_PER_BATCH_MAX, so it yields at least once per batch)."""
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            return await self._receive.receive()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        carry: bytes | None = None
        last = -math.inf
        interval = self._min_interval  # after the previous batch: longer after a large one
        while True:
            if carry is not None:
                first = carry
            else:
                first = await self._next()
                self.taken += 1
            carry = None
            batch, size = [first], len(first)
            # Peers refuse (and penalize) a batch holding one transaction twice: a second copy is left out.
            in_batch = {first}
            with trio.move_on_at(max(trio.current_time() + self._max_delay, last + interval)):
                while size < self._target and len(batch) < TXS_PER_BATCH_MAX:
                    tx = await self._next()
                    self.taken += 1
                    if tx in in_batch:
                        continue
                    if size + len(tx) > min(self._target, TX_BATCH_MAX - 16):
                        carry = tx
                        break
                    batch.append(tx)
                    in_batch.add(tx)
                    size += len(tx)
            await self._publish(encode_tx_batch(batch))
            last = trio.current_time()
            interval = self._busy_interval if len(batch) >= self._busy_txs else self._min_interval
            self.batches += 1
            self.txs += len(batch)
            if self._on_published is not None:
                # Items come out in order; a carried one (taken last) waits for the next batch.
                self._on_published(self.taken - (1 if carry is not None else 0))
