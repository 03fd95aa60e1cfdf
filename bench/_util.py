"""Small timing helpers shared by the bench scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], *, min_seconds: float = 0.5, batch: int = 100) -> float:
    """Calls per second of `fn`, measured over at least `min_seconds`."""
    fn()  # warm up
    count = 0
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed


def fmt_rate(r: float) -> str:
    return f"{r:>12,.0f}/s"


def row(label: str, ours: float, baseline: float, baseline_label: str) -> str:
    return f"  {label:<34}{fmt_rate(ours)}   {baseline_label:<26}{fmt_rate(baseline)}   ratio {ours / baseline:5.2f}"
