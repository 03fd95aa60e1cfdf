"""The hand-off goal's verdict from alternating raw/VM pairs: a figure with its spread, and "met", "NOT met" or
"cannot tell" (bench/vm.py, part 0; docs/performance-sandbox.md, "Single jobs: the verdict and the lone job").

One run's median of VM - raw moved by +-40 us between runs of the same code, more than its distance to the
goal, so a single median read against the goal decided nothing. Here the figure (median VM time against median
raw time, as the goal states it) comes with a 90 % interval from a two-level bootstrap: rounds resampled, then
pairs within each drawn round, so that both the pairs' scatter and the drift between rounds (the load moving
while the bench runs) widen it; over several runs (`--runs`, each with new workers), runs are drawn first,
so the spread between runs widens it too. The verdict reads the interval: met when all of it is within the goal, NOT met
when none of it is, else "cannot tell". A "NOT met" measured while the worker waited in the run queue for more
than a quarter of the goal's margin per job is "cannot tell at this load" instead: there the scheduler, not
the hand-off, decides the figure (a "met" under load stands: load only makes the VM side slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.90


@dataclass(frozen=True, slots=True)
class Interval:
    """A statistic of the pairs and its bootstrap interval (`low`, `high`)."""

    value: float
    low: float
    high: float


_Round = tuple[Sequence[float], Sequence[float]]


def compute_intervals(rounds: Sequence[_Round], *, seed: int = 0, resamples: int = RESAMPLES,
                      level: float = LEVEL) -> tuple[Interval, Interval]:
    """median(VM) - median(raw) and median(VM) / median(raw) of all pairs, each with its two-level bootstrap
    interval. `rounds` holds each round's (raw times, VM times), paired by position."""
    return compute_run_intervals([rounds], seed=seed, resamples=resamples, level=level)


def compute_run_intervals(runs: Sequence[Sequence[_Round]], *, seed: int = 0, resamples: int = RESAMPLES,
                          level: float = LEVEL) -> tuple[Interval, Interval]:
    """As `compute_intervals` over several runs (each its own workers, started at another moment): runs drawn
    with replacement, then rounds within each drawn run, then pairs within each drawn round, so that the
    spread between runs widens the interval too (with one run, this is the two-level bootstrap)."""
    data = [[(np.asarray(raw, dtype=np.float64), np.asarray(vm, dtype=np.float64)) for raw, vm in run]
            for run in runs]
    if not data or any(not run or any(len(r) == 0 or len(r) != len(v) for r, v in run) for run in data):
        raise ValueError("each round needs as many raw as VM times, at least one, in every run")
    raw_all = np.concatenate([r for run in data for r, _ in run])
    vm_all = np.concatenate([v for run in data for _, v in run])
    diff = float(np.median(vm_all) - np.median(raw_all))
    ratio = float(np.median(vm_all) / np.median(raw_all))
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    ratios = np.empty(resamples)
    for i in range(resamples):
        raw_parts: list[np.ndarray] = []
        vm_parts: list[np.ndarray] = []
        for run_index in (rng.integers(0, len(data), len(data)) if len(data) > 1 else (0,)):
            run = data[run_index]
            for round_index in rng.integers(0, len(run), len(run)):
                raw, vm = run[round_index]
                picks = rng.integers(0, len(raw), len(raw))  # pairs stay pairs
                raw_parts.append(raw[picks])
                vm_parts.append(vm[picks])
        raw_m, vm_m = np.median(np.concatenate(raw_parts)), np.median(np.concatenate(vm_parts))
        diffs[i], ratios[i] = vm_m - raw_m, vm_m / raw_m
    tail = (1 - level) / 2 * 100
    low_d, high_d = np.percentile(diffs, [tail, 100 - tail])
    low_r, high_r = np.percentile(ratios, [tail, 100 - tail])
    return Interval(diff, float(low_d), float(high_d)), Interval(ratio, float(low_r), float(high_r))


def compute_verdict(figure: Interval, goal: float, margin_s: float, queued_s: float) -> str:
    """The goal's verdict for `figure` (at most `goal`): `margin_s` is the goal's allowance in seconds (100 us,
    or 10 % of the raw time), `queued_s` the worker's mean run-queue wait per job."""
    if figure.high <= goal:
        return "met"
    if figure.low > goal:
        return "cannot tell at this load" if queued_s > margin_s / 4 else "NOT met"
    return "cannot tell"


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """The lower quartile, median and upper quartile of `values`."""
    q1, q2, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q1), float(q2), float(q3)
