"""Rebuilding compact proposals (core.compact): transactions from the mempool, the rest fetched from peers.

A proposal names its transactions by hash; nearly all are already in this node's mempool through transaction
gossip. The few it lacks (sent to the proposer's RPC a moment before it built, or refused here) are asked for
over request/response: first from its proposer (the one peer sure to hold them), then (hedged: the earlier
request keeps running) from the peer that forwarded it after `per_peer_s`, then from any other peer, all
within the round's fetch limit, looking at the mempool again meanwhile (gossip still in flight fills gaps
too). A peer is asked again for the rest while it keeps sending some (a batch larger than one response). A
peer that does not answer, or answers with transactions it was not asked for, only costs `per_peer_s` (and,
for a wrong answer, a penalty in p2p): it cannot stall the proposal past the limit. If the transactions
cannot be found in time the proposal is dropped here; consensus then times out the propose step as for a
proposal never received, and catches up on the block by vote and commit catch-up if the others decide it
(docs/security.md).

Liveness under load (docs/performance-cpu.md, "stall under load"): the limit grows with the proposal's round as
`timeout_propose` does (`total_s + per_round_s * round`, capped at `max_total_s`), and what a failed fetch
did bring is kept for the next rounds' proposals, which name mostly the same transactions. A fixed limit let
a loaded devnet lose every round: when answering takes longer than 2.5 s, no round could ever rebuild its
proposal, while Tendermint's liveness rests on some round's timeouts being long enough.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from core.block import ProposalBlock
from core.compact import CompactProposal
from core.errors import InvalidBlock, RemoteError
from core.tx import Transaction
from core.types import Hash32
from p2p.messages import MAX_TXS_PER_REQUEST

logger = logging.getLogger(__name__)

_MEMPOOL_POLL_S = 0.05
_MAX_FETCH_S = 8.0  # the fetch window's cap in late rounds (unless round 0's own is larger)

TxLookup = Callable[[bytes], Transaction | None]
TxFetch = Callable[[ID, Sequence[Hash32]], Awaitable[list[Transaction]]]


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Time a proposal's missing transactions may take: per peer asked, and in all. In round r the limit is
    `total_s + per_round_s * r` up to `max_total_s`: under the chain's `timeout_propose` (`for_timeouts`, the
    node's rule, renewed at every height from the consensus parameters in force) in every round, so a
    proposal that arrives in time is still rebuilt in time, and growing as it does, so that under load some
    round's limit is long enough. The defaults are those of the genesis timeouts (3 s, +0.5 s per round)."""

    per_peer_s: float = 1.0
    total_s: float = 2.5
    per_round_s: float = 0.5
    max_total_s: float = _MAX_FETCH_S
    remembered_txs: int = 20_000  # transactions of recent proposals (rebuilt or not), for a later round's copy

    def total_for(self, round_: int) -> float:
        return min(self.total_s + self.per_round_s * max(round_, 0), max(self.max_total_s, self.total_s))

    @classmethod
    def for_timeouts(cls, timeout_propose_ms: int, timeout_propose_delta_ms: int) -> FetchLimits:
        """Limits under a `timeout_propose` of `timeout_propose_ms` (+ `timeout_propose_delta_ms` per round):
        5/6 of it in round 0 (what a proposal that arrived on time leaves for its validation), growing by
        the same delta, capped at 8 s or the round-0 figure, whichever is larger."""
        total_s = timeout_propose_ms * 5 / 6 / 1000
        return cls(total_s=total_s, per_round_s=timeout_propose_delta_ms / 1000,
                   max_total_s=max(_MAX_FETCH_S, total_s))


class ProposalAssembler:
    """`lookup` finds a transaction locally (the mempool); `fetch(peer, hashes)` asks a peer
    (`p2p.reqresp.ReqResp.txs`); `peers()` lists the other peers that may serve transactions; `on_missing`
    hears what a proposal lacked."""

    def __init__(self, lookup: TxLookup, fetch: TxFetch, peers: Callable[[], list[ID]],
                 limits: FetchLimits | None = None,
                 on_missing: Callable[[int, list[ID]], None] | None = None) -> None:
        self._lookup = lookup
        # Hears how many transactions a proposal lacked on arrival, and from whom it came (its origin and
        # forwarder): many point at diverged mempools (node.mempool_sync).
        self._on_missing = on_missing
        self._fetch = fetch
        self._peers = peers
        self.limits = limits or FetchLimits()
        self._recent: OrderedDict[bytes, Transaction] = OrderedDict()
        self.rebuilt = 0  # proposals rebuilt
        self.fetched = 0  # transactions fetched from peers
        self.dropped = 0  # proposals whose transactions could not be found in time

    def get(self, tx_hash: bytes) -> Transaction | None:
        """A transaction from the mempool or a recently rebuilt proposal."""
        tx = self._lookup(tx_hash)
        return tx if tx is not None else self._recent.get(tx_hash)

    async def serve(self, hashes: Sequence[Hash32]) -> list[Transaction]:
        """What this node serves to peers (`p2p.reqresp.ReqResp.serve_txs`): the asked ones it holds, in order."""
        out: list[Transaction] = []
        for i, tx_hash in enumerate(hashes):
            if i and i % 256 == 0:
                await trio.lowlevel.checkpoint()
            tx = self.get(tx_hash)
            if tx is not None:
                out.append(tx)
        await trio.lowlevel.checkpoint()
        return out

    async def assemble(self, compact: CompactProposal, *, forwarder: ID, origin: ID) -> ProposalBlock | None:
        """The full proposal, or None when its transactions could not all be found within the limits."""
        began = trio.current_time()
        found, missing = compact.missing(self.get)
        outcomes: list[str] = []
        if missing:
            if self._on_missing is not None:
                self._on_missing(len(missing), [origin, forwarder])
            total_s = self.limits.total_for(int(compact.proposal.round))
            got = await self._find_missing(missing, [origin, forwarder, *self._peers()], total_s, outcomes)
            # Kept even if the proposal is dropped: the next rounds' proposals name mostly the same ones.
            self._remember(list(got.values()))
            found = [tx if tx is not None else got.get(h) for tx, h in zip(found, compact.tx_hashes, strict=True)]
        txs = [tx for tx in found if tx is not None]
        if len(txs) != len(found):
            self.dropped += 1
            logger.info("proposal %d/%d dropped: %d of its %d transactions not found in %.1f s (%d missing on "
                        "arrival; asked: %s)", int(compact.proposal.height), int(compact.proposal.round),
                        len(found) - len(txs), len(found), self.limits.total_for(int(compact.proposal.round)),
                        len(missing), "; ".join(outcomes) or "nobody")
            return None
        try:
            message = compact.rebuild(txs)
        except InvalidBlock as exc:  # a transaction of another chain named by hash: the proposer's block is bad
            logger.info("proposal %d/%d refused: %s", int(compact.proposal.height), int(compact.proposal.round), exc)
            return None
        self.rebuilt += 1
        self._remember(txs)
        # For the logs only: how late the proposal came (the proposer's clock against ours) and what it lacked.
        late_s = (time.time() * 1000 - int(compact.proposal.timestamp)) / 1000
        logger.info("proposal %d/%d rebuilt: %d transactions, %d missing on arrival, in %.2f s (%.1f s after "
                    "signing)%s", int(compact.proposal.height), int(compact.proposal.round), len(txs), len(missing),
                    trio.current_time() - began, late_s, f" (asked: {'; '.join(outcomes)})" if outcomes else "")
        return message

    async def _find_missing(self, missing: list[Hash32], candidates: list[ID], total_s: float,
                            outcomes: list[str]) -> dict[bytes, Transaction]:
        """Hedged requests: the next peer is asked whenever `per_peer_s` passes without everything found,
        while earlier requests keep running (a slow honest peer still counts, a staller costs only its
        `per_peer_s`); the mempool is looked at meanwhile, since transaction gossip still in flight fills gaps
        too. Everything stops at `total_s` or once nothing is missing. `outcomes` receives one line per peer
        asked (what it sent, in how long, or how it failed) for the log."""
        got: dict[bytes, Transaction] = {}
        began = trio.current_time()
        gossiped = 0  # found in the mempool meanwhile (transaction gossip still in flight)

        def still_missing() -> list[Hash32]:
            nonlocal gossiped
            for h in missing:
                if h not in got:
                    tx = self._lookup(h)
                    if tx is not None:
                        got[bytes(h)] = tx
                        gossiped += 1
            return [h for h in missing if h not in got]

        async def ask(peer: ID, finished: trio.Event) -> None:
            asked_at = trio.current_time()
            sent = requests = 0
            outcome = "cancelled"
            try:
                # A response holds what fits in one message: ask again for the rest while answers bring some.
                want = still_missing()
                while want:
                    batch = want[:MAX_TXS_PER_REQUEST]
                    requests += 1
                    answered = await self._fetch(peer, batch)
                    sent += len(answered)
                    for tx in answered:
                        if bytes(tx.hash) not in got:
                            got[bytes(tx.hash)] = tx
                            self.fetched += 1
                    if not answered:
                        break  # it holds none of these: the hedge asks the next peer
                    want = still_missing()  # p2p checked the answer holds only asked ones: `want` shrank
                outcome = "done"
            except RemoteError as exc:  # BadResponse was penalized by p2p; any failure: the others go on
                logger.debug("transactions from %s: %s", peer, exc)
                outcome = f"failed ({exc})"
            finally:
                finished.set()
                outcomes.append(f"{str(peer)[-6:]} +{asked_at - began:.1f}s: {sent} in {requests} requests, "
                                f"{outcome} after {trio.current_time() - asked_at:.1f}s")

        with trio.move_on_after(total_s):
            async with trio.open_nursery() as nursery:
                asked: set[ID] = set()
                for peer in candidates:
                    if not still_missing():
                        break
                    if peer in asked:
                        continue
                    asked.add(peer)
                    finished = trio.Event()
                    nursery.start_soon(ask, peer, finished)
                    # Until this peer answers or fails, `per_peer_s` passes, or nothing is missing any more.
                    hedge_at = trio.current_time() + self.limits.per_peer_s
                    while still_missing() and not finished.is_set() and trio.current_time() < hedge_at:  # noqa: ASYNC110
                        await trio.sleep(_MEMPOOL_POLL_S)
                while still_missing():  # noqa: ASYNC110 - the mempool offers no event per arrival
                    await trio.sleep(_MEMPOOL_POLL_S)
                nursery.cancel_scope.cancel()
        outcomes.append(f"{gossiped} arrived by gossip")
        return got

    def _remember(self, txs: list[Transaction]) -> None:
        for tx in txs:
            self._recent[bytes(tx.hash)] = tx
            self._recent.move_to_end(bytes(tx.hash))
        while len(self._recent) > self.limits.remembered_txs:
            self._recent.popitem(last=False)
