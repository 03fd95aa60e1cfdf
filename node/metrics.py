"""Prometheus metrics of one node, served at the RPC server's `/metrics`.

Each node owns its own `CollectorRegistry` (never the process-global one), so several nodes in one test
process do not collide. Gauges that mirror node state (height, round, peers, mempool, PoI score) are read
at scrape time from a status callback, so they are never stale; what only exists as an event (a block's
interval, one inference's run time) is observed as it happens into histograms.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.gctune import timer as gc_timer
from vm.sandbox.executor import CheckJob, Executor, Job, JobResult

__all__ = ["CONTENT_TYPE_LATEST", "NodeMetrics", "StatusSample", "TimedExecutor"]

BLOCK_INTERVAL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class StatusSample:
    """What the gauges show, read from the node when Prometheus scrapes."""

    height: int
    round: int
    peers: int
    mempool_size: int
    mempool_bytes: int = 0
    is_validator: bool = False
    poi_correct: int = 0
    poi_wrong: int = 0
    poi_missed: int = 0
    catching_up: bool = False
    # p2p's counters (P2PCounters.snapshot(): drops, penalties, bans, handler errors, ...), by name.
    p2p: tuple[tuple[str, int], ...] = ()
    # Committed blocks by how `finalize_block` got their execution (VMApplication.finalize_counts), by path.
    finalized: tuple[tuple[str, int], ...] = ()

    @property
    def poi_score(self) -> float:
        """Share of scored PoI challenges this node answered correctly (1.0 before any was scored)."""
        total = self.poi_correct + self.poi_wrong + self.poi_missed
        return 1.0 if total == 0 else self.poi_correct / total


class _StatusCollector(Collector):
    def __init__(self, sample: Callable[[], StatusSample | None]) -> None:
        self._sample = sample

    def describe(self) -> Iterator[Metric]:
        """Nothing: registering this collector must not read the node (it may still be under construction)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        s = self._sample()
        if s is None:
            return
        yield GaugeMetricFamily("inferchain_height", "Height of the last committed block", value=s.height)
        yield GaugeMetricFamily("inferchain_round", "Consensus round at the height being decided",
                                value=s.round)
        yield GaugeMetricFamily("inferchain_peers", "Connected libp2p peers", value=s.peers)
        yield GaugeMetricFamily("inferchain_mempool_size", "Transactions in the mempool",
                                value=s.mempool_size)
        yield GaugeMetricFamily("inferchain_mempool_bytes", "Encoded bytes of the mempool's transactions",
                                value=s.mempool_bytes)
        yield GaugeMetricFamily("inferchain_catching_up", "1 while the node syncs blocks from peers",
                                value=int(s.catching_up))
        yield GaugeMetricFamily("inferchain_is_validator", "1 when this node's key is in the validator set",
                                value=int(s.is_validator))
        yield GaugeMetricFamily("inferchain_poi_score",
                                "This validator's share of correctly answered PoI challenges",
                                value=s.poi_score)
        counts = GaugeMetricFamily("inferchain_poi_challenges", "This validator's scored PoI challenges",
                                   labels=["outcome"])
        counts.add_metric(["correct"], s.poi_correct)
        counts.add_metric(["wrong"], s.poi_wrong)
        counts.add_metric(["missed"], s.poi_missed)
        yield counts
        if s.p2p:
            p2p = CounterMetricFamily("inferchain_p2p_events", "p2p counters: gossip delivered/dropped/rejected, "
                                      "penalties, bans, handler errors, requests", labels=["event"])
            for name, value in s.p2p:
                p2p.add_metric([name], value)
            yield p2p
        if s.finalized:
            finalized = CounterMetricFamily(
                "inferchain_finalized_blocks", "Committed blocks by how their execution was found: reused (executed "
                "when built or validated), unexecuted or other_base (executed again at commit)", labels=["path"])
            for name, value in s.finalized:
                finalized.add_metric([name], value)
            yield finalized


class _GcCollector(Collector):
    """The process's garbage collector (node/gctune.py): thresholds, frozen objects, and collections with
    their time by generation. Process-wide figures: several nodes in one test process show the same."""

    def collect(self) -> Iterator[Metric]:
        stats = gc_timer.stats()
        thresholds = GaugeMetricFamily("inferchain_gc_threshold", "The collector's threshold by generation",
                                       labels=["generation"])
        counts = CounterMetricFamily("inferchain_gc_collections", "Collections by generation",
                                     labels=["generation"])
        seconds = CounterMetricFamily("inferchain_gc_seconds", "Time spent in collections by generation",
                                      labels=["generation"])
        longest = GaugeMetricFamily("inferchain_gc_max_seconds", "The longest collection by generation",
                                    labels=["generation"])
        collected = CounterMetricFamily("inferchain_gc_collected_objects",
                                        "Unreachable objects (cycles) freed by collections, by generation",
                                        labels=["generation"])
        for gen, threshold in enumerate(gc.get_threshold()):
            label = [str(gen)]
            thresholds.add_metric(label, threshold)
            counts.add_metric(label, stats.collections[gen])
            seconds.add_metric(label, stats.seconds[gen])
            longest.add_metric(label, stats.max_seconds[gen])
            collected.add_metric(label, stats.collected[gen])
        yield from (thresholds, counts, seconds, longest, collected)
        # Counted on each scrape (a list of every tracked object: ~1 ms per 100,000): what a full collection
        # would walk now.
        yield GaugeMetricFamily("inferchain_gc_tracked_objects",
                                "Objects the collector tracks outside the frozen heap (what a full collection walks)",
                                value=len(gc.get_objects()))
        yield GaugeMetricFamily("inferchain_gc_frozen_objects",
                                "Objects in the permanent generation (frozen after start-up, never scanned)",
                                value=gc.get_freeze_count())


class NodeMetrics:
    """The node's metrics. `observe_*` are called by the services; `render` by the `/metrics` route."""

    def __init__(self, sample: Callable[[], StatusSample | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.block_interval = Histogram(
            "inferchain_block_interval_seconds", "Time between consecutive committed blocks (block times)",
            buckets=BLOCK_INTERVAL_BUCKETS, registry=self.registry)
        self.inference_time = Histogram(
            "inferchain_inference_seconds", "Run time of one model inference on this node",
            ["phase"], buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.block_txs = Histogram(
            "inferchain_block_txs", "Transactions per committed block",
            buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000), registry=self.registry)
        self._last_block_time_ms: int | None = None
        self._status: _StatusCollector | None = None
        self.registry.register(_GcCollector())
        if sample is not None:
            self.set_status_source(sample)

    def set_status_source(self, sample: Callable[[], StatusSample | None]) -> None:
        """Read gauges from `sample` at scrape time (replaces an earlier source)."""
        if self._status is not None:
            self.registry.unregister(self._status)
        self._status = _StatusCollector(sample)
        self.registry.register(self._status)

    def observe_block(self, block_time_ms: int, n_txs: int) -> None:
        """A block was committed; its interval is measured between block times, not wall-clock arrival."""
        if self._last_block_time_ms is not None and block_time_ms >= self._last_block_time_ms:
            self.block_interval.observe((block_time_ms - self._last_block_time_ms) / 1000)
        self._last_block_time_ms = block_time_ms
        self.block_txs.observe(n_txs)

    def observe_inference(self, seconds: float, phase: str = "validate") -> None:
        """One model job took `seconds`; `phase` names the kind of job ("run", "check", ...)."""
        self.inference_time.labels(phase=phase).observe(seconds)

    def observe_inferences(self, seconds: float, count: int, phase: str = "validate") -> None:
        """`count` model jobs of `phase` took `seconds` each: the histogram as `count` calls of
        `observe_inference` leave it (its sum up to float rounding), in one update of the bucket and the sum
        instead of `count` (a block's thousands of tiny inferences cost ~2 µs each that way)."""
        if count <= 0:
            return
        child = self.inference_time.labels(phase=phase)
        total, buckets = getattr(child, "_sum", None), getattr(child, "_buckets", None)
        bounds = getattr(child, "_upper_bounds", None)
        if total is None or buckets is None or bounds is None or len(buckets) != len(bounds):
            for _ in range(count):  # a prometheus_client laid out otherwise: its public call, once per job
                child.observe(seconds)
            return
        total.inc(seconds * count)
        for bucket, bound in zip(buckets, bounds, strict=True):
            if seconds <= bound:
                bucket.inc(count)
                break

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimedExecutor:
    """Wraps the VM's model executor to feed `inferchain_inference_seconds`.

    The executor runs one batch of jobs per block (docs/design.md §2.8), so the time of a batch is spread evenly
    over its inference jobs; it includes the hand-off to the worker process, which is what a block's
    inference work costs this node. Phase "check" is a registration check, "run" an inference.
    """

    def __init__(self, inner: Executor, metrics: NodeMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        started = time.perf_counter()
        results = self._inner.run_batch(jobs)
        if jobs:
            each = (time.perf_counter() - started) / len(jobs)
            checks = sum(1 for job in jobs if isinstance(job, CheckJob))
            self._metrics.observe_inferences(each, checks, "check")
            self._metrics.observe_inferences(each, len(jobs) - checks, "run")
        return results

    def holds(self, model_id: bytes) -> bool:
        """The inner pool's answer (`WorkerPool.holds`: a resident model loaded ahead, vm/resident.py); False
        when it cannot say, so the node's preload loads it."""
        holds = getattr(self._inner, "holds", None)
        return bool(holds(model_id)) if holds is not None else False

    def unpin_except(self, keep: frozenset[bytes]) -> int:
        """The inner pool's pinned sessions of models not in `keep` dropped (vm/resident.unpin_departed)."""
        unpin = getattr(self._inner, "unpin_except", None)
        return int(unpin(keep)) if unpin is not None else 0

    def close(self) -> None:
        self._inner.close()
