"""Events for readers outside consensus: a stream of committed blocks, and waiting for one transaction.

The node's one event hub: the RPC's websocket subscriptions, its commit-mode waits and its block metrics all
read from here. The commit path only ever calls non-blocking methods here: a subscriber that falls behind by
more than its buffer is cut off (its stream ends with `SubscriberTooSlow`), it never slows the chain down.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from core.block import Block
from core.header import TxResult
from core.types import Hash32, Height

logger = logging.getLogger(__name__)

SUBSCRIBER_BUFFER = 256
MAX_SUBSCRIBERS = 1024
# Rejections remembered for `tx_status` and commit-mode waits, of any transaction (gossiped ones included);
# past it the older half is forgotten.
OUTCOME_MEMORY = 10_000
# Rejections remembered of the transactions this node accepted from its own clients (a client asks the node
# that answered "accepted"). Kept apart: an overloaded node rejects more gossiped transactions than the memory
# above holds, which had its own clients' evictions read "unknown" (docs/performance-rounds.md, "The devnet at the
# end of the CPU round"). ~150 bytes each.
OWN_OUTCOME_MEMORY = 100_000


class SubscriberTooSlow(Exception):
    """The subscriber did not keep up with committed blocks and was dropped."""


class TxState(enum.Enum):
    COMMITTED = "committed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class TxOutcome:
    tx_hash: Hash32
    state: TxState
    height: Height | None = None
    index: int | None = None
    result: TxResult | None = None
    reason: str = ""  # for REJECTED: why it left the mempool (e.g. "rejected: validators disagreed")


class _Subscriber:
    __slots__ = ("dropped", "receive", "send")

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[Block](SUBSCRIBER_BUFFER)
        self.dropped = False


class EventHub:
    def __init__(self, *, outcome_memory: int = OUTCOME_MEMORY, own_memory: int = OWN_OUTCOME_MEMORY) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._waiters: dict[bytes, list[trio.Event]] = {}
        self._outcomes: dict[bytes, TxOutcome] = {}
        self._outcome_order: list[bytes] = []
        self.outcome_memory = outcome_memory
        # This node's own clients' transactions: pending ones (it answered "accepted"), then their rejections,
        # kept apart so that a flood of rejected gossip cannot push them out of the memory above.
        self._own_pending: dict[bytes, None] = {}
        self._own_rejected: OrderedDict[bytes, TxOutcome] = OrderedDict()
        self.own_memory = own_memory
        self._subscriber_left = trio.Event()
        # Called with each committed block's transaction count after its readers were told (the node process's
        # collector setting hooks in here: node/gctune.py, CommitFreezer); they must not raise.
        self.commit_hooks: list[Callable[[int], None]] = []

    # ---------------------------------------------------------------- publishing (commit path, never blocks)

    def block_committed(self, block: Block) -> None:
        txs = block.txs
        own = self._own_pending
        if own:  # the block store answers for these from now on
            forget = own.pop
            for tx in txs:
                forget(tx.hash, None)  # a Hash32 finds its bytes key: no copy per transaction
        waiters = self._waiters
        if waiters:
            # An outcome only for a transaction someone waits for: the block store has every other commit
            # (no record per committed transaction: a block of inferences holds thousands).
            for index, tx in enumerate(txs):
                if tx.hash in waiters:
                    self._resolve(TxOutcome(tx.hash, TxState.COMMITTED, block.height, index, block.results[index]))
        for sub in list(self._subscribers):
            try:
                sub.send.send_nowait(block)
            except trio.WouldBlock:
                logger.warning("block subscriber fell %d blocks behind; dropping it", SUBSCRIBER_BUFFER)
                sub.dropped = True
                sub.send.close()
                self._drop(sub)
            except trio.ClosedResourceError:
                self._drop(sub)
        for hook in self.commit_hooks:
            hook(len(txs))

    def _drop(self, sub: _Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            self._subscriber_left.set()
            self._subscriber_left = trio.Event()

    def own_accepted(self, tx_hash: Hash32) -> None:
        """This node told one of its own clients that `tx_hash` was accepted: remember its fate for longer."""
        key = bytes(tx_hash)
        self._own_pending[key] = None
        while len(self._own_pending) > self.own_memory:  # only if transactions leave by a path not seen here
            del self._own_pending[next(iter(self._own_pending))]

    def tx_rejected(self, tx_hash: Hash32, reason: str) -> None:
        """A transaction left the mempool without being committed (evicted, disagreed, expired...)."""
        outcome = TxOutcome(tx_hash, TxState.REJECTED, reason=reason)
        key = bytes(tx_hash)
        if key in self._own_pending:
            del self._own_pending[key]
            self._own_rejected[key] = outcome
            while len(self._own_rejected) > self.own_memory:
                self._own_rejected.popitem(last=False)
        self._resolve(outcome)

    def restore_rejected(self, tx_hash: Hash32, reason: str, *, own: bool) -> None:
        """A rejection remembered from before a restart (node.mempool_store), into the memory it was in."""
        if own:
            self.own_accepted(tx_hash)
        self.tx_rejected(tx_hash, reason)

    def _resolve(self, outcome: TxOutcome) -> None:
        key = bytes(outcome.tx_hash)
        waiters = self._waiters.pop(key, None)
        if waiters is None and outcome.state is TxState.COMMITTED:
            return  # committed transactions are found in the block store; remember only what it lacks
        self._outcomes[key] = outcome
        self._outcome_order.append(key)
        if len(self._outcome_order) > self.outcome_memory:
            for old in self._outcome_order[: len(self._outcome_order) // 2]:
                self._outcomes.pop(old, None)
            del self._outcome_order[: len(self._outcome_order) // 2]
        for event in waiters or ():
            event.set()

    # ---------------------------------------------------------------- reading

    @property
    def subscribers(self) -> int:
        """Open block streams."""
        return len(self._subscribers)

    async def wait_subscribers(self, at_most: int) -> None:
        """Until at most `at_most` block streams are open (a closed connection's leave as the server sees it)."""
        while len(self._subscribers) > at_most:
            await self._subscriber_left.wait()

    @property
    def waiting(self) -> int:
        """Tasks waiting for a transaction's outcome."""
        return sum(len(w) for w in self._waiters.values())

    @property
    def own_pending(self) -> int:
        """Own clients' transactions accepted and not yet committed or rejected."""
        return len(self._own_pending)

    def outcome(self, tx_hash: bytes) -> TxOutcome | None:
        """A remembered rejection (or a commit someone waited for); the block store has every commit."""
        key = bytes(tx_hash)
        found = self._outcomes.get(key)
        return found if found is not None else self._own_rejected.get(key)

    async def wait_for_tx(self, tx_hash: bytes) -> TxOutcome:
        """Wait until the transaction is committed or rejected; the caller bounds the wait (trio timeouts).

        Callers check the block store first: a transaction committed before this call resolves only from
        there.
        """
        key = bytes(tx_hash)
        while True:
            outcome = self._outcomes.get(key)
            if outcome is not None:
                return outcome
            event = trio.Event()
            self._waiters.setdefault(key, []).append(event)
            try:
                await event.wait()
            finally:
                waiters = self._waiters.get(key)
                if waiters is not None and event in waiters:
                    waiters.remove(event)
                    if not waiters:
                        del self._waiters[key]

    @asynccontextmanager
    async def committed_blocks(self) -> AsyncIterator[AsyncIterator[Block]]:
        """Every block committed from now on, in height order, until the context exits. OverflowError when
        `MAX_SUBSCRIBERS` streams are open already."""
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise OverflowError(f"too many block subscriptions (at most {MAX_SUBSCRIBERS})")
        sub = _Subscriber()
        self._subscribers.add(sub)
        try:
            yield _iterate(sub)
        finally:
            self._drop(sub)
            sub.send.close()
            sub.receive.close()


async def _iterate(sub: _Subscriber) -> AsyncIterator[Block]:
    async for block in sub.receive:
        yield block
    if sub.dropped:
        raise SubscriberTooSlow(f"fell more than {SUBSCRIBER_BUFFER} blocks behind")
