"""The hand-off goal's verdict (bench/verdict.py): an interval that covers the pairs' scatter and the drift
between rounds, and a verdict that says "cannot tell" when the interval straddles the goal."""

from __future__ import annotations

import numpy as np
import pytest

from bench.verdict import compute_intervals, compute_run_intervals, compute_verdict

pytestmark = pytest.mark.vm

GOAL = 100e-6


def _rounds(offset_s: float, noise_s: float, drift_s: float = 0.0, count: int = 6,
            pairs: int = 150, seed: int = 7) -> list[tuple[list[float], list[float]]]:
    rng = np.random.default_rng(seed)
    rounds = []
    for r in range(count):
        raw = 30e-6 + rng.normal(0, noise_s / 10, pairs).clip(-10e-6, 10e-6)
        vm = raw + offset_s + r * drift_s + rng.normal(0, noise_s, pairs)
        rounds.append((raw.tolist(), vm.tolist()))
    return rounds


def test_interval_holds_the_median_difference_and_ratio() -> None:
    rounds = _rounds(60e-6, 5e-6)
    diff, ratio = compute_intervals(rounds, resamples=300)
    raw = np.median(np.concatenate([r for r, _ in rounds]))
    vm = np.median(np.concatenate([v for _, v in rounds]))
    assert diff.value == vm - raw and ratio.value == vm / raw
    assert diff.low <= diff.value <= diff.high and ratio.low <= ratio.value <= ratio.high
    assert diff.low > 50e-6 and diff.high < 70e-6


def test_clear_cases_are_met_and_not_met() -> None:
    met, _ = compute_intervals(_rounds(60e-6, 5e-6), resamples=300)
    missed, _ = compute_intervals(_rounds(160e-6, 5e-6), resamples=300)
    assert compute_verdict(met, GOAL, GOAL, queued_s=0.0) == "met"
    assert compute_verdict(missed, GOAL, GOAL, queued_s=0.0) == "NOT met"


def test_drift_between_rounds_widens_the_interval_to_cannot_tell() -> None:
    """Each round alone is sharp, but the rounds disagree (the load moved): the median alone would read "met"
    or "NOT met" by chance, the interval straddles the goal."""
    steady, _ = compute_intervals(_rounds(95e-6, 3e-6), resamples=300)
    drifting, _ = compute_intervals(_rounds(70e-6, 3e-6, drift_s=12e-6), resamples=300)
    assert drifting.high - drifting.low > 3 * (steady.high - steady.low)
    assert drifting.low < GOAL < drifting.high
    assert compute_verdict(drifting, GOAL, GOAL, queued_s=0.0) == "cannot tell"


def test_a_miss_under_run_queue_waits_is_not_a_verdict() -> None:
    missed, _ = compute_intervals(_rounds(160e-6, 5e-6), resamples=300)
    assert compute_verdict(missed, GOAL, GOAL, queued_s=GOAL / 4 + 1e-6) == "cannot tell at this load"
    met, _ = compute_intervals(_rounds(60e-6, 5e-6), resamples=300)
    assert compute_verdict(met, GOAL, GOAL, queued_s=1e-3) == "met"


def test_unpaired_rounds_are_refused() -> None:
    with pytest.raises(ValueError):
        compute_intervals([([1.0, 2.0], [1.0])])


def test_runs_that_disagree_widen_the_interval_over_runs() -> None:
    """Each run is sharp and steady within itself, but the runs sit 40 µs apart (new workers, another moment
    of the machine's load): drawn as runs, the interval is wider than with the same rounds read as one run's,
    covers both groups, and the verdict is "cannot tell"."""
    runs = [_rounds(offset, 3e-6, count=4, seed=seed) for seed, offset in enumerate((75e-6, 115e-6, 80e-6, 120e-6))]
    over_runs, _ = compute_run_intervals(runs, resamples=300)
    as_rounds, _ = compute_intervals([r for run in runs for r in run], resamples=300)
    assert over_runs.high - over_runs.low > as_rounds.high - as_rounds.low
    assert over_runs.low < GOAL < over_runs.high
    assert compute_verdict(over_runs, GOAL, GOAL, queued_s=0.0) == "cannot tell"
    single, _ = compute_run_intervals(runs[:1], resamples=300)
    assert single == compute_intervals(runs[0], resamples=300)[0]
