"""The wake-up before a lone job (vm/sandbox/worker.py, flat.WAKE; docs/sandbox.md "Wake-up before a lone
job"): a pool whose worker has idled past its spin wakes it before building a single job, the worker rehearses
its last job's reading on old bytes, and every job still gets its own outputs, bit for bit those computed in-process;
a wake-up followed by a job that goes pickled (a verdict) changes nothing either; back-to-back jobs send none,
and the node's pool (wake-ups off until measured on an idle machine) sends none at all.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from vm.models import load_model
from vm.sandbox.errors import InputMismatch
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.worker import NEXT_JOB_SPIN_S, WorkerPool

pytestmark = pytest.mark.vm

_TWO_CORES = len(os.sched_getaffinity(0)) >= 2


def _digits() -> ModelPackage:
    m = load_model("digits_int8")
    return ModelPackage(b"digits_int8", m.model_bytes, m.spec, m.golden)


def _jobs(count: int) -> list[InferJob]:
    rng = np.random.default_rng(11)
    package = _digits()
    return [InferJob(package, {"u": rng.integers(0, 256, (1, 64)).astype(np.uint8)}) for _ in range(count)]


def _scores(results: list) -> list[list[float]]:  # type: ignore[type-arg]
    return [r.outputs["scores"].tolist() for r in results]


@pytest.mark.parametrize("spin", [True, False], ids=["pool spins", "pool blocks"])
def test_lone_jobs_after_a_wake_up_get_their_own_outputs(spin: bool) -> None:
    jobs = _jobs(8)
    expected = _scores(LocalExecutor().run_batch(jobs))
    # min_share 0: the spin-waits stay on however busy the machine is, so the wake-up rule is what is tested.
    with WorkerPool(1, spin=spin, spin_min_share=0.0, wake_up=True) as pool:
        pool.run_batch(jobs[:1])  # the model's bytes go pickled; later jobs go flat
        got = [pool.run_batch(jobs[:1])[0]]
        for job in jobs[1:]:
            time.sleep(2 * NEXT_JOB_SPIN_S)  # the worker's spin for a next job is over: a lone job
            got.append(pool.run_batch([job])[0])
        first = [r.outputs["scores"].copy() for r in got]  # type: ignore[index]
        assert _scores(got) == expected
        (info,) = pool.describe()
        if spin and _TWO_CORES:
            assert pool.wakes == len(jobs) - 1
            # Each lone job's worker read the one before it again, but for the first: a worker keeps its jobs
            # for rehearsals only once it has been woken (a pool without wake-ups costs it no copies).
            assert info["rehearsals"] == len(jobs) - 2
        else:  # no core to spare for the pool (one core, or spin-waits off): no wake-up
            assert pool.wakes == 0 and info["rehearsals"] == 0
        pool.run_batch(jobs[:1])
        assert all(np.array_equal(r.outputs["scores"], f) for r, f in zip(got, first, strict=True))  # type: ignore[index]


def test_back_to_back_jobs_send_no_wake_up() -> None:
    jobs = _jobs(20)
    with WorkerPool(1, spin_min_share=0.0, wake_up=True) as pool:
        pool.run_batch(jobs[:1])
        time.sleep(2 * NEXT_JOB_SPIN_S)
        results = [pool.run_batch([job])[0] for job in jobs]
        assert _scores(results) == _scores(LocalExecutor().run_batch(jobs))
        # The first came after an idle spell; the others within the worker's spin (a few may not, where this
        # process waited for a core for longer than that).
        assert pool.wakes >= (1 if _TWO_CORES else 0)
        assert pool.wakes < len(jobs) // 2


def test_a_wake_up_before_a_job_that_goes_pickled_gives_the_same_verdict() -> None:
    """The pool wakes its worker, then finds the inputs do not match the declared ones: the job goes as a
    pickled batch, and the worker answers it with the verdict, after the wake-up's rehearsal."""
    jobs = _jobs(2)
    bad = InferJob(jobs[0].model, {"u": np.zeros((1, 64), np.int32)})
    with WorkerPool(1, spin_min_share=0.0, wake_up=True) as pool:
        pool.run_batch(jobs[:1])
        pool.run_batch(jobs[1:])  # flat: the worker keeps it for a rehearsal
        time.sleep(2 * NEXT_JOB_SPIN_S)
        (result,) = pool.run_batch([bad])
        assert isinstance(result.error, InputMismatch)
        assert "int32" in str(result.error)
        time.sleep(2 * NEXT_JOB_SPIN_S)
        assert _scores(pool.run_batch(jobs[1:])) == _scores(LocalExecutor().run_batch(jobs[1:]))
        assert pool.restarts == 0


def test_the_nodes_pool_sends_no_wake_up() -> None:
    jobs = _jobs(3)
    with WorkerPool(1, spin_min_share=0.0) as pool:
        for job in jobs:
            time.sleep(2 * NEXT_JOB_SPIN_S)
            pool.run_batch([job])
        assert pool.wakes == 0 and pool.describe()[0]["rehearsals"] == 0
