"""Attack on the proposer's hold (node.proposal_hold) between real libp2p hosts on 127.0.0.1: a peer fetches
our own clients' transactions late on purpose, to push the grace our proposals wait before naming them
(docs/security.md, "A peer that inflates a proposer's hold")."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from core.tx import Transaction
from core.types import Hash32
from node.proposal_hold import MIN_GRACE_S, OwnTxHold
from p2p.service import P2PService
from p2p.testing.chain import make_tx
from tests.p2p.helpers import CHAIN, running_nodes

pytestmark = pytest.mark.node

OWN = [make_tx(CHAIN, i, 120) for i in range(3)]
TIMEOUT_PROPOSE_S = 3.0  # the genesis timeout_propose: the grace's cap
LATE_S = 2.5  # how long after our build the attacker asks (a lag of 1.5 x 2.5 s, past the cap)


def serve_own(service: P2PService, hold: OwnTxHold) -> None:
    """Node 0 serves its clients' transactions, and its hold hears who asked for which (as node.service
    wires them)."""
    held = {bytes(tx.hash): tx for tx in OWN}

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        return [held[h] for h in hashes if h in held]

    service.reqresp.serve_txs(provide, asked=lambda peer, hashes: hold.asked(
        str(peer), [bytes(h) for h in hashes], trio.current_time()))


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
    hold = OwnTxHold(tolerated=1, cap_s=TIMEOUT_PROPOSE_S)
    with trio.fail_after(60):
        async with running_nodes(4, configure=lambda i, s: serve_own(s, hold) if i == 0 else None) as nodes:
            us, honest, slow, attacker = nodes
            out(hold, 0)
            hold.decay(trio.current_time())  # our proposal names it at once; an honest peer had it in time
            await trio.sleep(LATE_S)
            hold.decay(trio.current_time())  # our next build
            for _ in range(3):  # the attacker asks for it as if it still lacked it
                assert await attacker.reqresp.txs(us.peer_id, [OWN[0].hash]) == [OWN[0]]
            assert hold.peer_lag(str(attacker.peer_id), trio.current_time()) > TIMEOUT_PROPOSE_S
            assert hold.grace_s == MIN_GRACE_S
            assert hold.asked_own == 3

            # An honest but slow peer really lacks a transaction that went out a second before our build.
            out(hold, 1)
            await trio.sleep(1.0)
            hold.decay(trio.current_time())
            before = trio.current_time()
            assert await slow.reqresp.txs(us.peer_id, [OWN[1].hash]) == [OWN[1]]
            slow_lag = hold.peer_lag(str(slow.peer_id), before)  # as it showed it (it eases back after)
            assert MIN_GRACE_S < slow_lag < TIMEOUT_PROPOSE_S
            assert hold.grace_s == pytest.approx(slow_lag, abs=0.05)  # the honest lag, not the attacker's
            assert hold.peer_lag(str(honest.peer_id), trio.current_time()) == MIN_GRACE_S


@pytest.mark.trio
async def test_a_peer_reconciling_its_mempool_does_not_raise_our_grace() -> None:
    """A peer that pulls our pending transactions (node.mempool_sync, after a heal) fetches our own clients'
    ones long after they went out; that is not gossip lag, and it goes by `synctxs`, which the hold does not
    hear. The same fetch by `txs` (a proposal's missing ones) is heard."""
    hold = OwnTxHold(tolerated=0, cap_s=TIMEOUT_PROPOSE_S)
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve_own(s, hold) if i == 0 else None) as (us, peer):
            out(hold, 0)
            await trio.sleep(1.0)
            hold.decay(trio.current_time())
            assert await peer.reqresp.txs(us.peer_id, [OWN[0].hash], for_sync=True) == [OWN[0]]
            assert (hold.asked_own, hold.grace_s) == (0, MIN_GRACE_S)
            assert await peer.reqresp.txs(us.peer_id, [OWN[0].hash]) == [OWN[0]]
            assert hold.asked_own == 1 and hold.grace_s > MIN_GRACE_S
