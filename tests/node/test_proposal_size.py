"""Proposal sizing: a proposer takes as many transactions as validate within a share of timeout_propose,
judged by its own recent block builds (node/proposal_size.py)."""

from __future__ import annotations

import pytest

from node.proposal_size import (
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
    before = sizer.max_txs(3000, 10_000)
    assert before == int(1.0 / PRIOR_SECONDS_PER_TX)
    sizer.observe(MIN_SAMPLE_TXS - 1, 10.0)  # too small to say anything about a transaction
    sizer.observe(5_000, 0.0)
    assert sizer.samples == 0 and sizer.max_txs(3000, 10_000) == before
    sizer.observe(2_000, 1.0)  # the first measurement replaces the prior: 500 us each
    assert sizer.seconds_per_tx == pytest.approx(500e-6) and sizer.max_txs(3000, 10_000) == 2_000
    sizer.observe(2_000, 0.2)  # faster builds grow the next proposal, smoothed
    assert sizer.seconds_per_tx == pytest.approx(SMOOTHING * 100e-6 + (1 - SMOOTHING) * 500e-6)
    assert sizer.max_txs(3000, 10_000) > 2_000
    for _ in range(30):
        sizer.observe(2_000, 0.1)  # 50 us each: 20,000 would fit, the cap holds
    assert sizer.max_txs(3000, 10_000) == 10_000
    # A longer timeout (a governance change, read per height) lets the same machine propose more.
    slow = ProposalSizer(seconds_per_tx=1e-3)
    assert slow.max_txs(3000, 10_000) == 1_000 and slow.max_txs(6000, 10_000) == 2_000
