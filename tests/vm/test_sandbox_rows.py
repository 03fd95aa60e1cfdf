"""Rows (protocol.InferRows / RowResults): a block's inferences of one model cross to the worker as stacked
arrays and come back stacked. The results must be exactly those of one job each (outputs, verdicts, order),
and a reply that misstates its rows is a worker fault, never results."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import numpy as np
import pytest

import vm.sandbox.worker as worker_module
from tests.vm.test_sandbox_worker import assert_same, package
from vm.sandbox.channel import Channel
from vm.sandbox.errors import WorkerFault
from vm.sandbox.executor import CheckJob, InferJob, Job, JobResult, LocalExecutor
from vm.sandbox.handoff import ArrayRef
from vm.sandbox.protocol import Done, RowResults
from vm.sandbox.worker import WorkerPool, _well_formed

pytestmark = pytest.mark.vm

_MODE_ENV = "INFERCHAIN_TEST_ROWS_MODE"


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(size=2) as p:
        yield p


def model_jobs(n: int, seed: int = 7, mlp_every: int = 3, overflow_every: int = 9) -> list[Job]:
    """`n` inferences of two models, interleaved (every `mlp_every`-th of digits_mlp, the others of
    digits_int8), every `overflow_every`-th with float inputs whose outputs overflow the grid (a verdict)."""
    rng = np.random.default_rng(seed)
    int8, mlp = package("digits_int8"), package("digits_mlp")
    jobs: list[Job] = []
    for i in range(n):
        if i % mlp_every:
            jobs.append(InferJob(int8, {"u": rng.integers(0, 256, (1, 64), dtype=np.uint8)}))
        else:
            x = rng.random((1, 64), dtype=np.float32)
            if i % overflow_every == 0:
                x[0, :] = 3e38  # outputs off any grid: NonFiniteOutput or OffGridOutput
            jobs.append(InferJob(mlp, {"x": x}))
    return jobs


def block_jobs() -> list[Job]:
    """Many jobs of two models in one block, interleaved, with rows that end in a verdict, a job whose input
    is not the declared array (sent on its own: its verdict is the worker's), and a registration check
    between them."""
    int8 = package("digits_int8")
    jobs = model_jobs(120)
    jobs.insert(50, InferJob(int8, {"u": np.zeros((1, 64), np.int64)}))  # not the declared dtype
    jobs.insert(70, CheckJob(b"not a model", int8.spec))
    return jobs


def test_rows_give_the_results_of_single_jobs(pool: WorkerPool) -> None:
    jobs = block_jobs()
    before = pool.row_jobs
    got = pool.run_batch(jobs)
    assert pool.row_jobs - before == 120  # every inference but the mismatched one went as rows
    expected = LocalExecutor().run_batch(jobs)
    assert_same(got, expected)
    verdicts = [type(r.error).__name__ for r in got if r.error is not None]
    assert "InputMismatch" in verdicts and "InvalidModel" in verdicts
    assert any(name in verdicts for name in ("NonFiniteOutput", "OffGridOutput"))


def test_rows_and_one_job_each_agree_across_calls(pool: WorkerPool) -> None:
    """The same jobs one per hand-off (no rows) and in one hand-off (rows) give equal results."""
    jobs = [job for job in block_jobs() if isinstance(job, InferJob)][:40]
    one_each = [pool.run_batch([job])[0] for job in jobs]
    assert_same(pool.run_batch(jobs), one_each)


_ROWS = {0: (0, 1, 2)}
_Y = np.arange(6, dtype=np.int32).reshape(3, 1, 2)


@pytest.mark.parametrize(("results", "ok"), [
    pytest.param(((0, RowResults((("y", _Y),), ())),), True, id="honest"),
    pytest.param(((0, RowResults((("y", ArrayRef("<i4", (3, 1, 2), 0)),), ((1, JobResult()),))),), True,
                 id="honest-arena-separate"),
    pytest.param(((0, JobResult(outputs={"y": _Y[0]})),), False, id="job-result-for-rows"),
    pytest.param(((0, RowResults((("y", "no array"),), ())),), False, id="output-str"),  # type: ignore[arg-type]
    pytest.param(((0, RowResults((("y", np.array([1, "x"], dtype=object)),), ())),), False, id="object-array"),
    pytest.param(((0, RowResults((("y", _Y),), ((True, JobResult()),))),), False, id="row-not-int"),
    pytest.param(((0, RowResults((("y", _Y),), ((1, JobResult(error=ValueError("x"))),))),), False,  # type: ignore[arg-type]
                 id="foreign-error"),
])
def test_pool_refuses_rows_it_cannot_read(results: tuple[object, ...], ok: bool) -> None:
    assert _well_formed(results, None, [0], _ROWS) is ok


def test_rows_results_where_none_were_sent_are_refused() -> None:
    assert not _well_formed(((0, RowResults((("y", _Y),), ())),), None, [0], {})


def _lying_worker_main(sock: socket.socket, limits: object, *spin: object) -> None:
    """A real worker whose RowResults misstate their rows: one row fewer, or a separate row out of range."""
    mode = os.environ[_MODE_ENV]
    real_send = Channel.send

    def send(self: Channel, message: object, fds: tuple[int, ...] = ()) -> None:
        if isinstance(message, Done):
            results = []
            for index, result in message.results:
                if isinstance(result, RowResults):
                    if mode == "short":
                        result = RowResults(tuple((name, value[:-1] if isinstance(value, np.ndarray) else
                                                   ArrayRef(value.dtype, (value.shape[0] - 1, *value.shape[1:]),
                                                            value.offset)) for name, value in result.outputs), ())
                    else:
                        result = RowResults(result.outputs, ((10**6, JobResult()),))
                results.append((index, result))
            message = Done(tuple(results), message.cached)
        real_send(self, message, fds)

    Channel.send = send  # type: ignore[method-assign]
    worker_module._worker_main(sock, limits, *spin)  # type: ignore[arg-type]


def test_rows_that_misstate_their_count_are_a_worker_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [job for job in block_jobs() if isinstance(job, InferJob)][:30]
    expected = LocalExecutor().run_batch(jobs)
    with WorkerPool(1) as pool:
        real_main = worker_module._worker_main
        for mode in ("short", "out-of-range"):
            monkeypatch.setenv(_MODE_ENV, mode)
            monkeypatch.setattr(worker_module, "_worker_main", _lying_worker_main)
            with pytest.raises(WorkerFault, match="malformed rows"):
                pool.run_batch(jobs)
            monkeypatch.setattr(worker_module, "_worker_main", real_main)
        assert_same(pool.run_batch(jobs), expected)  # a fresh, honest worker
        assert pool.restarts == 2
