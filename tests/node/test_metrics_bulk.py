"""NodeMetrics.observe_inferences: one update for a block's jobs leaves the histogram as one observation per job."""

from __future__ import annotations

import pytest

from node.metrics import NodeMetrics, TimedExecutor
from tests.node.test_metrics import scrape
from vm.sandbox.executor import CheckJob, InferJob, Job, JobResult

pytestmark = pytest.mark.node


@pytest.mark.parametrize("seconds", [0.0, 1e-6, 0.0049, 0.005, 0.3, 1e6])
def test_bulk_equals_one_observation_per_job(seconds: float) -> None:
    one, bulk = NodeMetrics(), NodeMetrics()
    for _ in range(37):
        one.observe_inference(seconds, "run")
    bulk.observe_inferences(seconds, 37, "run")
    bulk.observe_inferences(seconds, 0, "check")
    a, b = scrape(one), scrape(bulk)
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key.endswith(("_created", "_created{phase=run}")):
            continue
        assert b[key] == pytest.approx(value), key


class _Fixed:
    def run_batch(self, jobs: list[Job]) -> list[JobResult]:
        return [JobResult() for _ in jobs]

    def close(self) -> None:
        pass


def test_timed_executor_counts_each_job_by_phase() -> None:
    metrics = NodeMetrics()
    check = CheckJob(b"model", None)  # type: ignore[arg-type]
    infer = InferJob(None, {})  # type: ignore[arg-type]
    TimedExecutor(_Fixed(), metrics).run_batch([infer, check, infer, infer])
    values = scrape(metrics)
    assert values["inferchain_inference_seconds_count{phase=run}"] == 3
    assert values["inferchain_inference_seconds_count{phase=check}"] == 1
