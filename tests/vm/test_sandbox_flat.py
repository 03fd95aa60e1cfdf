"""Flat messages for a single inference (vm/sandbox/flat.py): a one-job hand-off of a model the worker holds
travels as one struct-framed message each way and gives exactly the results (and verdicts) of the pickled
path and of the in-process executor; a worker killed between single jobs is replaced as before; and a worker
taken over through ONNX Runtime that writes crafted flat replies makes the pool discard it, never build
anything but numeric arrays, never run code (docs/security.md, "A sandbox worker taken over forges a flat reply").
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import vm.sandbox.worker as worker_module
from core.errors import InferenceError
from tests.vm.test_sandbox_handoff import doubling_job
from tests.vm.test_sandbox_worker import assert_same, package
from tools.attacks import make_model, tensor
from vm.models import model_names
from vm.sandbox import flat
from vm.sandbox.channel import Channel, dumps
from vm.sandbox.errors import NonFiniteOutput, UndecodableReply, WorkerFault
from vm.sandbox.executor import InferJob, JobResult, LocalExecutor, ModelPackage
from vm.sandbox.handoff import Arena, Writer
from vm.sandbox.numeric import TINY_GRID, canonical_outputs, on_grid
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

_HIJACK_ENV = "INFERCHAIN_TEST_FLAT_HIJACK"  # "<case> <marker path>" for the hijacked worker


def _digits_job(name: str, seed: int) -> InferJob:
    pkg = package(name)
    spec = pkg.spec.inputs[0]
    rng = np.random.default_rng(seed)
    value: np.ndarray = (rng.integers(0, 256, size=spec.shape, dtype=np.uint8) if spec.dtype == "uint8"
                         else rng.random(spec.shape, dtype=np.float32))
    return InferJob(pkg, {spec.name: value})


def _div_job(a: np.ndarray, b: np.ndarray, model_id: bytes = b"fdiv", names: tuple[str, str] = ("a", "b")) -> InferJob:
    """y = a / b in float32, two inputs (a tolerant model: outputs on the grid; b = 0 gives Inf)."""
    model = make_model([helper.make_node("Div", ["a", "b"], ["y"])],
                       [tensor("a", TensorProto.FLOAT, a.shape), tensor("b", TensorProto.FLOAT, b.shape)],
                       [tensor("y", TensorProto.FLOAT, a.shape)])
    spec = ModelSpec((ArraySpec(names[0], "float32", a.shape), ArraySpec(names[1], "float32", b.shape)),
                     CompareMode.TOLERANT, 8, Tolerance(1, 0))
    return InferJob(ModelPackage(model_id, model.SerializeToString(), spec), {names[0]: a, names[1]: b})


def _one_by_one(pool: WorkerPool, jobs: list[InferJob]) -> list[JobResult]:
    return [result for job in jobs for result in pool.run_batch([job])]


@pytest.fixture(scope="module")
def pools() -> Iterator[tuple[WorkerPool, WorkerPool]]:
    with WorkerPool(1) as fast, WorkerPool(1, flat_jobs=False) as pickled:
        yield fast, pickled


def test_single_jobs_go_flat_and_give_the_pickled_results(pools: tuple[WorkerPool, WorkerPool]) -> None:
    fast, pickled = pools
    ones = np.ones((2, 3), np.float32)
    jobs = [_digits_job(name, seed) for seed in range(2) for name in model_names()]
    jobs += [doubling_job((1, 7), "uint8", 1), doubling_job((1, 7), "uint8", 2),
             doubling_job((512, 512), "int32", 3),  # 1 MiB in and out: both through the arena
             doubling_job((512, 512), "int32", 4),
             _div_job(ones * 3, ones * 2), _div_job(ones, ones * 4)]
    before = fast.flat_runs
    got = _one_by_one(fast, jobs)
    assert_same(got, _one_by_one(pickled, jobs))
    assert_same(got, LocalExecutor().run_batch(list(jobs)))
    # Every job after the first of its model went flat; the pickled baseline never does.
    assert fast.flat_runs - before == len(jobs) - len({job.model.model_id for job in jobs})
    assert pickled.flat_runs == 0
    for result in got:  # arrays arrive writable, as from the pickled path
        assert result.outputs is not None and all(v.flags.writeable for v in result.outputs.values())


def test_verdicts_of_flat_jobs_equal_the_pickled_ones(pools: tuple[WorkerPool, WorkerPool]) -> None:
    fast, pickled = pools
    ones = np.ones((2, 3), np.float32)
    jobs = [
        _div_job(ones, ones, b"fdiv-verdicts"),  # loads the model (pickled batch)
        _div_job(ones, np.zeros_like(ones), b"fdiv-verdicts"),  # flat: Inf -> NonFiniteOutput
        _div_job(ones.astype(np.float64), ones.astype(np.float64), b"fdiv-verdicts"),  # wrong dtype: pickled
        # Same model id, a spec that names its inputs otherwise: the pool checks the arrays against this spec
        # and goes flat; the worker holds the first spec and refuses them, as the pickled path does.
        _div_job(ones, ones, b"fdiv-verdicts", ("p", "q")),
        _div_job(ones * 6, ones * 3, b"fdiv-verdicts"),
    ]
    local = LocalExecutor()
    in_order = [local.run_batch([job])[0] for job in jobs]
    before = fast.flat_runs
    assert_same(_one_by_one(fast, jobs), in_order)
    assert_same(_one_by_one(pickled, jobs), in_order)
    assert fast.flat_runs - before == 3
    assert [type(r.error).__name__ for r in in_order] == [
        "NoneType", "NonFiniteOutput", "InputMismatch", "InputMismatch", "NoneType"]


@pytest.mark.parametrize("spin", [True, False])
@pytest.mark.parametrize("shape", [(2, 3), (3, 12)])
def test_raw_outputs_go_on_the_pool_side_grid_as_the_worker_would_put_them(
        pools: tuple[WorkerPool, WorkerPool], spin: bool, shape: tuple[int, int]) -> None:
    """A pool that spins asks for raw outputs and puts them on the grid itself (off-grid and non-finite values
    give the worker's verdicts); one that blocks, and any model past MAX_RAW_GRID_K, gets them on the grid
    from the worker, but for a few float32 values (6 here; 36 is more than numeric.TINY_GRID), which the
    worker sends raw to either (flat.few_floats). All give the pickled path's and the in-process executor's
    results."""
    _, pickled = pools
    fast = WorkerPool(1, spin_min_share=0.0) if spin else WorkerPool(1, spin=False)
    ones = np.ones(shape, np.float32)
    big = np.full(shape, 2.0**40, np.float32)
    few = math.prod(shape) <= TINY_GRID
    jobs: list[InferJob] = []
    for k, model_id in ((8, b"fdiv-grid-8"), (40, b"fdiv-grid-40"), (flat.MAX_RAW_GRID_K + 1, b"fdiv-grid-255")):
        model_id += bytes(shape)
        for a, b in ((ones, ones), (ones * 3, ones * 7), (big, ones), (ones, np.zeros_like(ones)), (ones, ones * 9)):
            job = _div_job(a, b, model_id)
            spec = job.model.spec
            package = ModelPackage(model_id, job.model.model_bytes,
                                   ModelSpec(spec.inputs, spec.model_class, k, spec.tolerance))
            jobs.append(InferJob(package, job.inputs))
    local = LocalExecutor()
    in_order = [local.run_batch([job])[0] for job in jobs]
    with fast:
        got = []
        for job in jobs:
            worker = fast._workers[0]
            if worker is not None:  # as if its last job was short (a model load before it takes long)
                worker.seconds_per_job = 0.0
            got += fast.run_batch([job])
        assert_same(got, in_order)
        assert fast.flat_runs == len(jobs) - 3
        # Spinning (on two cores): every flat job of the grid-8 and grid-40 models came back raw.
        assert fast.grids_here == (8 if few or (spin and fast.spin.limit_s) else 0)
    assert_same(_one_by_one(pickled, jobs), in_order)
    assert [type(r.error).__name__ for r in in_order[5:10]] == [
        "NoneType", "NoneType", "OffGridOutput", "NonFiniteOutput", "NoneType"]  # 2^40 * 2^40 is off the grid
    assert all(r.error is not None for r in in_order[12:14])  # k = 255: everything but ~0 is off the grid


def test_a_worker_killed_between_single_jobs_is_replaced() -> None:
    job = _digits_job("digits_mlp", 3)
    expected = LocalExecutor().run_batch([job])
    with WorkerPool(1) as pool:
        for _ in range(2):
            assert_same(pool.run_batch([job]), expected)
        (info,) = pool.describe()
        pid = int(info["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10  # the kill is asynchronous: wait until every thread exited (not reaped)
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline, "the killed worker did not die"
            time.sleep(0.01)
        assert_same(pool.run_batch([job]), expected)  # model bytes again: a pickled batch to a new worker
        assert_same(pool.run_batch([job]), expected)
        assert pool.restarts == 1 and pool.flat_runs == 2


# ---- the codec ------------------------------------------------------------------------------------------


def _join(parts: list[object]) -> bytearray:
    return bytearray(b"".join(parts))  # type: ignore[arg-type]


_OUTPUTS = {
    "grid": np.arange(-6, 6, dtype=np.int64).reshape(3, 4),
    "flag": np.array([True, False, True]),
    "scalar": np.array(7, np.uint8),
    "empty": np.zeros((0, 5), np.int32),
    "wide": np.arange(2048, dtype=np.float64),  # 16 KiB: into the arena when there is one
    "é": np.array([1.5], np.float32),
}


@pytest.mark.parametrize("with_arena", [True, False])
def test_outputs_round_trip_in_order_with_their_dtypes(with_arena: bool) -> None:
    arena = Arena(1 << 20) if with_arena else None
    try:
        parts = flat.outputs_parts(_OUTPUTS, None if arena is None else Writer(arena, 4096))
        assert parts is not None
        got = flat.read_outputs(_join(parts), arena)
    finally:
        if arena is not None:
            arena.close()
    assert list(got) == list(_OUTPUTS)
    for name, value in _OUTPUTS.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value)


def test_outputs_the_codec_cannot_name_go_pickled() -> None:
    assert flat.outputs_parts({"y": np.zeros(2, ">f8")}, None) is None
    assert flat.outputs_parts({"y": np.zeros((4, 4), np.int64)[:, ::2]}, None) is None


def _valid_reply() -> bytearray:
    parts = flat.outputs_parts({"y": np.arange(4, dtype=np.int64), "z": np.array([1], np.uint8)}, None)
    assert parts is not None
    return _join(parts)


def _slot(code: int, ndim: int, where: int, name: bytes, offset: int, nbytes: int, dims: tuple[int, ...]) -> bytes:
    return (bytes([code, ndim, where, 0]) + len(name).to_bytes(2, "little") + bytes(2)
            + offset.to_bytes(8, "little") + nbytes.to_bytes(8, "little")
            + b"".join(d.to_bytes(8, "little") for d in dims) + name)


def _reply(*slots: bytes, data: bytes = b"") -> bytearray:
    return bytearray(bytes([flat.OUTPUTS_TAG, 0]) + len(slots).to_bytes(2, "little") + b"".join(slots) + data)


_INT64 = flat.DTYPES.index(np.dtype("int64"))
# Crafted replies, each breaking one rule of `read_outputs`.
MALFORMED = {
    "empty": bytearray(),
    "wrong-tag": bytearray(b"X") + _valid_reply()[1:],
    "truncated": _valid_reply()[:30],
    "too-many-outputs": _reply(data=b"")[:2] + (flat.MAX_OUTPUTS + 1).to_bytes(2, "little"),
    "unknown-dtype": _reply(_slot(len(flat.DTYPES), 1, 0, b"y", 64, 8, (1,)), data=bytes(64)),
    "object-dtype-code": _reply(_slot(255, 1, 0, b"y", 64, 8, (1,)), data=bytes(64)),
    "size-lies": _reply(_slot(_INT64, 1, 0, b"y", 40, 8, (1 << 40,)), data=bytes(64)),
    "huge-dim-of-nothing": _reply(_slot(_INT64, 2, 0, b"y", 48, 0, (0, 1 << 62)), data=bytes(64)),
    "too-many-dims": _reply(_slot(_INT64, flat.MAX_NDIM + 1, 0, b"y", 0, 8, (1,) * (flat.MAX_NDIM + 1))),
    "data-past-the-end": _reply(_slot(_INT64, 1, 0, b"y", 36, 8 * 100, (100,)), data=bytes(64)),
    "data-over-the-slots": _reply(_slot(_INT64, 1, 0, b"y", 0, 8, (1,)), data=bytes(64)),
    "offset-wraps": _reply(_slot(_INT64, 1, 0, b"y", (1 << 64) - 8, 8, (1,)), data=bytes(64)),
    "arena-without-arena": _reply(_slot(_INT64, 1, 1, b"y", 0, 8, (1,))),
    "bad-where": _reply(_slot(_INT64, 1, 7, b"y", 40, 8, (1,)), data=bytes(64)),
    "name-not-utf8": _reply(_slot(_INT64, 1, 0, b"\xff\xfe", 48, 8, (1,)), data=bytes(64)),
    "same-name-twice": _reply(_slot(_INT64, 1, 0, b"y", 96, 8, (1,)), _slot(_INT64, 1, 0, b"y", 96, 8, (1,)),
                              data=bytes(64)),
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_replies_are_refused(body: bytearray) -> None:
    with pytest.raises(flat.MalformedFlat):
        flat.read_outputs(body, None)


def test_arena_refs_outside_the_arena_are_refused() -> None:
    arena = Arena(1 << 16)
    try:
        for offset in (arena.size - 4, arena.size, (1 << 64) - 8):
            with pytest.raises(flat.MalformedFlat, match="outside the arena"):
                flat.read_outputs(_reply(_slot(_INT64, 1, 1, b"y", offset, 8, (1,))), arena)
    finally:
        arena.close()


def _is_plain(outputs: dict[str, np.ndarray]) -> bool:
    return all(type(k) is str and type(v) is np.ndarray and v.dtype in flat.DTYPES for k, v in outputs.items())


def _hostile(data: st.DataObject, body: bytearray) -> bytearray:
    """What a taken-over worker might send instead of `body`: random bytes, or `body` with a few bytes
    changed and cut anywhere."""
    if data.draw(st.booleans()):
        body = bytearray(data.draw(st.binary(max_size=300)))
    else:
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(st.integers(0, len(body) - 1))
            body[at] = data.draw(st.integers(0, 255))
        body = body[:data.draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_any_bytes_are_plain_arrays_or_refused(data: st.DataObject) -> None:
    """Whatever a worker writes, the reader returns numeric arrays by str name or raises MalformedFlat."""
    body = _hostile(data, bytearray(_valid_reply()))
    try:
        outputs = flat.read_outputs(body, None)
    except flat.MalformedFlat:
        return
    assert _is_plain(outputs)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                      and np.array_equal(a[k], b[k]) for k in a)


def test_the_reply_writer_sends_the_bytes_outputs_parts_sends() -> None:
    """Its cached head is used only for outputs of the same names, dtypes and shapes in the same order; the
    bytes are outputs_parts' whatever the outputs (new values, another shape, dtype, name or order)."""
    writer = flat.ReplyWriter()
    rng = np.random.default_rng(3)
    base = {"y": rng.random((1, 10), dtype=np.float32).astype(np.int64), "z": np.array([7], np.uint8)}
    cases = [base, {"y": base["y"] + 5, "z": np.array([9], np.uint8)},  # same layout, new values: cached head
             {"y": np.arange(12, dtype=np.int64).reshape(3, 4), "z": base["z"]},  # another shape
             {"y": base["y"].astype(np.int32), "z": base["z"]},  # another dtype
             {"z": base["z"], "y": base["y"]},  # another order
             {"y": base["y"]},  # fewer outputs
             {"w": base["y"], "z": base["z"]},  # another name
             {"y": np.arange(20, dtype=np.int64)[::2], "z": base["z"]},  # not C-ordered: pickled instead
             {"y": np.arange(1024, dtype=np.float64), "z": base["z"]},  # 8 KiB: no cached head (arena-sized)
             base]
    for outputs in cases:
        want = flat.outputs_parts(outputs, None)
        got = writer.parts(outputs, None)
        if want is None:
            assert got is None
            continue
        assert got is not None and _join(got) == _join(want)
        assert _same(flat.read_outputs(_join(got), None), outputs)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_job_from_its_template_has_the_bytes_job_parts_gives(data: st.DataObject) -> None:
    """Any layout of inputs under INLINE_BYTES (dtypes, shapes, paddings between them, several inputs): the
    pool's job from the model's template is `job_parts`' job byte for byte, for either raw flag; a layout
    with an arena-sized input has no template."""
    dtypes = [d.name for d in flat.DTYPES]
    count = data.draw(st.integers(0, 4))
    specs = [ArraySpec(f"in{i}", data.draw(st.sampled_from(dtypes)),
                       tuple(data.draw(st.lists(st.integers(0, 5), max_size=3)))) for i in range(count)]
    layout = flat.Layout.of(specs)
    model_id = data.draw(st.binary(min_size=1, max_size=40))
    raw = data.draw(st.booleans())
    arrays = [np.frombuffer(data.draw(st.binary(min_size=nbytes, max_size=nbytes)), dtype).reshape(shape).copy()
              for _, dtype, shape, nbytes in layout.inputs]
    template = flat.job_template(model_id, layout, 60, raw)
    assert template is not None
    want = _join(flat.job_parts(model_id, layout, arrays, 60, None, raw))
    assert _join(flat.templated_parts(template, arrays)) == want
    big = flat.Layout.of([*specs, ArraySpec("big", "float32", (1, 1024))])  # 4 KiB: the arena's
    assert flat.job_template(model_id, big, 60, raw) is None


def _arena_layout(data: st.DataObject) -> flat.Layout:
    """Up to four inputs, each small (in the message) or of 4-6 KiB (in the arena when it has room)."""
    dtypes = [d.name for d in flat.DTYPES]
    specs = []
    for i in range(data.draw(st.integers(1, 4))):
        dtype = data.draw(st.sampled_from(dtypes))
        if data.draw(st.booleans()):
            count = data.draw(st.integers(4096, 6144)) // np.dtype(dtype).itemsize + 1
            specs.append(ArraySpec(f"in{i}", dtype, (1, count)))
        else:
            specs.append(ArraySpec(f"in{i}", dtype, tuple(data.draw(st.lists(st.integers(0, 5), max_size=3)))))
    return flat.Layout.of(specs)


def _arrays_of(data: st.DataObject, layout: flat.Layout) -> list[np.ndarray]:
    return [np.frombuffer(data.draw(st.binary(min_size=nbytes, max_size=nbytes)), dtype).reshape(shape).copy()
            for _, dtype, shape, nbytes in layout.inputs]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_job_from_a_template_with_arena_inputs_is_the_job_job_parts_gives(data: st.DataObject) -> None:
    """Inputs in the message and in the arena mixed, arenas with room for all, some or none of them: the job
    from the template for that arena size has `job_parts`' bytes (a Writer from 0) and leaves the same bytes
    in the arena, for two jobs in a row; where an arena-sized input has no room, there is no template."""
    layout = _arena_layout(data)
    model_id = data.draw(st.binary(min_size=1, max_size=40))
    raw = data.draw(st.booleans())
    size = data.draw(st.sampled_from([0, 4096, 8192, 12288, 1 << 16]))
    template = flat.job_template(model_id, layout, 60, raw, size)
    mine, theirs = (Arena(size), Arena(size)) if size else (None, None)
    try:
        for _ in range(2):
            arrays = _arrays_of(data, layout)
            want = flat.job_parts(model_id, layout, arrays, 60, None if theirs is None else Writer(theirs), raw)
            fits = not any(type(part) is np.ndarray and part.nbytes >= 4096 for part in want)
            if not fits:
                assert template is None
                return
            assert template is not None
            assert _join(flat.templated_parts(template, arrays, mine)) == _join(want)
            if mine is not None and theirs is not None:
                assert mine.view_at(np.dtype("uint8"), (size,), 0).tobytes() == \
                    theirs.view_at(np.dtype("uint8"), (size,), 0).tobytes()
    finally:
        for arena in (mine, theirs):
            if arena is not None:
                arena.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_the_job_reader_reads_every_job_as_read_job_and_job_inputs_do(data: st.DataObject) -> None:
    """A worker's JobReader over a run of jobs (the same model again with new inputs, another model or layout,
    bytes changed anywhere, a new arena): each job and its inputs equal `read_job`'s and `job_inputs`'
    (MalformedFlat where they raise it), whether or not it reuses the last header's parse and arena views."""
    arenas = [Arena(1 << 16), Arena(1 << 16)]
    reader = flat.JobReader()
    layouts = [_arena_layout(data) for _ in range(2)]
    try:
        for _ in range(data.draw(st.integers(1, 6))):
            which = data.draw(st.integers(0, 1))
            layout, arena = layouts[which], arenas[data.draw(st.integers(0, 1))]
            arrays = _arrays_of(data, layout)
            body = _join(flat.job_parts(b"m%d" % which, layout, arrays, 60, Writer(arena),
                                        data.draw(st.booleans())))
            if data.draw(st.booleans()):  # a byte changed (the header, a slot or the data)
                at = data.draw(st.integers(0, len(body) - 1))
                body[at] = data.draw(st.integers(0, 255))
            try:
                want = flat.read_job(body)
            except flat.MalformedFlat:
                with pytest.raises(flat.MalformedFlat):
                    reader.read(body)
                continue
            job = reader.read(body)
            assert job == want
            try:
                want_inputs = flat.job_inputs(want, layout, body, arena)
            except flat.MalformedFlat:
                with pytest.raises(flat.MalformedFlat):
                    reader.inputs(job, layout, body, arena)
                continue
            got = reader.inputs(job, layout, body, arena)
            assert list(got) == list(want_inputs)
            for name, value in want_inputs.items():
                assert got[name].dtype == value.dtype and got[name].shape == value.shape
                assert got[name].tobytes() == value.tobytes()
    finally:
        for arena in arenas:
            arena.close()


def test_the_job_reader_parses_a_models_header_once_and_reuses_its_arena_views() -> None:
    """The same model's jobs one after another: parsed once, arena views made once (and not across arenas)."""
    layout = flat.Layout.of([ArraySpec("x", "float32", (1, 4, 32, 32))])  # 16 KiB: in the arena
    first, second = Arena(1 << 20), Arena(1 << 20)
    reader = flat.JobReader()
    try:
        for k in range(3):
            x = np.full((1, 4, 32, 32), k, np.float32)
            body = _join(flat.job_parts(b"conv", layout, [x], 60, Writer(first)))
            feeds = reader.inputs(reader.read(body), layout, body, first)
            np.testing.assert_array_equal(feeds["x"], x)
        assert reader.hits == 2
        body = _join(flat.job_parts(b"conv", layout, [x + 1], 60, Writer(second)))
        np.testing.assert_array_equal(reader.inputs(reader.read(body), layout, body, second)["x"], x + 1)
    finally:
        first.close()
        second.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_the_reply_reader_reads_any_bytes_as_read_outputs_does(data: st.DataObject) -> None:
    """After a valid reply has given the reader its plan, whatever bytes come next are read exactly as
    read_outputs reads them: the same arrays, or MalformedFlat (a forged reply gains nothing from the plan)."""
    reader = flat.ReplyReader()
    first = _valid_reply()
    assert _same(reader.read(first, None), flat.read_outputs(first, None))
    body = _hostile(data, bytearray(first))
    try:
        want = flat.read_outputs(body, None)
    except flat.MalformedFlat:
        with pytest.raises(flat.MalformedFlat):
            reader.read(body, None)
        return
    got = reader.read(body, None)
    assert _is_plain(got) and _same(got, want)
    with contextlib.suppress(InferenceError):  # on the grid its grid byte names: numeric arrays, or a verdict
        assert _is_plain(reader.canonical(body, None))


def test_a_replys_grid_byte_puts_its_float_outputs_on_that_grid() -> None:
    raw = {"y": np.array([[0.5, -1.25, 3.0]], np.float32), "n": np.array([4, 5], np.int32),
           "d": np.array([1.0 / 3], np.float64)}
    specs = (ArraySpec("y", "float32", (1, 3)), ArraySpec("n", "int32", (2,)), ArraySpec("d", "float64", (1,)))
    for k in (0, 3, 20):
        parts = flat.outputs_parts(raw, None, k + 1)
        assert parts is not None
        body = _join(parts)
        assert flat.reply_grid(body) == k
        assert _same(flat.ReplyReader().canonical(body, None), canonical_outputs(raw, specs, k))
    plain = flat.outputs_parts(canonical_outputs(raw, specs, 3), None)
    assert plain is not None and flat.reply_grid(_join(plain)) is None
    assert _same(flat.ReplyReader().canonical(_join(plain), None), canonical_outputs(raw, specs, 3))
    nan = flat.outputs_parts({"y": np.array([np.nan], np.float32)}, None, 9)
    assert nan is not None
    with pytest.raises(NonFiniteOutput):
        flat.ReplyReader().canonical(_join(nan), None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=TINY_GRID), st.integers(0, flat.MAX_RAW_GRID_K))
def test_a_planned_raw_reply_of_a_few_floats_goes_on_the_grid_as_on_grid_puts_it(bits: list[int], k: int) -> None:
    """The reader's grid straight from a planned raw reply's bytes (a few float32 values in two outputs, any
    bit pattern) gives numeric.on_grid's int64 arrays bit for bit, or its verdict; the arrays are writable."""
    values = np.array(bits, np.uint32).view(np.float32)
    half = len(values) // 2
    raw = {"a": values[:half].reshape(1, half), "b": values[half:].copy()}
    first = flat.outputs_parts({"a": np.zeros((1, half), np.float32), "b": np.zeros(len(values) - half,
                                                                                    np.float32)}, None, k + 1)
    parts = flat.outputs_parts(raw, None, k + 1)
    assert first is not None and parts is not None
    reader = flat.ReplyReader()
    reader.canonical(_join(first), None)  # the plan, from a reply of the same head
    assert reader._grid is not None
    body = _join(parts)
    try:
        want = on_grid(flat.read_outputs(body, None), k)
    except InferenceError as exc:
        with pytest.raises(type(exc)):
            reader.canonical(body, None)
        return
    got = reader.canonical(body, None)
    assert list(got) == ["a", "b"] and _same(got, want)
    assert all(v.dtype == np.int64 and v.flags.writeable for v in got.values())


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_reader_with_a_grid_plan_reads_any_bytes_as_read_outputs_and_on_grid_do(data: st.DataObject) -> None:
    """After a raw reply of a few float32 values has given the reader its grid plan, whatever bytes come next
    (a taken-over worker's) get exactly what read_outputs and on_grid give them: the same int64 arrays, the
    same verdict, or MalformedFlat."""
    reader = flat.ReplyReader()
    parts = flat.outputs_parts({"p": np.linspace(-1, 1, 10, dtype=np.float32).reshape(1, 10)}, None, 21)
    assert parts is not None
    first = _join(parts)
    reader.canonical(first, None)
    assert reader._grid is not None
    body = _hostile(data, bytearray(first))
    try:
        raw = flat.read_outputs(body, None)
    except flat.MalformedFlat:
        with pytest.raises(flat.MalformedFlat):
            reader.canonical(body, None)
        return
    grid_k = flat.reply_grid(body)
    try:
        want = raw if grid_k is None else on_grid(raw, grid_k)
    except InferenceError as exc:
        with pytest.raises(type(exc)):
            reader.canonical(body, None)
        return
    got = reader.canonical(body, None)
    assert _is_plain(got) and _same(got, want)


def test_only_a_raw_reply_of_a_few_float32_values_gets_a_grid_plan() -> None:
    cases = [({"y": np.ones((1, 10), np.float32)}, 21, True),
             ({"y": np.ones((1, 10), np.float32)}, 0, False),  # canonical outputs: no grid
             ({"y": np.ones((1, TINY_GRID + 1), np.float32)}, 21, False),  # more values: numpy's grid
             ({"y": np.ones((1, 10), np.float64)}, 21, False),
             ({"y": np.ones((1, 10), np.float32), "n": np.ones(2, np.int32)}, 21, False)]
    for outputs, grid, planned in cases:
        parts = flat.outputs_parts(outputs, None, grid)
        assert parts is not None
        reader = flat.ReplyReader()
        reader.canonical(_join(parts), None)
        assert (reader._grid is not None) is planned


def test_the_reply_reader_plans_only_all_inline_replies_and_reads_new_data_by_its_plan() -> None:
    reader = flat.ReplyReader()
    a = _valid_reply()
    reader.read(a, None)
    b = bytearray(a)
    b[-16:-8] = (41).to_bytes(8, "little", signed=True)  # y[3]: same head and length, new data
    assert reader.read(b, None)["y"].tolist() == [0, 1, 2, 41]
    arena = Arena(1 << 20)
    try:
        parts = flat.outputs_parts({"wide": np.arange(2048, dtype=np.float64)}, Writer(arena, 4096))
        assert parts is not None
        in_arena = _join(parts)
        assert reader.read(in_arena, arena)["wide"].tolist() == list(range(2048))
        # An arena reply leaves no plan: the same bytes read again copy the arena's current contents.
        arena.view_at(np.dtype("float64"), (1,), 4096)[0] = -1.0
        assert reader.read(in_arena, arena)["wide"][0] == -1.0
    finally:
        arena.close()


# ---- the attack against the real pool -------------------------------------------------------------------


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def _forged(case: str, marker: str) -> list[object]:
    if case == "pickle":  # a code-running pickle in place of the flat reply
        return [dumps(_Touch(marker))]
    if case == "arena":  # an output that claims the node's memory past the arena
        return [_reply(_slot(_INT64, 1, 1, b"y", 1 << 40, 8, (1,)))]
    return [MALFORMED["size-lies"]]


def _hijacked_worker_main(sock: socket.socket, limits: object, *spin: object) -> None:
    """A real worker whose flat replies are replaced on the socket, as a worker taken over through ONNX
    Runtime would write them."""
    case, marker = os.environ[_HIJACK_ENV].split(" ", 1)

    def send_parts(self: Channel, parts: list[object]) -> None:
        for part in _forged(case, marker):
            body = bytes(part)  # type: ignore[call-overload]
            self._sock.sendall(len(body).to_bytes(8, "little") + body)

    Channel.send_parts = send_parts  # type: ignore[method-assign]
    worker_module._worker_main(sock, limits, *spin)  # type: ignore[arg-type]


@pytest.mark.parametrize(("case", "error"), [("pickle", "not allowed"), ("arena", "outside the arena")])
def test_a_taken_over_worker_cannot_forge_a_flat_reply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str,
                                                       error: str) -> None:
    marker = tmp_path / "pwned"
    job = _digits_job("digits_int8", 7)
    expected = LocalExecutor().run_batch([job])
    real_main = worker_module._worker_main
    monkeypatch.setenv(_HIJACK_ENV, f"{case} {marker}")
    monkeypatch.setattr(worker_module, "_worker_main", _hijacked_worker_main)
    with WorkerPool(1) as pool:
        assert_same(pool.run_batch([job]), expected)  # the model's first job: a pickled batch, answered honestly
        with pytest.raises(WorkerFault) as caught:
            pool.run_batch([job])  # flat: the forged reply
        assert isinstance(caught.value, UndecodableReply) and error in str(caught.value)
        monkeypatch.setattr(worker_module, "_worker_main", real_main)
        assert_same(pool.run_batch([job]), expected)  # the taken-over worker was discarded: a fresh one
        assert pool.restarts == 1
    assert not marker.exists()
