"""Worker isolation: same results as in-process, and crashes, memory and CPU exhaustion, timeouts are
LocalFaults after which the pool keeps working; the parent's threading environment never reaches a worker.

Models that crash or exhaust a worker are given to the pool directly (unchecked): registration would refuse
them, which is exactly why the pool must survive them anyway.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Iterator

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import LocalFault
from tools.attacks import make_model, tensor
from vm.models import load_model, model_names
from vm.sandbox.errors import GoldenMismatch, InputMismatch, WorkerFault
from vm.sandbox.executor import CheckJob, InferJob, Job, JobResult, LocalExecutor, ModelPackage
from vm.sandbox.golden import make_golden
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

F = TensorProto.FLOAT


def package(name: str) -> ModelPackage:
    model = load_model(name)
    return ModelPackage(name.encode(), model.model_bytes, model.spec, model.golden)


def mixed_jobs(count: int = 30) -> list[Job]:
    rng = np.random.default_rng(11)
    jobs: list[Job] = []
    for i in range(count):
        name = model_names()[i % 3]
        pkg = package(name)
        spec = pkg.spec.inputs[0]
        if spec.dtype == "uint8":
            value = rng.integers(0, 256, size=spec.shape, dtype=np.uint8)
        else:
            value = rng.random(spec.shape, dtype=np.float32)
        jobs.append(InferJob(pkg, {spec.name: value}))
    poi = load_model("poi_mix")
    jobs.insert(5, CheckJob(poi.model_bytes, poi.spec))
    jobs.insert(9, CheckJob(b"not a model", poi.spec))
    return jobs


def assert_same(a: list[JobResult], b: list[JobResult]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.outputs is None) == (y.outputs is None)
        if x.outputs is not None and y.outputs is not None:
            assert list(x.outputs) == list(y.outputs)
            for key in x.outputs:
                assert x.outputs[key].dtype == y.outputs[key].dtype
                np.testing.assert_array_equal(x.outputs[key], y.outputs[key])
        assert x.info == y.info
        assert type(x.error) is type(y.error) and str(x.error) == str(y.error)


def _model_package(model_id: bytes, model: object, inputs: tuple[ArraySpec, ...]) -> ModelPackage:
    return ModelPackage(model_id, model.SerializeToString(), ModelSpec(inputs, CompareMode.EXACT))  # type: ignore[attr-defined]


def crash_job(a: int = -(2**31), b: int = -1) -> InferJob:
    """INT_MIN / -1 in ORT's integer Div raises SIGFPE and kills the process."""
    model = make_model(
        [helper.make_node("Div", ["a", "b"], ["y"])],
        [tensor("a", TensorProto.INT32, (1,)), tensor("b", TensorProto.INT32, (1,))],
        [tensor("y", TensorProto.INT32, (1,))],
    )
    specs = (ArraySpec("a", "int32", (1,)), ArraySpec("b", "int32", (1,)))
    return InferJob(_model_package(b"crash", model, specs), {"a": np.array([a], np.int32), "b": np.array([b], np.int32)})


def memory_job() -> InferJob:
    """Expand one float to 2^30 of them: a 4 GiB allocation."""
    shape = numpy_helper.from_array(np.array([1 << 30], np.int64), "shape")
    nodes = [helper.make_node("Expand", ["x", "shape"], ["big"]), helper.make_node("ReduceMax", ["big"], ["y"], keepdims=0)]
    model = make_model(nodes, [tensor("x", F, (1,))], [tensor("y", F, ())], [shape])
    pkg = ModelPackage(
        b"memory", model.SerializeToString(), ModelSpec((ArraySpec("x", "float32", (1,)),), CompareMode.TOLERANT, 0, Tolerance(1, 100))
    )
    return InferJob(pkg, {"x": np.ones(1, np.float32)})


def heavy_job(layers: int) -> InferJob:
    """A chain of 2048^3 float MatMuls: seconds of CPU in one run."""
    n = 2048
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"t{i}", "w"], [f"t{i + 1}" if i < layers - 1 else "y"]) for i in range(layers)]
    model = make_model(nodes, [tensor("x", F, (n, n)), tensor("w", F, (n, n))], [tensor("y", F, (n, n))])
    specs = (ArraySpec("x", "float32", (n, n)), ArraySpec("w", "float32", (n, n)))
    pkg = ModelPackage(b"heavy", model.SerializeToString(), ModelSpec(specs, CompareMode.TOLERANT, 0, Tolerance(1, 100)))
    value = np.full((n, n), 1e-3, np.float32)
    return InferJob(pkg, {"x": value, "w": value})


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(size=2, limits=WorkerLimits(memory_bytes=1 << 30)) as p:
        yield p


def test_pool_results_equal_in_process_results(pool: WorkerPool) -> None:
    jobs = mixed_jobs()
    assert_same(pool.run_batch(jobs), LocalExecutor().run_batch(jobs))


def test_verdicts_cross_the_process_boundary(pool: WorkerPool) -> None:
    result = pool.run_batch([InferJob(package("poi_mix"), {"challenge": np.zeros((1, 64), np.int64)})])[0]
    assert isinstance(result.error, InputMismatch)


def test_model_bytes_are_sent_once_per_worker(pool: WorkerPool) -> None:
    """Once a worker holds a model, later jobs reach its cached session whatever bytes they carry."""
    real = package("digits_int8")
    case = real.golden.cases[0]  # type: ignore[union-attr]
    pool.run_batch([InferJob(real, case.inputs)])
    stale = ModelPackage(real.model_id, b"bytes never shipped again", real.spec)
    result = pool.run_batch([InferJob(stale, case.inputs)])[0]
    assert result.outputs is not None
    np.testing.assert_array_equal(result.outputs["scores"], case.outputs["scores"])


def test_crash_is_a_local_fault_and_the_pool_recovers(pool: WorkerPool) -> None:
    restarts = pool.restarts
    with pytest.raises(WorkerFault, match="died") as raised:
        pool.run_batch([crash_job(), *mixed_jobs(4)])
    assert isinstance(raised.value, LocalFault)
    jobs = mixed_jobs(6)
    assert_same(pool.run_batch(jobs), LocalExecutor().run_batch(jobs))
    assert pool.run_batch([crash_job(7, 2)])[0].outputs["y"].tolist() == [3]  # type: ignore[index]
    assert pool.restarts == restarts + 1


def test_memory_exhaustion_is_a_local_fault_and_the_pool_recovers(pool: WorkerPool) -> None:
    with pytest.raises(LocalFault):
        pool.run_batch([memory_job()])
    jobs = mixed_jobs(6)
    assert_same(pool.run_batch(jobs), LocalExecutor().run_batch(jobs))


def test_timeout_is_a_local_fault_and_the_pool_recovers() -> None:
    with WorkerPool(size=1) as p:
        with pytest.raises(WorkerFault, match="timed out"):
            p.run_batch([heavy_job(layers=64)], timeout_s=0.3)
        jobs = mixed_jobs(3)
        assert_same(p.run_batch(jobs), LocalExecutor().run_batch(jobs))
        assert p.restarts == 1


def test_cpu_limit_is_a_local_fault() -> None:
    with WorkerPool(size=1, limits=WorkerLimits(cpu_seconds_per_batch=1)) as p:
        with pytest.raises(WorkerFault, match="died"):
            p.run_batch([heavy_job(layers=64)], timeout_s=120)
        assert p.run_batch(mixed_jobs(1))[0].ok


def test_parent_threading_environment_does_not_reach_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "OMP_NUM_THREADS": "8",
        "MKL_NUM_THREADS": "8",
        "OPENBLAS_NUM_THREADS": "8",
        "ORT_DISABLE_ALL_OPTIMIZATIONS": "0",
        "OMP_WAIT_POLICY": "ACTIVE",
    }.items():
        monkeypatch.setenv(key, value)
    jobs = mixed_jobs()
    with WorkerPool(size=1) as p:
        (info,) = p.describe()
        assert info["env"] == []
        assert (info["intra_op_threads"], info["inter_op_threads"]) == (1, 1)
        assert info["graph_optimization_level"].endswith("ORT_DISABLE_ALL")
        results = p.run_batch(jobs)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert_same(results, LocalExecutor().run_batch(jobs))


def test_golden_mismatch_quarantines_in_the_pool(pool: WorkerPool) -> None:
    good = package("poi_mix")
    case = good.golden.cases[0]  # type: ignore[union-attr]
    wrong = {k: v ^ 1 for k, v in case.outputs.items()}
    bad = ModelPackage(b"poi-bad-golden", good.model_bytes, good.spec, make_golden([(case.inputs, wrong)]))
    with pytest.raises(GoldenMismatch) as raised:
        pool.run_batch([InferJob(bad, case.inputs)])
    assert raised.value.model_id == bad.model_id and bad.model_id in pool.quarantined
    with pytest.raises(GoldenMismatch, match="quarantined"):
        pool.run_batch([InferJob(good, case.inputs), InferJob(bad, case.inputs)])
    assert pool.run_batch([InferJob(good, case.inputs)])[0].ok


def test_closed_pool_refuses_work() -> None:
    p = WorkerPool(size=1)
    p.start()
    p.close()
    with pytest.raises(WorkerFault, match="closed"):
        p.run_batch(mixed_jobs(1))


def test_cpu_budget_is_renewed_from_the_cpu_used_but_not_on_every_hand_off() -> None:
    """The worker's RLIMIT_CPU (vm.sandbox.worker._CpuBudget, run here in the test process with an hour's
    budget and restored after): set from the CPU used so far, left alone by hand-offs that follow within
    REFRESH_S (no syscalls), renewed from the CPU used since once that is past."""
    from vm.sandbox.worker import _CpuBudget

    original = resource.getrlimit(resource.RLIMIT_CPU)
    try:
        budget = _CpuBudget()
        budget.renew(3600)
        first = resource.getrlimit(resource.RLIMIT_CPU)[0]
        used = resource.getrusage(resource.RUSAGE_SELF)
        assert first == math.ceil(used.ru_utime + used.ru_stime + _CpuBudget.REFRESH_S) + 3600
        resource.setrlimit(resource.RLIMIT_CPU, original)  # a renewal within REFRESH_S must not touch it
        budget.renew(3600)
        assert resource.getrlimit(resource.RLIMIT_CPU) == original
        start = time.process_time()
        while time.process_time() - start < 1.05:  # burn CPU past the next whole second
            pass
        budget.renew(3600)
        assert resource.getrlimit(resource.RLIMIT_CPU)[0] > first
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, original)
