"""Proposal sizing: a proposer takes as many transactions as validate within a share of timeout_propose,
judged by its own recent block builds (node/proposal_size.py)."""

from __future__ import annotations

import pytest

from node.proposal_size import (
    FIRST_PROPOSAL_TXS,
    GROWTH,
    MIN_PROPOSAL_TXS,
    MIN_SAMPLE_TXS,
    PRIOR_SECONDS_PER_TX,
    SMOOTHING,
    ProposalSizer,
    compute_proposal_txs,
)

pytestmark = pytest.mark.node


def test_the_proposal_holds_what_validates_within_the_share_of_the_propose_timeout() -> None:
    # 3 s x 1/3 = 1 s of validation at 200 us per transaction: 5,000 transactions.
    assert compute_proposal_txs(3000, 1 / 3, 200e-6, 10_000) == 5_000
    assert compute_proposal_txs(3000, 1 / 3, 50e-6, 10_000) == 10_000  # the block's own cap still holds
    assert compute_proposal_txs(3000, 1 / 3, 0.1, 10_000) == MIN_PROPOSAL_TXS  # a backlog still drains
    assert compute_proposal_txs(3000, 1 / 3, 0.1, 100) == 100  # a cap under the floor wins


def test_the_estimate_follows_the_builds_of_this_node() -> None:
    sizer = ProposalSizer()
    assert sizer.max_txs(3000, 10_000) == FIRST_PROPOSAL_TXS  # nothing measured yet: the slow start's first
    sizer.observe(MIN_SAMPLE_TXS - 1, 10.0)  # too small to say anything about a transaction
    sizer.observe(5_000, 0.0)
    assert sizer.samples == 0 and sizer.seconds_per_tx == PRIOR_SECONDS_PER_TX
    sizer.observe(2_000, 1.0)  # the first measurement replaces the prior: 500 us each
    assert sizer.seconds_per_tx == pytest.approx(500e-6) and sizer.max_txs(3000, 10_000) == 2_000
    sizer.observe(2_000, 0.2)  # faster builds grow the next proposal, smoothed
    assert sizer.seconds_per_tx == pytest.approx(SMOOTHING * 100e-6 + (1 - SMOOTHING) * 500e-6)
    assert sizer.max_txs(3000, 10_000) > 2_000
    for _ in range(30):
        sizer.observe(6_000, 0.3)  # 50 us each: 20,000 would fit, the cap holds
    assert sizer.max_txs(3000, 10_000) == 10_000
    # A longer timeout (a governance change, read per height) lets the same machine propose more.
    slow = ProposalSizer(seconds_per_tx=1e-3, last_txs=5_000)
    assert slow.max_txs(3000, 10_000) == 1_000 and slow.max_txs(6000, 10_000) == 2_000


def test_a_proposal_grows_at_most_twice_the_last_block_measured() -> None:
    """The slow start: when the load starts (or turns from transfers to inferences) the estimate is a guess,
    so each proposal is at most GROWTH times the last block built or validated here; the first loaded height
    of a tiny-inference devnet run lost four rounds to blocks sized by the prior before it."""
    sizer = ProposalSizer()  # the prior (250 us) alone would allow 4,000
    sizes = []
    for _ in range(5):
        n = sizer.max_txs(3000, 10_000)
        sizes.append(n)
        sizer.observe(n, n * 150e-6)  # each block as large as allowed, 150 us per transaction measured
    assert sizes == [FIRST_PROPOSAL_TXS * GROWTH**k for k in range(4)] + [int(1.0 / 150e-6)]
    sizer.observe(30, 0.01)  # light load: a block too small to sample, but the base of the next proposal
    assert sizer.seconds_per_tx == pytest.approx(150e-6) and sizer.max_txs(3000, 10_000) == FIRST_PROPOSAL_TXS
    sizer.observe(0, 0.0)
    assert sizer.max_txs(3000, 100) == 100  # the block's own cap still bounds it
