"""Mempool reconciliation: pull from a peer the pending transactions this node lacks, when mempools diverged.

Transaction gossip reaches a transaction's peers once, at entry. What a node took while a link was down (a
partition: each side gossips only within itself; a link dropped with its queue) stays where it is after the
link comes back, and the next proposals name transactions the other side lacks and must fetch in the round's
window (docs/performance-latency.md, "After a partition heals"). So a node asks a peer for the hashes of its pending
transactions, best first (`p2p.reqresp.ReqResp.pending`, at most MAX_PENDING_HASHES), and fetches those it
lacks (`ReqResp.txs(for_sync=True)`: the `synctxs` protocol, which the proposer's hold does not count as
gossip lag), checking each signature and handing it to the mempool as a gossiped transaction. It does so
when a peer connects (again) and when a peer's proposal lacks many transactions here (a link that came back
without a reconnect).

Bounds (docs/security.md, "Mempool reconciliation"): one reconciliation at a time, at most one a second
(`spacing_s`), each for at most `reconcile_s`; each peer at most once per `min_interval_s`; at most
MAX_PENDING_HASHES hashes and `max_fetch` transactions each, fetched in MAX_TXS_PER_REQUEST batches (at most
`max_requests`) under p2p's request, size and byte-rate limits. Transactions no block could take (a used
nonce, a sender that cannot pay the fee) are dropped before their signature check, and a peer that served a
badly signed one is not asked again for `ban_s`. Serving: the answer is the mempool's reap order, built at
most once per `serve_cache_s` (and block) whoever asks. Nothing fetched is relayed: each node reconciles
with its own peers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from core.errors import RemoteError
from core.tx import Transaction
from core.types import Address, Hash32
from node.mempool import AccountInfo, Mempool
from p2p.messages import MAX_PENDING_HASHES, MAX_TXS_PER_REQUEST

logger = logging.getLogger(__name__)

PendingFetch = Callable[[ID, int], Awaitable[list[Hash32]]]
TxFetch = Callable[[ID, Sequence[Hash32]], Awaitable[list[Transaction]]]
Verify = Callable[[Transaction, bytes], bool]

_UNBOUNDED = 1 << 62  # the reap's byte and gas budgets when listing what is pending


@dataclass(frozen=True, slots=True)
class _AnyAccount:
    """Without a state to read (unit use), every sender counts as funded and at nonce 0."""

    balance: int = 1 << 128
    nonce: int = 0


_ANY_ACCOUNT = _AnyAccount()


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """What one peer can make this node do, and how often."""

    min_interval_s: float = 5.0  # between two reconciliations with one peer
    max_fetch: int = MAX_PENDING_HASHES  # transactions fetched per reconciliation
    max_requests: int = 8  # transaction requests per reconciliation (a response holds ~1,500 transfers)
    reconcile_s: float = 15.0  # one reconciliation, in all: a peer that stalls it frees the turn after this
    spacing_s: float = 1.0  # between the starts of two reconciliations, whatever the peers
    poll_s: float = 0.5  # how often the connected peers are looked at for new ones
    missing_trigger: int = 128  # a proposal lacking this many transactions starts a reconciliation
    queued_peers: int = 64  # reconciliations waiting their turn; more are dropped (the peer asks later)
    ban_s: float = 300.0  # a peer that served a badly signed transaction is not asked for this long
    serve_cache_s: float = 1.0  # the served hash list is rebuilt at most this often
    tracked_peers: int = 1024  # peers whose last reconciliation time is remembered


@dataclass(slots=True)
class SyncOutcome:
    """What one reconciliation came to (for the log and tests)."""

    listed: int = 0  # hashes the peer listed
    lacked: int = 0  # of them, ones this node did not hold
    fetched: int = 0  # transactions the peer sent
    added: int = 0  # taken by the mempool
    stale: int = 0  # nonce already used here (the peer is behind), or a sender that cannot pay the fee
    bad_signatures: int = 0


class MempoolSync:
    """`pending(peer, limit)` and `fetch(peer, hashes)` ask a peer (p2p.reqresp); `verify(tx, hash)` checks a
    signature (the node's cache); `peers()` lists the connected peers that serve `pending`; `account` reads a
    sender's committed account (for one the mempool holds nothing of); `links()` lists each open connection
    as (peer, the connection object), so that a reconnect shows."""

    def __init__(self, mempool: Mempool, pending: PendingFetch, fetch: TxFetch, verify: Verify,
                 peers: Callable[[], list[ID]], limits: SyncLimits | None = None,
                 is_syncing: Callable[[], bool] | None = None,
                 account: Callable[[Address], AccountInfo] | None = None,
                 links: Callable[[], Iterable[tuple[ID, object]]] | None = None) -> None:
        self._mempool = mempool
        self._links: Callable[[], Iterable[tuple[ID, object]]] = links or (lambda: [(p, p) for p in self._peers()])
        self._account = account or (lambda address: _ANY_ACCOUNT)
        self._pending = pending
        self._fetch = fetch
        self._verify = verify
        self._peers = peers
        self.limits = limits or SyncLimits()
        self._is_syncing = is_syncing or (lambda: False)
        self._send, self._receive = trio.open_memory_channel[tuple[ID, str]](self.limits.queued_peers)
        self._queued: set[ID] = set()
        self._last: OrderedDict[ID, float] = OrderedDict()  # peer -> when it was last reconciled (or banned)
        self._threads = trio.CapacityLimiter(1)
        self._served: tuple[float, int, list[Hash32]] | None = None  # (when, at which height, hashes)
        self.outcomes: list[tuple[ID, str, SyncOutcome]] = []  # the latest ones, for tests and logs

    # ---------------------------------------------------------------- serving

    async def serve(self, limit: int) -> list[Hash32]:
        """Our pending transactions' hashes, best first (the order our proposals would name them in)."""
        now, height = trio.current_time(), self._mempool.height
        served = self._served
        if served is None or now - served[0] >= self.limits.serve_cache_s or served[1] != height:
            txs = self._mempool.reap(max_txs=MAX_PENDING_HASHES, max_bytes=_UNBOUNDED, max_gas=_UNBOUNDED)
            served = self._served = (now, height, [tx.hash for tx in txs])
        await trio.lowlevel.checkpoint()
        return served[2][:limit]

    # ---------------------------------------------------------------- triggers

    def request(self, peer: ID, reason: str) -> bool:
        """Reconcile with `peer` soon, unless it was lately or is waiting already. Returns whether queued."""
        last = self._last.get(peer)
        if peer in self._queued or (last is not None and trio.current_time() - last < self.limits.min_interval_s):
            return False
        try:
            self._send.send_nowait((peer, reason))
        except trio.WouldBlock:
            return False
        self._queued.add(peer)
        return True

    def proposal_missing(self, missing: int, peers: Sequence[ID]) -> None:
        """A proposal came lacking `missing` of its transactions: past the trigger, reconcile with the peers
        that sent it (its proposer and forwarder hold them, and what else they had)."""
        if missing >= self.limits.missing_trigger:
            for peer in dict.fromkeys(peers):
                self.request(peer, f"a proposal lacked {missing}")

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_peers)
            task_status.started()
            async for peer, reason in self._receive:
                while self._is_syncing():  # noqa: ASYNC110 - a flag of the node's, no event
                    # Blocks still to apply: an unfunded sender may be funded in one of them.
                    await trio.sleep(self.limits.poll_s)
                self._queued.discard(peer)
                if peer not in self._peers():
                    continue  # gone (or not yet identified): its connection will ask again
                began = trio.current_time()
                self._mark(peer, began)
                outcome = await self.reconcile(peer)
                self.outcomes.append((peer, reason, outcome))
                del self.outcomes[:-32]
                if outcome.listed:
                    logger.info("mempool reconciliation with %s (%s): %d listed, %d lacked, %d fetched, %d added%s",
                                str(peer)[-6:], reason, outcome.listed, outcome.lacked, outcome.fetched,
                                outcome.added, f", {outcome.bad_signatures} badly signed" if outcome.bad_signatures
                                else "")
                # However many peers ask for a turn (new ids connecting), at most one reconciliation a spacing.
                await trio.sleep_until(began + self.limits.spacing_s)

    async def _watch_peers(self) -> None:
        """A peer that connects (first, or again after a cut) may hold what we took nothing of meanwhile. A
        link dropped and redialed between two looks shows as a new connection to a peer seen before."""
        # The connection objects themselves, held until the next look: a new one cannot reuse an old one's
        # identity while the old one is held here (a reconnect between two looks would hide behind a reused id).
        known: set[tuple[ID, object]] = set()
        while True:
            serving = set(self._peers())
            current = {(peer, link) for peer, link in self._links() if peer in serving}
            for peer in dict.fromkeys(peer for peer, _ in current - known):
                self.request(peer, "connected")
            known = current
            await trio.sleep(self.limits.poll_s)

    async def reconcile(self, peer: ID) -> SyncOutcome:
        """One reconciliation: the peer's pending list, then what we lack of it. A peer's failure (timeout,
        refusal, bad response: p2p penalized that) ends it with what came so far."""
        outcome = SyncOutcome()
        with trio.move_on_after(self.limits.reconcile_s):
            await self._reconcile(peer, outcome)
        return outcome

    async def _reconcile(self, peer: ID, outcome: SyncOutcome) -> None:
        try:
            listed = await self._pending(peer, MAX_PENDING_HASHES)
            outcome.listed = len(listed)
            want = [h for h in dict.fromkeys(listed)
                    if h not in self._mempool and not self._mempool.is_backed_off(h)][:self.limits.max_fetch]
            outcome.lacked = len(want)
            for _ in range(self.limits.max_requests):
                if not want:
                    break
                batch = want[:MAX_TXS_PER_REQUEST]
                txs = await self._fetch(peer, batch)  # p2p checked each was asked for, in order
                if not txs:  # it holds none of these any more (committed or evicted meanwhile)
                    want = want[len(batch):]
                    continue
                outcome.fetched += len(txs)
                if not await self._admit(txs, outcome):
                    self._mark(peer, trio.current_time() + self.limits.ban_s)
                    break
                # A response holds the asked ones the peer has, in order, as many as fit: those after the
                # last one sent may not have fit, and are asked again.
                sent = {bytes(tx.hash) for tx in txs}
                last = max(i for i, h in enumerate(batch) if bytes(h) in sent)
                want = batch[last + 1:] + want[len(batch):]
        except RemoteError as exc:
            logger.debug("mempool reconciliation with %s: %s", peer, exc)

    async def _admit(self, txs: list[Transaction], outcome: SyncOutcome) -> bool:
        """Signatures off the event loop, then the mempool's own checks. False if one is badly signed: the
        peer listed it as pending, which an honest mempool never holds."""
        fresh = [(tx, bytes(tx.hash)) for tx in txs if tx.hash not in self._mempool and not self._is_hopeless(tx)]
        outcome.stale += len(txs) - len(fresh)
        checked = await trio.to_thread.run_sync(lambda: [self._verify(tx, h) for tx, h in fresh],
                                                limiter=self._threads)
        for i, ((tx, _), ok) in enumerate(zip(fresh, checked, strict=True)):
            if i and i % 256 == 0:
                await trio.lowlevel.checkpoint()
            if not ok:
                outcome.bad_signatures += 1
                continue
            if self._mempool.add(tx, signature_checked=True).added:
                outcome.added += 1
        return not outcome.bad_signatures

    def _is_hopeless(self, tx: Transaction) -> bool:
        """Its nonce is used already (committed here, while the peer that listed it is a block behind), or its
        sender's committed balance cannot pay even its fee (as the gossip hook's cheap checks): dropped before
        any signature check, so a peer cannot make us verify transactions no block could take."""
        known = self._mempool.known_account(tx.sender_address)
        if known is not None and tx.nonce >= int(known.nonce) and int(known.balance) >= tx.fee:
            return False
        account = self._account(tx.sender_address)
        return tx.nonce < int(account.nonce) or int(account.balance) < tx.fee

    def _mark(self, peer: ID, at: float) -> None:
        self._last[peer] = max(at, self._last.get(peer, at))
        self._last.move_to_end(peer)
        while len(self._last) > self.limits.tracked_peers:
            self._last.popitem(last=False)

