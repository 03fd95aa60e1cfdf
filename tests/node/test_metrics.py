"""Node metrics: gauges read at scrape time, histograms fed by events, one registry per node."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.metrics import NodeMetrics, StatusSample, TimedExecutor
from vm.models import load_model
from vm.sandbox.executor import CheckJob, InferJob, LocalExecutor, ModelPackage

pytestmark = pytest.mark.node


def scrape(metrics: NodeMetrics) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_gauges_follow_the_status_source_at_scrape_time() -> None:
    state = {"height": 5}
    metrics = NodeMetrics(lambda: StatusSample(state["height"], 2, 3, 10, 4096, True, 8, 1, 1))
    first = scrape(metrics)
    assert first["inferchain_height"] == 5
    assert first["inferchain_round"] == 2
    assert first["inferchain_peers"] == 3
    assert first["inferchain_mempool_size"] == 10
    assert first["inferchain_poi_score"] == pytest.approx(0.8)
    assert first["inferchain_poi_challenges{outcome=missed}"] == 1
    state["height"] = 6
    assert scrape(metrics)["inferchain_height"] == 6


def test_block_interval_uses_block_times_and_ignores_the_first_block() -> None:
    metrics = NodeMetrics()
    metrics.observe_block(10_000, 3)
    metrics.observe_block(11_500, 0)
    metrics.observe_block(13_500, 7)
    values = scrape(metrics)
    assert values["inferchain_block_interval_seconds_count"] == 2
    assert values["inferchain_block_interval_seconds_sum"] == pytest.approx(3.5)
    assert values["inferchain_block_txs_sum"] == 10
    assert "inferchain_height" not in values  # no status source: no made-up gauges


def test_inference_time_by_phase_and_registries_are_per_node() -> None:
    a, b = NodeMetrics(), NodeMetrics()
    a.observe_inference(0.004, "build")
    a.observe_inference(0.002, "validate")
    values = scrape(a)
    assert values["inferchain_inference_seconds_count{phase=build}"] == 1
    assert values["inferchain_inference_seconds_count{phase=validate}"] == 1
    assert "inferchain_inference_seconds_count{phase=build}" not in scrape(b)


def test_replacing_the_status_source_does_not_duplicate_metrics() -> None:
    metrics = NodeMetrics(lambda: StatusSample(1, 0, 0, 0))
    metrics.set_status_source(lambda: StatusSample(9, 0, 0, 0))
    assert scrape(metrics)["inferchain_height"] == 9


def test_p2p_counters_are_exported() -> None:
    sample = StatusSample(1, 0, 2, 0, p2p=(("delivery_dropped.votes", 3), ("handler_errors.txs", 1)))
    scraped = scrape(NodeMetrics(lambda: sample))
    assert scraped["inferchain_p2p_events_total{event=delivery_dropped.votes}"] == 3
    assert scraped["inferchain_p2p_events_total{event=handler_errors.txs}"] == 1


def test_the_timed_executor_counts_registration_checks_and_inferences_apart() -> None:
    """Real jobs on a real in-process executor: one check and two inferences of the committed PoI model."""
    model = load_model("poi_mix")
    package = ModelPackage(b"poi_mix", model.model_bytes, model.spec, model.golden)
    inputs = model.golden.cases[0].inputs
    metrics = NodeMetrics()
    executor = TimedExecutor(LocalExecutor(), metrics)
    try:
        results = executor.run_batch([CheckJob(model.model_bytes, model.spec), InferJob(package, inputs),
                                      InferJob(package, inputs)])
    finally:
        executor.close()
    assert [r.ok for r in results] == [True, True, True]
    values = scrape(metrics)
    assert values["inferchain_inference_seconds_count{phase=check}"] == 1
    assert values["inferchain_inference_seconds_count{phase=run}"] == 2
