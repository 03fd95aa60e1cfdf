"""Rows through the shared arena: each row's input is written once, straight into the arena (`Writer.join`),
and the worker stacks a rows job's outputs there directly (`Writer.reserve`). The results must stay exactly
those of one job each, and no byte the arena held before a hand-off may travel in a reply."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest

from tests.vm.test_sandbox_rows import model_jobs
from tests.vm.test_sandbox_worker import assert_same, package
from vm.sandbox.executor import InferJob, Job, JobResult, LocalExecutor, Runner, outputs_result
from vm.sandbox.handoff import Arena, ArrayRef, Writer
from vm.sandbox.protocol import InferRows
from vm.sandbox.worker import WorkerPool, _result_types, _serve_rows

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(size=1) as p:
        yield p


def big_block() -> list[Job]:
    """Enough rows of two models that both the stacked inputs and the stacked outputs belong in the arena
    (over INLINE_BYTES each), with rows that end in a verdict (outputs off any grid)."""
    return model_jobs(360, seed=11, mlp_every=2, overflow_every=14)


def test_rows_through_the_arena_give_the_results_of_single_jobs(pool: WorkerPool) -> None:
    jobs = big_block()
    expected = LocalExecutor().run_batch(jobs)
    assert any(r.error is not None for r in expected) and sum(r.outputs is not None for r in expected) > 300
    before = pool.row_jobs
    for _ in range(2):  # the second hand-off finds the first one's bytes in the arena
        assert_same(pool.run_batch(jobs), expected)
    assert pool.row_jobs - before == 2 * len(jobs)


def test_join_stacks_rows_in_place_and_refuses_another_dtype() -> None:
    arena = Arena(1 << 16)
    try:
        rows = [np.full((2, 3), i, np.float32) for i in range(5)]
        writer = Writer(arena, 100)
        ref = writer.join(rows, (2, 3))
        assert ref is not None and ref.offset == 128 and ref.shape == (5, 2, 3)
        np.testing.assert_array_equal(arena.view(ref), np.stack(rows))
        assert writer.end == 128 + 128  # 120 bytes, aligned
        scalars = [np.array(i, np.int64) for i in range(3)]
        ref = writer.join(scalars, ())
        assert ref is not None
        np.testing.assert_array_equal(arena.view(ref), np.arange(3))
        with pytest.raises((TypeError, ValueError)):  # never a silent cast
            writer.join([rows[0], rows[1].astype(np.float64)], (2, 3))
        assert Writer(arena, (1 << 16) - 64).join(rows, (2, 3)) is None  # does not fit
    finally:
        arena.close()


def test_a_separate_rows_outputs_are_zeros_not_the_arenas_old_bytes() -> None:
    """A row that ends in a verdict travels in `separate`; its place in the stacked outputs, reserved in the
    arena, holds zeros, never what an earlier hand-off left there."""
    mlp = package("digits_mlp")
    rng = np.random.default_rng(3)
    x = rng.random((80, 1, 64), dtype=np.float32)
    x[[0, 7, 79]] = 3e38  # verdicts: the first row, one inside, the last
    arena = Arena(1 << 20)
    try:
        arena.view_at(np.dtype(np.uint8), (1 << 20,), 0)[...] = 0xA5  # an earlier hand-off's bytes
        writer = Writer(arena, 0)
        ref = writer.put(x)
        assert ref is not None
        job = InferRows(tuple(range(80)), mlp.model_id, mlp, {"x": ref})
        result = _serve_rows(Runner(1 << 28), job, arena, Writer(arena, writer.end), frozenset())
        assert [row for row, _ in result.separate] == [0, 7, 79]
        ((name, out),) = result.outputs
        assert isinstance(out, ArrayRef)  # 80 rows of int64 (1, 10): in the arena
        stacked = arena.view(out)
        expected = LocalExecutor().run_batch([InferJob(mlp, {"x": row}) for row in x])
        for row, want in enumerate(expected):
            if want.outputs is None:
                assert not stacked[row].any()
            else:
                np.testing.assert_array_equal(stacked[row], want.outputs[name])
    finally:
        arena.close()


def test_outputs_result_is_a_job_result_like_the_constructors() -> None:
    outputs = {"y": np.arange(4, dtype=np.int32)}
    fast, slow = outputs_result(outputs), JobResult(outputs=outputs)
    assert type(fast) is JobResult and fast == slow and fast.ok
    assert (fast.info, fast.error, fast.golden) == (None, None, None) and fast.outputs is outputs
    assert _result_types(fast)
    back = pickle.loads(pickle.dumps(fast))
    assert type(back) is JobResult and back.error is None
    np.testing.assert_array_equal(back.outputs["y"], outputs["y"])  # type: ignore[index]
