"""Mempool reconciliation (node.mempool_sync) between real libp2p hosts on 127.0.0.1 and real mempools (the
VM's admission rule over a table of accounts): a node that connects pulls the pending transactions it lacks;
a peer that lists badly signed ones, or stalls, costs a bounded amount (docs/security.md)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import trio
from libp2p.peer.id import ID

from core.tx import Transaction
from core.types import Hash32
from node.mempool import Mempool
from node.mempool_sync import MempoolSync, SyncLimits, SyncOutcome
from node.sigcache import SigCache
from p2p.service import P2PService
from tests.node.test_mempool import KEYS, Accounts, pool, tx
from tests.p2p.helpers import running_nodes, wait_until

pytestmark = pytest.mark.node

PER_SENDER = 40
TXS = [tx(k, n) for k in range(len(KEYS)) for n in range(PER_SENDER)]  # 320 transfers


@dataclass
class Peer:
    service: P2PService
    mempool: Mempool
    sync: MempoolSync


def wire(service: P2PService, mempool: Mempool, limits: SyncLimits | None = None,
         accounts: Accounts | None = None, cache: SigCache | None = None) -> MempoolSync:
    """As node.service wires them: the mempool serves its pending list and its transactions."""
    sync = MempoolSync(mempool, service.reqresp.pending, functools.partial(service.reqresp.txs, for_sync=True),
                       (cache if cache is not None else SigCache()).verify,
                       lambda: service.peers_serving("pending"), limits,
                       account=accounts.account if accounts is not None else None)
    service.reqresp.serve_pending(sync.serve)

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        return [t for t in (mempool.get(h) for h in hashes) if t is not None]

    service.reqresp.serve_txs(provide)
    return sync


def holding(txs: Sequence[Transaction]) -> Mempool:
    mempool = pool(Accounts())
    for t in txs:
        assert mempool.add(t).added
    return mempool


@pytest.mark.trio
async def test_a_peer_that_connects_gets_the_pending_transactions_it_lacks() -> None:
    """Two sides of a healed split: each holds what it took alone (and some of the other's). Once connected,
    each pulls what it lacks of the other's pending list, and both end up holding all of them; nothing
    either already held is fetched again."""
    left = holding(TXS[: PER_SENDER * 4] + TXS[PER_SENDER * 4: PER_SENDER * 5])
    right = holding(TXS[PER_SENDER * 4:])
    mempools = [left, right]
    syncs: list[MempoolSync] = []
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: syncs.append(wire(s, mempools[i]))) as services, \
                trio.open_nursery() as nursery:
            for sync in syncs:
                await nursery.start(sync.run)
            await wait_until(lambda: all(len(m) == len(TXS) for m in mempools), within=30)
            await wait_until(lambda: all(s.outcomes for s in syncs), within=10)
            nursery.cancel_scope.cancel()
    (_, reason_l, got_l), = syncs[0].outcomes
    (_, reason_r, got_r), = syncs[1].outcomes
    assert reason_l == reason_r == "connected"
    # Each lists what it holds when asked: its own, and perhaps already what it pulled from the other.
    assert got_l.listed in (160, 320) and got_r.listed in (200, 320)
    assert (got_l.lacked, got_l.fetched, got_l.added) == (120, 120, 120)
    assert (got_r.lacked, got_r.fetched, got_r.added) == (160, 160, 160)
    assert {t.hash for t in left.txs()} == {t.hash for t in right.txs()} == {t.hash for t in TXS}
    assert services[0].counters.requests_served["pending"] == 1


@pytest.mark.trio
async def test_a_proposal_lacking_many_transactions_starts_a_reconciliation_once_per_interval() -> None:
    """A link that comes back without reconnecting gives no connection event; a proposal that names many
    transactions we lack does. Reconciliations with one peer are at least `min_interval_s` apart, however
    often it is asked for."""
    limits = SyncLimits(missing_trigger=100, min_interval_s=30.0)
    source = holding(TXS)
    behind = holding(TXS[:PER_SENDER])
    mempools = [source, behind]
    syncs: list[MempoolSync] = []
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: syncs.append(wire(s, mempools[i], limits))) \
                as (proposer, receiver):
            sync = syncs[1]
            await wait_until(lambda: proposer.peer_id in receiver.peers_serving("pending"))
            sync.proposal_missing(99, [proposer.peer_id])  # below the trigger: nothing
            sync.proposal_missing(500, [proposer.peer_id, proposer.peer_id])  # its origin and forwarder
            async with trio.open_nursery() as nursery:
                await nursery.start(sync.run)  # the connection is seen too: its request finds one queued
                await wait_until(lambda: len(behind) == len(TXS) and len(sync.outcomes) == 1, within=30)
                assert sync.outcomes[0][1] == "a proposal lacked 500"
                assert not sync.request(proposer.peer_id, "again")  # within the interval
                sync.proposal_missing(500, [proposer.peer_id])
                await trio.sleep(1.0)
                assert len(sync.outcomes) == 1
                nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_peer_that_lists_badly_signed_transactions_gets_none_in_and_is_not_asked_again() -> None:
    """Attack: a peer lists as pending, and serves, transactions whose signatures do not verify (each under
    its own hash, so p2p's check that it sent what was asked passes). Defence: every signature is checked
    before the mempool sees it; nothing gets in, and the peer is not reconciled with again for `ban_s`."""
    forged = [t.replace(signature=TXS[0].signature) for t in TXS[1:41]]
    liar_pool = holding([])
    held = {bytes(t.hash): t for t in forged}

    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            async def listed(limit: int) -> list[Hash32]:
                await trio.lowlevel.checkpoint()
                return [t.hash for t in forged][:limit]

            async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
                await trio.lowlevel.checkpoint()
                return [held[bytes(h)] for h in hashes if bytes(h) in held]

            service.reqresp.serve_pending(listed)
            service.reqresp.serve_txs(provide)
        else:
            syncs.append(wire(service, victim, SyncLimits(min_interval_s=0.0, ban_s=300.0)))

    victim = holding([])
    syncs: list[MempoolSync] = []
    with trio.fail_after(60):
        async with running_nodes(2, configure=configure) as (liar, _):
            sync = syncs[0]
            async with trio.open_nursery() as nursery:
                await nursery.start(sync.run)
                await wait_until(lambda: len(sync.outcomes) == 1, within=30)
                (_, _, outcome), = sync.outcomes
                assert (outcome.listed, outcome.fetched, outcome.added) == (40, 40, 0)
                assert outcome.bad_signatures == 40
                assert len(victim) == 0 and len(liar_pool) == 0
                assert not sync.request(liar.peer_id, "again")  # banned from reconciliation
                nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_peer_that_stalls_the_reconciliation_frees_the_turn_within_the_bound() -> None:
    """Attack: a peer lists transactions and never answers their fetch, to hold the one reconciliation
    turn. Defence: a reconciliation ends after `reconcile_s`; the next peer's turn comes."""
    limits = SyncLimits(reconcile_s=2.0)
    honest_pool = holding(TXS[:80])
    victim = holding([])

    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            async def listed(limit: int) -> list[Hash32]:
                await trio.lowlevel.checkpoint()
                return [t.hash for t in TXS[80:]][:limit]

            async def stall(hashes: Sequence[Hash32]) -> list[Transaction]:
                await trio.sleep_forever()
                raise AssertionError("unreachable")

            service.reqresp.serve_pending(listed)
            service.reqresp.serve_txs(stall)
        elif i == 1:
            wire(service, honest_pool, limits)
        else:
            syncs.append(wire(service, victim, limits))

    syncs: list[MempoolSync] = []
    with trio.fail_after(60):
        async with running_nodes(3, configure=configure) as (staller, honest, victim_node):
            sync = syncs[0]
            await wait_until(lambda: len(victim_node.peers_serving("pending")) == 2)
            assert sync.request(staller.peer_id, "first")  # the staller's turn comes first
            async with trio.open_nursery() as nursery:
                await nursery.start(sync.run)
                # Well before p2p's own request timeout (10 s) would end the stalled fetch.
                await wait_until(lambda: len(victim) == 80, within=limits.reconcile_s + 4.0)
                reconciled = {peer: outcome for peer, _, outcome in sync.outcomes}
                assert reconciled[staller.peer_id].added == 0
                assert reconciled[honest.peer_id].added == 80
                nursery.cancel_scope.cancel()


async def one_reconciliation(configure: Callable[[int, P2PService], None],
                             syncs: list[MempoolSync]) -> SyncOutcome:
    """Two real nodes (configure appends each one's MempoolSync to `syncs`): node 1's first reconciliation."""
    with trio.fail_after(60):
        async with running_nodes(2, configure=configure), trio.open_nursery() as nursery:
            await nursery.start(syncs[1].run)
            await wait_until(lambda: len(syncs[1].outcomes) == 1, within=30)
            nursery.cancel_scope.cancel()
    (_, _, outcome), = syncs[1].outcomes
    return outcome


@pytest.mark.trio
async def test_transactions_no_block_could_take_are_not_signature_checked() -> None:
    """A peer a block behind lists what this node has committed already, and a peer may list transactions of
    senders that cannot pay: those are fetched (the hash alone does not tell) but dropped on their used nonce
    or empty balance, before any signature check."""
    accounts = Accounts()
    accounts.table[bytes(KEYS[0].address)].nonce = PER_SENDER  # sender 0's forty are committed here
    behind = holding(TXS[: 2 * PER_SENDER])
    unfunded = Accounts()
    unfunded.table[bytes(KEYS[1].address)].balance = 0  # sender 1 has nothing here
    here = pool(accounts)
    cache = SigCache()
    syncs: list[MempoolSync] = []

    def configure(i: int, service: P2PService) -> None:
        syncs.append(wire(service, behind) if i == 0 else wire(service, here, accounts=accounts, cache=cache))

    outcome = await one_reconciliation(configure, syncs)
    assert (outcome.lacked, outcome.fetched, outcome.stale, outcome.added) == (80, 80, 40, 40)
    assert cache.verifications == 40

    cache = SigCache()
    syncs.clear()

    def configure_unfunded(i: int, service: P2PService) -> None:
        syncs.append(wire(service, behind) if i == 0 else wire(service, pool(unfunded), accounts=unfunded,
                                                              cache=cache))

    outcome = await one_reconciliation(configure_unfunded, syncs)
    assert (outcome.fetched, outcome.stale, outcome.added) == (80, 40, 40)
    assert cache.verifications == 40


@pytest.mark.trio
async def test_a_link_that_is_dropped_and_redialed_reconciles_again() -> None:
    """A cut link is dropped (the stall detector) and redialed: the new connection reconciles again, even when
    the peer never left the connected list between two looks."""
    source = holding(TXS[:PER_SENDER])
    behind = holding([])
    mempools = [source, behind]
    syncs: list[MempoolSync] = []

    def configure(i: int, service: P2PService) -> None:
        def links() -> list[tuple[ID, object]]:
            return [(p, c) for p, cs in service.host.get_network().get_connections_map().items() for c in cs]

        syncs.append(MempoolSync(mempools[i], service.reqresp.pending,
                                 functools.partial(service.reqresp.txs, for_sync=True), SigCache().verify,
                                 lambda: service.peers_serving("pending"), SyncLimits(min_interval_s=0.0),
                                 links=links))
        service.reqresp.serve_pending(syncs[-1].serve)
        service.reqresp.serve_txs(lambda hashes: _held(mempools[i], hashes))

    with trio.fail_after(60):
        async with running_nodes(2, configure=configure) as (origin, redialer), trio.open_nursery() as nursery:
            sync = syncs[1]
            await nursery.start(sync.run)
            await wait_until(lambda: len(behind) == PER_SENDER, within=20)
            for t in TXS[PER_SENDER: 2 * PER_SENDER]:  # taken while the link was down
                assert source.add(t).added
            await trio.sleep(SyncLimits().serve_cache_s)  # the origin lists what it holds once a second
            await redialer.host.disconnect(origin.peer_id)
            await wait_until(lambda: len(behind) == 2 * PER_SENDER, within=30)
            assert [reason for _, reason, _ in sync.outcomes] == ["connected", "connected"]
            nursery.cancel_scope.cancel()


async def _held(mempool: Mempool, hashes: Sequence[Hash32]) -> list[Transaction]:
    await trio.lowlevel.checkpoint()
    return [t for t in (mempool.get(h) for h in hashes) if t is not None]
