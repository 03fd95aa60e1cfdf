"""Attacks on the proposer's hold (node.proposal_hold) between real libp2p hosts on 127.0.0.1: a peer, or many
peer ids, fetch our own clients' transactions late on purpose, to push the grace our proposals wait before
naming them (docs/security.md, "A peer that inflates a proposer's hold", "Sybil peers that inflate a
proposer's hold"). Peers count only once bound to a validator by their signed peer record
(node.validator_peers), fetched over the real request protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

from core.keys import PrivateKey
from core.peer_record import sign_peer_record
from core.tx import Transaction
from core.types import Hash32
from node.proposal_hold import MIN_GRACE_S, OwnTxHold
from node.validator_peers import ValidatorPeers
from p2p.service import P2PService
from p2p.testing.chain import make_tx
from tests.p2p.helpers import CHAIN, running_nodes, wait_until

pytestmark = pytest.mark.node

OWN = [make_tx(CHAIN, i, 120) for i in range(3)]
TIMEOUT_PROPOSE_S = 3.0  # the genesis timeout_propose: the grace's cap
LATE_S = 2.5  # how long after our build the attacker asks (a lag of 1.5 x 2.5 s, past the cap)


KEYS = [PrivateKey.derive("hold attack", "validator", i) for i in range(4)]  # the set: us and three more
VALIDATORS = frozenset(bytes(key.address) for key in KEYS)


def serve_own(service: P2PService, hold: OwnTxHold, learner: ValidatorPeers) -> None:
    """Node 0 serves its clients' transactions, and its hold hears who asked for which; a peer not yet bound
    to a validator is asked for its record (as node.service wires them)."""
    held = {bytes(tx.hash): tx for tx in OWN}

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        return [held[h] for h in hashes if h in held]

    def asked(peer: object, hashes: Sequence[Hash32]) -> None:
        hold.asked(str(peer), [bytes(h) for h in hashes], trio.current_time())
        if not hold.is_bound(str(peer)):
            learner.learn(peer)  # type: ignore[arg-type]

    service.reqresp.serve_txs(provide, asked=asked)


@asynccontextmanager
async def network(hold: OwnTxHold, signers: Sequence[int | None]
                  ) -> AsyncIterator[tuple[list[P2PService], ValidatorPeers]]:
    """Node 0 (us) and one node per entry of `signers`: the index of the validator key that signs its peer
    record (a byzantine validator may sign for several peer ids), or None (a peer id with no record)."""
    async with trio.open_nursery() as nursery:
        services: list[P2PService] = []
        learner = ValidatorPeers(lambda peer: services[0].reqresp.peer_record(peer),
                                 lambda peer, address: hold.bind(peer, address, trio.current_time()))
        await nursery.start(learner.run)

        def configure(i: int, service: P2PService) -> None:
            signer = 0 if i == 0 else signers[i - 1]
            service.reqresp.serve_peer_record(
                None if signer is None else sign_peer_record(KEYS[signer], service.peer_id.to_bytes(), CHAIN))
            if i == 0:
                serve_own(service, hold, learner)

        async with running_nodes(1 + len(signers), configure=configure) as nodes:
            services.extend(nodes)
            yield nodes, learner
        nursery.cancel_scope.cancel()


def out(hold: OwnTxHold, index: int) -> None:
    """Our client's transaction `index` goes out in a gossip batch now."""
    hold.queued(OWN[index].hash, index)
    hold.published(index + 1, trio.current_time())


@pytest.mark.trio
async def test_a_peer_that_fetches_our_transactions_late_cannot_raise_our_grace() -> None:
    """Attack: a peer (one of 4 validators, f = 1) asks for our own transactions long after our proposal
    named them, again and again, as a peer whose gossip lags by seconds would. Defence: the grace is the
    second largest lag over peers, so alone it moves nothing; once an honest peer shows a lag of its own,
    the grace follows that one, not the attacker's. Without the defence (the largest lag counts) the grace
    goes to its cap at the attacker's first ask."""
    hold = OwnTxHold(tolerated=1, cap_s=TIMEOUT_PROPOSE_S, validators=VALIDATORS)
    with trio.fail_after(60):
        async with network(hold, (1, 2, 3)) as (nodes, _):
            us, honest, slow, attacker = nodes
            out(hold, 0)
            hold.decay(trio.current_time())  # our proposal names it at once; an honest peer had it in time
            await trio.sleep(LATE_S)
            hold.decay(trio.current_time())  # our next build
            for _ in range(3):  # the attacker asks for it as if it still lacked it
                assert await attacker.reqresp.txs(us.peer_id, [OWN[0].hash]) == [OWN[0]]
            await wait_until(lambda: hold.is_bound(str(attacker.peer_id)), within=20)  # a validator, counted
            assert hold.peer_lag(str(attacker.peer_id), trio.current_time()) > TIMEOUT_PROPOSE_S
            assert hold.grace_s == MIN_GRACE_S
            assert hold.asked_own == 3

            # An honest but slow peer really lacks a transaction that went out a second before our build.
            out(hold, 1)
            await trio.sleep(1.0)
            hold.decay(trio.current_time())
            before = trio.current_time()
            assert await slow.reqresp.txs(us.peer_id, [OWN[1].hash]) == [OWN[1]]
            await wait_until(lambda: hold.is_bound(str(slow.peer_id)), within=20)
            slow_lag = hold.peer_lag(str(slow.peer_id), before)  # as it showed it (it eases back after)
            assert MIN_GRACE_S < slow_lag < TIMEOUT_PROPOSE_S
            assert hold.grace_s == pytest.approx(slow_lag, abs=0.05)  # the honest lag, not the attacker's
            assert hold.peer_lag(str(honest.peer_id), trio.current_time()) == MIN_GRACE_S


@pytest.mark.trio
async def test_a_peer_reconciling_its_mempool_does_not_raise_our_grace() -> None:
    """A peer that pulls our pending transactions (node.mempool_sync, after a heal) fetches our own clients'
    ones long after they went out; that is not gossip lag, and it goes by `synctxs`, which the hold does not
    hear. The same fetch by `txs` (a proposal's missing ones) is heard."""
    hold = OwnTxHold(tolerated=0, cap_s=TIMEOUT_PROPOSE_S, validators=VALIDATORS)
    with trio.fail_after(60):
        async with network(hold, (1,)) as ((us, peer), _):
            out(hold, 0)
            await trio.sleep(1.0)
            hold.decay(trio.current_time())
            assert await peer.reqresp.txs(us.peer_id, [OWN[0].hash], for_sync=True) == [OWN[0]]
            assert (hold.asked_own, hold.grace_s) == (0, MIN_GRACE_S)
            assert await peer.reqresp.txs(us.peer_id, [OWN[0].hash]) == [OWN[0]]
            await wait_until(lambda: hold.is_bound(str(peer.peer_id)), within=20)
            assert hold.asked_own == 1 and hold.grace_s > MIN_GRACE_S


@pytest.mark.trio
async def test_sybil_peer_ids_fetching_late_leave_our_grace_unchanged() -> None:
    """Attack: f + 1 and more peer ids (here 5, f = 1) ask for our transactions long after our proposal named
    them: two with no record, one replaying an honest validator's record, and a byzantine validator's
    second peer id next to its own (both signed by its key). Defence: only peers bound by a record to
    distinct validators of the set count, each validator once; the replay names another peer id and is the
    replayer's fault. Without it (every peer id counts) the grace goes to its cap. An honest slow validator
    still moves it: to its own lag, the second largest of two validators."""
    hold = OwnTxHold(tolerated=1, cap_s=TIMEOUT_PROPOSE_S, validators=VALIDATORS)
    with trio.fail_after(60):
        async with network(hold, (1, 2, 3, 3, None, None, None)) as (nodes, learner):
            us, honest, slow, byzantine, byzantine_twin, *sybils = nodes
            replayer = sybils[-1]
            replayer.reqresp.serve_peer_record(sign_peer_record(KEYS[1], honest.peer_id.to_bytes(), CHAIN))
            out(hold, 0)
            hold.decay(trio.current_time())
            await trio.sleep(LATE_S)
            hold.decay(trio.current_time())
            for attacker in (byzantine, byzantine_twin, *sybils):
                assert await attacker.reqresp.txs(us.peer_id, [OWN[0].hash]) == [OWN[0]]
            await wait_until(lambda: learner.fetches >= 5, within=20)  # every record asked for, and answered
            assert hold.is_bound(str(byzantine.peer_id)) and hold.is_bound(str(byzantine_twin.peer_id))
            now = trio.current_time()
            assert all(hold.peer_lag(str(a.peer_id), now) > TIMEOUT_PROPOSE_S for a in (byzantine, *sybils))
            assert not any(hold.is_bound(str(s.peer_id)) for s in sybils)
            assert us.peers.scores.score(str(replayer.peer_id), now) < 0  # a record for another peer id
            assert hold.grace_s == MIN_GRACE_S

            out(hold, 1)  # an honest slow validator really lacks one that went out a second before our build
            await trio.sleep(1.0)
            hold.decay(trio.current_time())
            before = trio.current_time()
            assert await slow.reqresp.txs(us.peer_id, [OWN[1].hash]) == [OWN[1]]
            await wait_until(lambda: hold.is_bound(str(slow.peer_id)), within=20)
            slow_lag = hold.peer_lag(str(slow.peer_id), before)
            assert MIN_GRACE_S < slow_lag < TIMEOUT_PROPOSE_S
            assert hold.grace_s == pytest.approx(slow_lag, abs=0.1)
