"""The shared-memory hand-off (vm/sandbox/handoff.py): arrays of every size and dtype arrive exactly as sent,
the arena grows with the block, the pipe baseline gives the same results, and a worker killed with SIGKILL in
the middle of a batch leaves nothing behind: no entry under /dev/shm, no descriptor or mapping in the node.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import LocalFault
from tests.vm.test_sandbox_worker import assert_same, heavy_job, mixed_jobs
from tools.attacks import make_model, tensor
from vm.sandbox.errors import InputMismatch, WorkerFault
from vm.sandbox.executor import InferJob, Job, LocalExecutor, ModelPackage
from vm.sandbox.handoff import MIN_ARENA_BYTES
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

ARENA_NAME = "memfd:inferchain-handoff"


def doubling_job(shape: tuple[int, ...], dtype: str, seed: int) -> InferJob:
    """y = x + x on an exact model: output as large as the input, so both directions cross the arena."""
    onnx_type = {"int32": TensorProto.INT32, "int64": TensorProto.INT64, "uint8": TensorProto.UINT8}[dtype]
    model = make_model([helper.make_node("Add", ["x", "x"], ["y"])], [tensor("x", onnx_type, shape)],
                       [tensor("y", onnx_type, shape)])
    spec = ModelSpec((ArraySpec("x", dtype, shape),), CompareMode.EXACT)
    package = ModelPackage(f"double-{dtype}-{shape}".encode(), model.SerializeToString(), spec)
    value = np.random.default_rng(seed).integers(0, 100, shape).astype(dtype)
    return InferJob(package, {"x": value})


def _mapped(pid: int | str) -> int:
    """How many of a process's mappings are hand-off arenas."""
    return Path(f"/proc/{pid}/maps").read_text().count(ARENA_NAME)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _open_arenas() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used, closed since
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(ARENA_NAME)
    return count


def test_arrays_of_every_size_arrive_exactly_and_the_arena_grows() -> None:
    small = [doubling_job((1, 7), "uint8", i) for i in range(3)]
    # 3 x 4 MiB of inputs: more than half the first arena, so the pool shares a larger one.
    large = [doubling_job((1024, 1024), "int32", i) for i in range(3)]
    wide = [doubling_job((2, 3, 5), "int64", 9)]
    with WorkerPool(size=1) as pool:
        for batch in (small, [*small, *large, *wide], small):
            jobs: list[Job] = list(batch)
            assert_same(pool.run_batch(jobs), LocalExecutor().run_batch(jobs))
        (info,) = pool.describe()
        # The first arena is released by the worker once a larger one arrived.
        assert _mapped(info["pid"]) == 1
    result = LocalExecutor().run_batch([large[0]])[0]
    assert result.outputs is not None and result.outputs["y"].nbytes * 3 > MIN_ARENA_BYTES // 2


@pytest.mark.parametrize("value", [
    np.arange(6000, dtype=np.float32).reshape(60, 100),  # C order: one slice copy of the mapping
    np.arange(12000, dtype=np.int64).reshape(120, 100)[:, ::2],  # strided: numpy's own copy
    np.arange(8000, dtype=np.int64).reshape(80, 100).T,  # Fortran order
    np.ones((4097,), bool),
    np.zeros((0, 5), np.float64),
])
def test_the_writer_places_each_array_exactly_and_aligned(value: np.ndarray) -> None:
    from vm.sandbox.handoff import ALIGN, Arena, Writer

    arena = Arena(1 << 20)
    writer = Writer(arena, 3)
    first = writer.place(value)
    second = writer.put(value)
    assert first is not None and second is not None and first % ALIGN == 0 and second.offset % ALIGN == 0
    for offset in (first, second.offset):
        placed = arena.view_at(value.dtype, value.shape, offset)
        assert placed.dtype == value.dtype and placed.shape == value.shape and np.array_equal(placed, value)
    assert Writer(arena, arena.size - 8).place(np.ones(16, np.float32)) is None  # does not fit: nothing written


def test_outputs_larger_than_the_arena_still_arrive() -> None:
    """An 8 MiB output from a 4-byte input: the arena sized for the inputs cannot hold it, so it travels in the
    reply message instead (pickled in a batch's reply, raw in a single job's flat one)."""
    shape = numpy_helper.from_array(np.array([1024, 1024], np.int64), "s")
    model = make_model([helper.make_node("Expand", ["x", "s"], ["y"])], [tensor("x", TensorProto.INT64, (1, 1))],
                       [tensor("y", TensorProto.INT64, (1024, 1024))], [shape])
    spec = ModelSpec((ArraySpec("x", "int64", (1, 1)),), CompareMode.EXACT)
    job = InferJob(ModelPackage(b"expand", model.SerializeToString(), spec), {"x": np.array([[7]], np.int64)})
    jobs: list[Job] = [job, doubling_job((1, 7), "uint8", 0)]
    with WorkerPool(size=1) as pool:
        results = pool.run_batch(jobs)
        alone = pool.run_batch([job])  # a single job of a held model: flat messages, the output in the reply
        assert pool.flat_runs == 1
    assert results[0].outputs is not None and results[0].outputs["y"].nbytes > MIN_ARENA_BYTES
    assert_same(results, LocalExecutor().run_batch(jobs))
    assert_same(alone, results[:1])


def test_the_pipe_baseline_gives_the_same_results() -> None:
    jobs = [*mixed_jobs(8), doubling_job((256, 256), "int32", 1)]
    with WorkerPool(size=1, shared_memory=False) as piped, WorkerPool(size=1) as shared:
        assert_same(piped.run_batch(jobs), shared.run_batch(jobs))


def test_inputs_the_arena_cannot_carry_are_still_refused_as_input_mismatch() -> None:
    job = doubling_job((1, 7), "uint8", 0)
    odd = InferJob(job.model, {"x": np.array([["not", "numbers"]], dtype=object)})
    with WorkerPool(size=1) as pool:
        (result,) = pool.run_batch([odd])
    assert isinstance(result.error, InputMismatch)


def _shm_segments() -> set[str]:
    """Named shared memory segments (POSIX semaphores, `sem.*`, live there too but are not memory)."""
    return {name for name in os.listdir("/dev/shm") if not name.startswith("sem.")}


def test_a_worker_killed_mid_batch_leaks_no_shared_memory() -> None:
    shm_before = _shm_segments()
    arenas_before = _open_arenas()
    outcome: list[BaseException] = []
    pool = WorkerPool(size=1)
    try:
        (info,) = pool.describe()
        pid = info["pid"]
        ticks = _cpu_ticks(pid)

        def run() -> None:
            try:
                pool.run_batch([doubling_job((1024, 1024), "int32", 0), heavy_job(layers=64)], timeout_s=120)
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        # The batch is under way once the worker mapped the arena and spent half a second of CPU on it; the
        # heavy job takes many seconds more.
        deadline = time.monotonic() + 60
        while (_mapped(pid) == 0 or _cpu_ticks(pid) - ticks < os.sysconf("SC_CLK_TCK") // 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _mapped(pid) == 1, "the worker never mapped the arena"
        assert thread.is_alive(), "the batch ended before the kill"
        os.kill(pid, signal.SIGKILL)
        thread.join(60)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], WorkerFault) and isinstance(outcome[0], LocalFault)
        assert "died" in str(outcome[0])
        # The pool goes on with a new worker and a new arena.
        jobs: list[Job] = [doubling_job((64, 64), "int32", 3)]
        assert_same(pool.run_batch(jobs), LocalExecutor().run_batch(jobs))
    finally:
        pool.close()
    outcome.clear()
    gc.collect()
    assert _shm_segments() - shm_before == set()
    assert _open_arenas() == arenas_before
    assert _mapped("self") == 0
