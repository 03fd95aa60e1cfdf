"""Proposer policy (node.proposal_hold): our own clients' transactions go into our proposals only once they
have gone out in a gossip batch and a grace, following the lag peers show, has passed."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.proposal_hold import MAX_GRACE_S, MIN_GRACE_S, OwnTxHold
from p2p.batcher import TxBatcher
from p2p.messages import TxBatch
from p2p.testing.chain import make_tx

pytestmark = pytest.mark.node

CHAIN = "hold"


@pytest.mark.trio
async def test_the_batcher_reports_which_items_are_out(mock_clock: trio.testing.MockClock) -> None:
    """Items are numbered in order and reported out only once their batch is published; one carried to the
    next batch (it did not fit) is not reported with the first."""
    published: list[bytes] = []
    outs: list[int] = []

    async def publish(data: bytes) -> None:
        published.append(data)
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, target_bytes=4000, max_delay_s=0.5, on_published=outs.append)
    txs = [make_tx(CHAIN, i, payload_bytes=700) for i in range(6)]  # ~870 B each: 4 fit in 4000 B
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        assert [await batcher.add(tx) for tx in txs] == list(range(6))
        await trio.testing.wait_all_tasks_blocked()
        assert [len(TxBatch.decode(b).txs) for b in published] == [4]
        assert outs == [4]  # the fifth was taken and carried: not out yet
        mock_clock.jump(0.6)
        await trio.testing.wait_all_tasks_blocked()
        assert outs == [4, 6]
        nursery.cancel_scope.cancel()


V1, V2 = b"1" * 20, b"2" * 20  # validator addresses


def test_own_transactions_wait_for_their_batch_and_the_grace() -> None:
    hold = OwnTxHold()
    mine, theirs = b"m" * 32, b"t" * 32
    hold.queued(mine, 7)
    assert hold.may_propose(theirs, 0.0)  # a peer's transaction: every validator got the same batch
    assert not hold.may_propose(mine, 100.0)  # not gossiped yet, however long it waited
    hold.published(7, 100.0)  # items before 7 are out: ours is not
    assert not hold.may_propose(mine, 100.0)
    hold.published(8, 101.0)
    assert not hold.may_propose(mine, 101.0 + MIN_GRACE_S / 2)
    assert hold.may_propose(mine, 101.0 + MIN_GRACE_S)
    assert hold.held == 3


def test_a_disabled_hold_proposes_everything_at_once() -> None:
    hold = OwnTxHold(enabled=False)
    hold.queued(b"m" * 32, 0)
    assert hold.may_propose(b"m" * 32, 0.0)


def test_the_grace_follows_the_lag_a_peer_shows_and_decays_back() -> None:
    """A peer that asks for one of our transactions gossiped 4 s ago lacked it for 4 s: the grace covers that
    (with a margin), never past the cap (`timeout_propose`), and eases back while nobody asks."""
    hold = OwnTxHold(cap_s=MAX_GRACE_S, validators=frozenset({V1}))
    hold.bind("p1", V1, 0.0)
    lagging, fresh, unknown = b"a" * 32, b"b" * 32, b"c" * 32
    hold.queued(lagging, 0)
    hold.published(1, 10.0)
    hold.queued(fresh, 1)
    hold.decay(14.0)  # our proposal is built at 14 s; the peer's request reaches us (starved) at 19 s
    assert hold.asked("p1", [lagging, fresh, unknown], 19.0) == (1, 1, 4.0)
    assert hold.grace_s == pytest.approx(6.0)
    hold.decay(110.0)
    hold.asked("p1", [lagging], 110.0)
    assert hold.grace_s == MAX_GRACE_S
    hold.decay(120.0)  # 10 s without asks: half of the way back
    assert hold.grace_s == pytest.approx(MIN_GRACE_S + (MAX_GRACE_S - MIN_GRACE_S) / 2)
    hold.decay(1000.0)
    assert hold.grace_s == MIN_GRACE_S
    hold.cap_s = 3.0  # the chain's timeout_propose
    hold.asked("p1", [lagging], 1000.0)
    assert hold.grace_s == 3.0


def test_f_peers_cannot_raise_the_grace_past_what_the_honest_peers_lags_give() -> None:
    """With f = 1 the grace is the second largest lag: one peer showing a huge lag (asking late on purpose)
    moves nothing; it takes a second peer lagging as much, and the grace then follows the smaller of the
    two."""
    hold = OwnTxHold(tolerated=1, cap_s=MAX_GRACE_S, validators=frozenset({V1, V2}))
    hold.bind("liar", V1, 0.0)
    hold.bind("honest", V2, 0.0)
    old, new = b"o" * 32, b"n" * 32
    hold.queued(old, 0)
    hold.published(1, 0.0)
    hold.decay(8.0)  # built 8 s after `old` went out
    hold.asked("liar", [old], 8.0)
    assert hold.peer_lag("liar", 8.0) == pytest.approx(12.0)
    assert hold.grace_s == MIN_GRACE_S  # one peer alone moves nothing
    hold.queued(new, 1)
    hold.published(2, 8.5)
    hold.decay(10.5)  # built 2 s after `new` went out; an honest peer lacked it
    hold.asked("honest", [new], 10.5)
    assert hold.peer_lag("liar", 10.5) > 10.0
    assert hold.grace_s == pytest.approx(3.0)  # the honest lag (1.5 x 2 s), not the liar's
    hold.tolerated = 0  # no fault tolerated (fewer than four validators): the largest lag counts
    hold.decay(10.5)
    assert hold.grace_s > 10.0


def test_only_peers_bound_to_distinct_validators_of_the_set_count() -> None:
    """Peer ids are free to mint: lags of peers bound to no validator, or to one outside the set, count for
    nothing, and one validator's many peers count once (their largest lag)."""
    hold = OwnTxHold(tolerated=1, cap_s=MAX_GRACE_S, validators=frozenset({V1, V2}))
    old = b"o" * 32
    hold.queued(old, 0)
    hold.published(1, 0.0)
    hold.decay(4.0)  # built 4 s after `old` went out: each ask below shows a 6 s lag
    hold.bind("outsider", b"x" * 20, 4.0)  # a key that signs its record but holds no seat
    hold.bind("v1-a", V1, 4.0)
    hold.bind("v1-b", V1, 4.0)  # one validator, a second peer id
    for peer in ("sybil-1", "sybil-2", "sybil-3", "outsider", "v1-a", "v1-b"):
        hold.asked(peer, [old], 4.0)
    assert hold.grace_s == MIN_GRACE_S  # one validator's lag, however many peers show it
    hold.bind("v2", V2, 4.0)
    hold.asked("v2", [old], 4.0)
    assert hold.grace_s == pytest.approx(6.0)  # two distinct validators: the second largest counts
    hold.validators = frozenset({V2})  # V1 leaves the set at the next height
    hold.decay(4.0)
    assert hold.grace_s == MIN_GRACE_S
