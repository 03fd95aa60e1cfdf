"""Which of this node's own clients' transactions it may put in its proposals yet (proposer policy).

A compact proposal names its transactions by hash and each validator must hold them, or fetch them, within
the round's fetch window (node.proposal_relay). Under load the transactions a proposer's own RPC clients
sent a moment ago are the ones its peers lack: they wait in this node's gossip batcher (one batch per
`p2p.batcher.MIN_INTERVAL_S`, or `BUSY_INTERVAL_S` after a large batch), then in each receiver's gossip pipeline behind the batches already queued
there. A proposal naming them loses its round at every validator whose pipeline is behind
(docs/performance-throughput.md, "Proposals that name what validators lack").

So a proposer reaps its own clients' transactions only once they have gone out in a gossip batch and
`grace_s` has passed since. The grace follows the gossip lag peers show: when a peer asks this node (the
proposal relay's fetch) for one of its own transactions that went out `age` seconds before our last
proposal was built, that peer had not received it within `age`. The age is taken at the build, not when we
serve the request: a starved proposer answers seconds late (seen in a loaded devnet: a 12.5 s age at serve
time for transactions that had gone out 1.7 s before the build). Transactions that reached this node from
peers are not held: every validator got their batch from the same origin.

One peer cannot set the grace (docs/security.md, "A peer that inflates a proposer's hold"): each peer's lag
is kept apart (easing back while it does not ask), and the grace is the (f+1)-th largest of them, f being
the faults the validator set tolerates (`tolerated`): f peers that ask late on purpose, or lie, raise it
only as far as some honest peer's lag already does, and the proposal still reaches in time the 2f peers
(with us, 2f+1 of 3f+1) whose lags are at most the grace. Peer ids cost nothing to mint, so "f peers" must
mean f validators (docs/security.md, "Sybil peers that inflate a proposer's hold"): only peers bound to a
validator of the current set by its signed peer record (core.peer_record, learnt by node.validator_peers)
count, each validator once (the largest lag of the peers it signed for). It is capped by `timeout_propose` (`cap_s`, renewed at
every height): a transaction gossiped that long ago that a peer still lacks is the peer's delay, not one a
hold can wait out.

Policy only: nothing here enters a block, a hash or a verdict. Validators accept any valid block whatever
its transactions' ages, and the monotonic clock read here never reaches consensus or the VM.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

# The least grace: a batch's delivery and decoding at a peer on an idle devnet.
MIN_GRACE_S = 0.5
# The most, whatever `timeout_propose` is: past it a held transaction would wait longer than the blocks it
# could otherwise join.
MAX_GRACE_S = 15.0
# The genesis `timeout_propose` (3 s): the cap until the node sets the chain's own (`OwnTxHold.cap_s`).
DEFAULT_CAP_S = 3.0
# A peer that asked for a transaction published `age` s ago needs at least `age`: its lag is taken this much
# above it, since the ask reached us only after the peer had given up waiting for gossip.
LAG_MARGIN = 1.5
# Per second without asks from a peer, its lag moves this share of its way back to MIN_GRACE_S (linearly:
# back after 20 s).
DECAY_PER_S = 0.05
# Own transactions remembered (published or queued); older ones count as long published.
REMEMBERED = 100_000
# Peers whose lag is kept (the latest to ask); the rest count as showing no lag.
LAG_PEERS = 256
# Peer-to-validator bindings kept (the latest learnt); a forgotten peer counts for nothing until learnt again.
BOUND_PEERS = 1024


@dataclass(slots=True)
class _PeerLag:
    lag_s: float  # the lag (with LAG_MARGIN) the peer showed at `at`
    at: float

    def now(self, now: float) -> float:
        """The lag eased back toward MIN_GRACE_S for the time since the peer showed it."""
        share = max(0.0, 1.0 - DECAY_PER_S * max(0.0, now - self.at))
        return MIN_GRACE_S + (self.lag_s - MIN_GRACE_S) * share


@dataclass(slots=True)
class OwnTxHold:
    """Tracks this node's own clients' transactions from the batcher queue to their gossip batch and after.

    `tolerated` (f), `validators` (their addresses) and `cap_s` (`timeout_propose`) come from the chain at each
    height (node.service); `bind` says which validator a peer proved to be."""

    grace_s: float = MIN_GRACE_S
    enabled: bool = True
    tolerated: int = 0
    cap_s: float = DEFAULT_CAP_S
    validators: frozenset[bytes] = frozenset()
    _queued: deque[tuple[int, bytes]] = field(default_factory=deque)  # (batcher sequence, hash), unpublished
    _published: OrderedDict[bytes, float] = field(default_factory=OrderedDict)  # hash -> when it went out
    _unpublished: set[bytes] = field(default_factory=set)
    _lags: OrderedDict[str, _PeerLag] = field(default_factory=OrderedDict)  # peer -> the lag it showed
    _bound: OrderedDict[str, bytes] = field(default_factory=OrderedDict)  # peer -> validator address
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

    def asked(self, peer: str, hashes: list[bytes], now: float) -> tuple[int, int, float]:
        """`peer` asked us for `hashes` (a proposal's missing ones): its lag is the oldest age (at our last
        build) of our own published ones it lacked. Returns (own unpublished, own published, oldest age) for
        the log."""
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
            known = self._lags.pop(peer, None)
            lag = min(MAX_GRACE_S, max(oldest * LAG_MARGIN, known.now(now) if known is not None else 0.0))
            self._lags[peer] = _PeerLag(lag, now)
            while len(self._lags) > LAG_PEERS:
                self._lags.popitem(last=False)
            self._update(now)
        return unpublished, published, oldest

    def decay(self, now: float) -> None:
        """Called before each reap (at `now`): peers' lags ease back while they do not ask."""
        self.built_at = now
        for peer in [p for p, lag in self._lags.items() if lag.now(now) <= MIN_GRACE_S]:
            del self._lags[peer]
        self._update(now)

    def bind(self, peer: str, validator: bytes, now: float) -> None:
        """`peer` proved (a signed peer record) that it speaks for the validator with address `validator`."""
        self._bound.pop(peer, None)
        self._bound[peer] = bytes(validator)
        while len(self._bound) > BOUND_PEERS:
            self._bound.popitem(last=False)
        self._update(now)

    def is_bound(self, peer: str) -> bool:
        return peer in self._bound

    def peer_lag(self, peer: str, now: float) -> float:
        """The lag `peer` shows now (MIN_GRACE_S if none), for logs and tests."""
        lag = self._lags.get(peer)
        return MIN_GRACE_S if lag is None else lag.now(now)

    def _update(self, now: float) -> None:
        """The grace: the (f+1)-th largest lag validators show (each its peers' largest; peers bound to no
        validator of the set count for nothing), f = `tolerated`, within MIN_GRACE_S..the cap."""
        by_validator: dict[bytes, float] = {}
        for peer, lag in self._lags.items():
            validator = self._bound.get(peer)
            if validator is not None and validator in self.validators:
                by_validator[validator] = max(by_validator.get(validator, 0.0), lag.now(now))
        lags = sorted(by_validator.values(), reverse=True)
        f = max(0, self.tolerated)
        grace = lags[f] if len(lags) > f else MIN_GRACE_S
        self.grace_s = max(MIN_GRACE_S, min(grace, self.cap_s, MAX_GRACE_S))
