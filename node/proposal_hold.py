"""Which of this node's own clients' transactions it may put in its proposals yet (proposer policy).

A compact proposal names its transactions by hash and each validator must hold them, or fetch them, within
the round's fetch window (node.proposal_relay). Under load the transactions a proposer's own RPC clients
sent a moment ago are the ones its peers lack: they wait in this node's gossip batcher (one batch per
`p2p.batcher.MIN_INTERVAL_S`), then in each receiver's gossip pipeline behind the batches already queued
there. A proposal naming them loses its round at every validator whose pipeline is behind
(docs/performance.md, "Proposals that name what validators lack").

So a proposer reaps its own clients' transactions only once they have gone out in a gossip batch and
`grace_s` has passed since. The grace follows the gossip lag peers show: when a peer asks this node (the
proposal relay's fetch) for one of its own transactions that went out `age` seconds before our last
proposal was built, that peer had not received it within `age`, and the grace rises to cover it; it decays
again while no peer asks. The age is taken at the build, not when we serve the request: a starved proposer
answers seconds late, and that delay is not gossip lag (seen in a loaded devnet: a 12.5 s age at serve
time for transactions that had gone out 1.7 s before the build). Transactions
that reached this node from peers are not held: every validator got their batch from the same origin.

Policy only: nothing here enters a block, a hash or a verdict. Validators accept any valid block whatever
its transactions' ages, and the monotonic clock read here never reaches consensus or the VM.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

# The least grace: a batch's delivery and decoding at a peer on an idle devnet.
MIN_GRACE_S = 0.5
# The most: past it a held transaction would wait longer than the blocks it could otherwise join.
MAX_GRACE_S = 15.0
# A peer that asked for a transaction published `age` s ago needs at least `age`: the grace is set this much
# above it, since the ask reached us only after the peer had given up waiting for gossip.
LAG_MARGIN = 1.5
# Per second without asks for our own transactions, the grace moves this share of the way back to MIN_GRACE_S.
DECAY_PER_S = 0.05
# Own transactions remembered (published or queued); older ones count as long published.
REMEMBERED = 100_000


@dataclass(slots=True)
class OwnTxHold:
    """Tracks this node's own clients' transactions from the batcher queue to their gossip batch and after."""

    grace_s: float = MIN_GRACE_S
    enabled: bool = True
    _queued: deque[tuple[int, bytes]] = field(default_factory=deque)  # (batcher sequence, hash), unpublished
    _published: OrderedDict[bytes, float] = field(default_factory=OrderedDict)  # hash -> when it went out
    _unpublished: set[bytes] = field(default_factory=set)
    _last_decay: float | None = None
    built_at: float | None = None  # when our last proposal's transactions were reaped
    held: int = 0  # reaps that skipped a transaction for being too fresh (counter, for logs and tests)
    asked_own: int = 0  # own published transactions peers asked us for

    def queued(self, tx_hash: bytes, seq: int) -> None:
        """Our client's transaction entered the gossip batcher as its item `seq`."""
        self._queued.append((seq, bytes(tx_hash)))
        self._unpublished.add(bytes(tx_hash))
        while len(self._queued) > REMEMBERED:
            _, h = self._queued.popleft()
            self._unpublished.discard(h)

    def published(self, through: int, now: float) -> None:
        """The batcher has published every item before `through` (p2p.batcher.TxBatcher.on_published)."""
        while self._queued and self._queued[0][0] < through:
            _, h = self._queued.popleft()
            self._unpublished.discard(h)
            self._published[h] = now
            self._published.move_to_end(h)
        while len(self._published) > REMEMBERED:
            self._published.popitem(last=False)

    def may_propose(self, tx_hash: bytes, now: float) -> bool:
        """Whether our proposal may name this transaction now: any peer's, or ours once out for grace_s."""
        if not self.enabled:
            return True
        h = bytes(tx_hash)
        if h in self._unpublished:
            self.held += 1
            return False
        at = self._published.get(h)
        if at is not None and now - at < self.grace_s:
            self.held += 1
            return False
        return True

    def asked(self, hashes: list[bytes], now: float) -> tuple[int, int, float]:
        """Peers asked us for `hashes` (a proposal's missing ones): raise the grace to the oldest age (at our
        last build) of our own published ones they lacked. Returns (own unpublished, own published, oldest
        age) for the log."""
        unpublished = published = 0
        oldest = 0.0
        seen_at = self.built_at if self.built_at is not None else now
        for h in hashes:
            h = bytes(h)
            if h in self._unpublished:
                unpublished += 1
                continue
            at = self._published.get(h)
            if at is not None:
                published += 1
                oldest = max(oldest, seen_at - at)
        if published:
            self.asked_own += published
            self.grace_s = min(MAX_GRACE_S, max(self.grace_s, oldest * LAG_MARGIN))
            self._last_decay = now
        return unpublished, published, oldest

    def decay(self, now: float) -> None:
        """Called before each reap (at `now`): the grace eases back toward MIN_GRACE_S while no peer asks."""
        self.built_at = now
        if self._last_decay is not None:
            elapsed = max(0.0, now - self._last_decay)
            self.grace_s = max(MIN_GRACE_S, self.grace_s - (self.grace_s - MIN_GRACE_S) * min(1.0, DECAY_PER_S * elapsed))
        self._last_decay = now
