"""Fan-out of committed blocks to websocket subscribers, commit-mode waiters and metrics.

One task reads the node's block stream; every consumer gets its own bounded channel. A subscriber that
falls `SUBSCRIBER_BUFFER` blocks behind is dropped (its connection is told why) rather than slowing the
hub or growing memory without bound.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import trio

from core.block import Block
from core.header import TxResult
from core.tx import Transaction
from core.types import Hash32, Height
from node.metrics import NodeMetrics
from node.rpc.api import NodeApi

log = logging.getLogger(__name__)

SUBSCRIBER_BUFFER = 256
MAX_SUBSCRIBERS = 1024


@dataclass(frozen=True, slots=True)
class Landed:
    """Where a waited-for transaction landed."""

    tx: Transaction
    result: TxResult
    height: Height
    index: int


class EventHub:
    def __init__(self, api: NodeApi, metrics: NodeMetrics | None = None) -> None:
        self._api = api
        self._metrics = metrics
        self._subscribers: dict[int, trio.MemorySendChannel[Block]] = {}
        self._waiters: dict[bytes, list[trio.MemorySendChannel[Landed]]] = {}
        self._next_id = 0
        self._count_changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._api.committed_blocks() as blocks:
            task_status.started()
            async for block in blocks:
                self.publish(block)

    def publish(self, block: Block) -> None:
        if self._metrics is not None:
            self._metrics.observe_block(int(block.header.time), len(block.txs))
        for index, (tx, result) in enumerate(zip(block.txs, block.results, strict=False)):
            for waiter in self._waiters.pop(bytes(tx.hash), ()):
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    waiter.send_nowait(Landed(tx, result, block.height, index))  # else: the waiter gave up
                waiter.close()
        for sub_id, send in list(self._subscribers.items()):
            try:
                send.send_nowait(block)
            except trio.WouldBlock:
                log.info("dropping subscriber %d: %d blocks behind", sub_id, SUBSCRIBER_BUFFER)
                send.close()
                del self._subscribers[sub_id]
                self._changed()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                del self._subscribers[sub_id]
                self._changed()

    def subscribe(self) -> tuple[int, trio.MemoryReceiveChannel[Block]]:
        """A channel of every block committed from now on; closed if the reader falls too far behind."""
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise OverflowError(f"too many subscriptions (at most {MAX_SUBSCRIBERS})")
        send, receive = trio.open_memory_channel[Block](SUBSCRIBER_BUFFER)
        self._next_id += 1
        self._subscribers[self._next_id] = send
        self._changed()
        return self._next_id, receive

    def unsubscribe(self, sub_id: int) -> None:
        send = self._subscribers.pop(sub_id, None)
        if send is not None:
            send.close()
            self._changed()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def wait_subscribers(self, at_most: int) -> None:
        """Until at most `at_most` subscriptions are open (tests and shutdown use it)."""
        while len(self._subscribers) > at_most:
            await self._count_changed.wait()

    def _changed(self) -> None:
        self._count_changed.set()
        self._count_changed = trio.Event()

    def wait_for(self, tx_hash: Hash32) -> trio.MemoryReceiveChannel[Landed]:
        """A channel that receives where `tx_hash` lands, once; register before submitting."""
        send, receive = trio.open_memory_channel[Landed](1)
        self._waiters.setdefault(bytes(tx_hash), []).append(send)
        return receive

    def forget(self, tx_hash: Hash32, receive: trio.MemoryReceiveChannel[Landed]) -> None:
        """Drop a waiter whose caller gave up (timeout, refused transaction, closed connection)."""
        receive.close()
        waiters = self._waiters.get(bytes(tx_hash))
        if waiters is None:
            return
        alive = [s for s in waiters if not _is_closed_pair(s)]
        if alive:
            self._waiters[bytes(tx_hash)] = alive
        else:
            del self._waiters[bytes(tx_hash)]

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values())


def _is_closed_pair(send: trio.MemorySendChannel[Landed]) -> bool:
    stats = send.statistics()
    return stats.open_receive_channels == 0
