"""The hand-off goal's verdict from alternating raw/VM pairs: a figure with its spread, and "met", "NOT met" or
"cannot tell" (bench/vm.py, part 0; docs/performance.md, "Single jobs: the verdict and the lone job").

One run's median of VM - raw moved by +-40 us between runs of the same code, more than its distance to the
goal, so a single median read against the goal decided nothing. Here the figure (median VM time against median
raw time, as the goal states it) comes with a 90 % interval from a two-level bootstrap: rounds resampled, then
pairs within each drawn round, so that both the pairs' scatter and the drift between rounds (the load moving
while the bench runs) widen it. The verdict reads the interval: met when all of it is within the goal, NOT met
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


def compute_intervals(rounds: Sequence[tuple[Sequence[float], Sequence[float]]], *, seed: int = 0,
                      resamples: int = RESAMPLES, level: float = LEVEL) -> tuple[Interval, Interval]:
    """median(VM) - median(raw) and median(VM) / median(raw) of all pairs, each with its two-level bootstrap
    interval. `rounds` holds each round's (raw times, VM times), paired by position."""
    raws = [np.asarray(raw, dtype=np.float64) for raw, _ in rounds]
    vms = [np.asarray(vm, dtype=np.float64) for _, vm in rounds]
    if not raws or any(len(r) == 0 or len(r) != len(v) for r, v in zip(raws, vms, strict=True)):
        raise ValueError("each round needs as many raw as VM times, at least one")
    raw_all, vm_all = np.concatenate(raws), np.concatenate(vms)
    diff = float(np.median(vm_all) - np.median(raw_all))
    ratio = float(np.median(vm_all) / np.median(raw_all))
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    ratios = np.empty(resamples)
    for i in range(resamples):
        chosen = rng.integers(0, len(rounds), len(rounds))
        picks = [rng.integers(0, len(raws[r]), len(raws[r])) for r in chosen]  # pairs stay pairs
        raw_s = np.concatenate([raws[r][p] for r, p in zip(chosen, picks, strict=True)])
        vm_s = np.concatenate([vms[r][p] for r, p in zip(chosen, picks, strict=True)])
        raw_m, vm_m = np.median(raw_s), np.median(vm_s)
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
