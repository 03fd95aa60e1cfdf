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
    PROBE_GROWTH,
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


def run_heights(sizer: ProposalSizer, heights: int, seconds_per_tx: float, limit: int = 10_000,
                lost_above: int | None = None) -> list[int]:
    """Each height: the proposal as large as allowed, built and validated at `seconds_per_tx` of wall time
    each (the backlog never runs out), decided in round 0 unless it holds more than `lost_above`."""
    sizes = []
    for _ in range(heights):
        n = sizer.max_txs(3000, limit)
        sizes.append(n)
        sizer.observe(n, n * seconds_per_tx)
        sizer.decided(n, 0 if lost_above is None or n <= lost_above else 1)
    return sizes


def test_blocks_decided_in_round_0_lift_proposals_out_of_a_slow_wall_estimate() -> None:
    """The small-block regime: validations wait for a core and the GIL, 1.25 ms of wall per transaction, so
    the wall estimate allows 800 per proposal. Heights decided in round 0 prove the blocks validated in time,
    and each proposal probes a quarter more, up to the block's cap."""
    stuck = ProposalSizer(seconds_per_tx=1.25e-3, last_txs=800, samples=10)
    sizes = run_heights(stuck, 13, 1.25e-3)
    assert sizes[:3] == [800, int(PROBE_GROWTH * 800), int(PROBE_GROWTH * int(PROBE_GROWTH * 800))]
    assert sizes[-1] == 10_000 and sizes == sorted(sizes)
    assert stuck.seconds_per_tx == pytest.approx(1.25e-3)  # the wall estimate itself is unchanged
    # Without commits (the rule before): the wall estimate alone holds every proposal at 800.
    wall_only = ProposalSizer(seconds_per_tx=1.25e-3, last_txs=800, samples=10)
    for _ in range(12):
        n = wall_only.max_txs(3000, 10_000)
        wall_only.observe(n, n * 1.25e-3)
        assert n == 800


def test_a_height_decided_after_round_0_halves_what_the_probe_allows() -> None:
    """The multiplicative decrease: a lost round may be a block too large to validate in time, so the probe
    falls to half of what it proved; below that the wall estimate still holds."""
    sizer = ProposalSizer(seconds_per_tx=1.25e-3, last_txs=4_000, samples=10)
    sizer.decided(4_000, 0)
    assert sizer.max_txs(3000, 10_000) == 5_000
    sizer.decided(5_000, 2)  # decided in round 2
    assert sizer.proven_txs == 2_000 and sizer.max_txs(3000, 10_000) == 2_500
    sizer.decided(2_500, 1)
    sizer.decided(300, 3)
    assert sizer.proven_txs == 500 and sizer.max_txs(3000, 10_000) == 800  # the wall estimate's floor
    # Blocks over 3,000 lose their round: the probe settles below, never twice the limit.
    sizes = run_heights(ProposalSizer(seconds_per_tx=1.25e-3, last_txs=800, samples=10), 40, 1.25e-3,
                        lost_above=3_000)
    assert max(sizes) <= PROBE_GROWTH * 3_000 and max(sizes[20:]) > 2_000


def test_the_probe_keeps_the_slow_start() -> None:
    """A block proven at one load (5,000 transfers) does not size the first proposal after an idle stretch
    (tiny inferences at ten times the cost may come next): GROWTH times the last block still bounds it."""
    sizer = ProposalSizer(seconds_per_tx=250e-6, samples=10)  # 4,000 fit the wall estimate
    sizer.observe(5_000, 1.25)
    sizer.decided(5_000, 0)
    assert sizer.max_txs(3000, 10_000) == int(PROBE_GROWTH * 5_000)
    sizer.observe(20, 0.01)  # the load stopped: a small block, too small to sample
    assert sizer.max_txs(3000, 10_000) == FIRST_PROPOSAL_TXS
    sizer.decided(20, 0)
    sizer.decided(0, 0)  # empty heights in round 0: nothing proven
    assert sizer.proven_txs == 0 and sizer.max_txs(3000, 10_000) == FIRST_PROPOSAL_TXS
    assert sizer.max_txs(3000, 100) == 100  # the block's cap bounds the probe too
