"""Sandbox worker processes and the pool the node hands each block's jobs to (docs/design.md §2.8).

Workers are started with multiprocessing's 'spawn' context (a fresh interpreter: no inherited threads,
locks or ORT state). Each one scrubs threading variables from its environment, ignores SIGINT, sets RLIMIT_AS
once and RLIMIT_CPU per hand-off, and runs the shared `Runner` (pinned sessions, LRU cache, golden checks).
A crash, timeout, limit hit or protocol error raises LocalFault from `run_batch`; the broken worker is
discarded and a new one is started by the next call, never in a loop. Inputs and outputs travel through the
worker's shared arena (vm/sandbox/handoff.py): one small message each way per block.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
import multiprocessing
import multiprocessing.util
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InferenceError, InvalidModel, LocalFault
from vm.sandbox import flat
from vm.sandbox.channel import Channel, SpinWait
from vm.sandbox.errors import GoldenMismatch, UndecodableReply, WorkerFault
from vm.sandbox.executor import CheckJob, InferJob, Job, JobResult, ModelPackage, outputs_result
from vm.sandbox.handoff import (
    Arena,
    ArrayRef,
    Writer,
    aligned,
    arena_bytes_for,
    arena_size,
    in_arena,
    joins_in_arena,
)
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.numeric import canonical_outputs
from vm.sandbox.protocol import (
    REPLY_GLOBALS,
    Batch,
    CheckWire,
    Describe,
    Described,
    Done,
    Fault,
    FromWorker,
    GoldenFault,
    InferRows,
    InferWire,
    Ready,
    RowResults,
    ShareArena,
    SharedOutputs,
    Stop,
    Unpin,
    WireJob,
)
from vm.sandbox.spec import ALLOWED_DTYPES, ArraySpec, CompareMode, ModelInfo, ModelSpec

_STOP_TIMEOUT_S = 5.0
# Bounded busy-waits (channel.SpinWait): the pool for a batch's reply, a worker for its next batch. They keep
# the waiting side's vCPU from halting during a job of up to REPLY_SPIN_S, and between jobs that follow each
# other within NEXT_JOB_SPIN_S (docs/performance-sandbox.md, "Single jobs").
REPLY_SPIN_S = 0.002
NEXT_JOB_SPIN_S = 0.002
# A single job expected to take longer than REPLY_SPIN_S, up to this, is waited for asleep until shortly
# before its expected end, then spun for (docs/performance-sandbox.md, "Single jobs: one flat message").
NAP_BEFORE_SPIN_S = 0.05
# Wake-up before a lone job (docs/sandbox.md): the worker keeps its last flat job for its rehearsal when all its
# inputs were in the message and it is at most this long (a copy per job).
REHEARSAL_JOB_BYTES = 16 << 10
# A block's inferences of one model travel as rows (protocol.InferRows) when there are at least this many.
ROWS_MIN = 2
# A rows job's inputs before they are stacked: by name, the declared shape and each job's array in order.
_Columns = dict[str, tuple[tuple[int, ...], list[np.ndarray]]]


def _worker_main(sock: socket.socket, limits: WorkerLimits, spin_s: float = 0.0,
                 spin_min_share: float = SpinWait.MIN_SHARE,
                 spin_rule: tuple[int, int] = (SpinWait.WINDOW, SpinWait.TRIP_AFTER)) -> None:
    """Entry point of a worker process: serve batches until told to stop or the pipe closes."""
    from vm.sandbox.session import scrub_environment

    removed = scrub_environment()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # failures reach the parent as exceptions, not stderr noise
    import vm.sandbox.check  # noqa: F401  (import everything before the address-space limit)
    from vm.sandbox.executor import Runner

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    cpu_budget = _CpuBudget()
    runner = Runner(limits.session_cache_bytes)
    arena: Arena | None = None
    conn = Channel(sock, accept_fds=True)
    conn.send(Ready(os.getpid(), tuple(removed), onnxruntime.__version__))
    told: frozenset[bytes] | None = None  # the cached models the pool was last told of
    spin = SpinWait(spin_s, spin_min_share, spin_rule)
    gc.callbacks.append(_GC_TIMER)  # (its collections per job, through describe: none on the job paths so far)
    rehearsal = _Rehearsal()
    job_reader = flat.JobReader()  # each model's flat job header parsed once
    while True:
        try:
            if spin.gate(time.monotonic()):  # else no poll: the recv blocks (one system call fewer per job)
                conn.poll(None, spin)
            message = conn.recv()
        except (EOFError, OSError):
            return
        if type(message) is bytearray:  # a flat job (vm/sandbox/flat.py): the single-inference fast path
            if message == flat.WAKE:  # a lone job is on its way: warm up while the pool builds it
                rehearsal.wanted = True
                if spin.active(time.monotonic()):  # (not on a contended core: the pool would wait for it)
                    rehearsal.rehearse(runner)
                continue
            reply = _serve_flat(runner, message, arena, cpu_budget, told, rehearsal, job_reader)
            del message  # no view of the job's bytes outlives it
            if type(reply) is list:
                conn.send_parts(reply)
            else:
                conn.send(reply)
            continue
        match message:
            case Stop():
                return
            case Describe():
                conn.send(Described(_describe(runner, spin, rehearsal)))
            case Unpin(keep=keep):  # models that left the chain's resident set (vm/resident.py)
                runner.unpin_except(keep)
                reply = Done((), _news(runner.cached_ids(), told))
                told = runner.cached_ids()
                conn.send(reply)
            case ShareArena(size=size):
                try:
                    fd = conn.take_fd()
                except OSError:
                    return
                arena = Arena(size, fd)
                arena.close()  # the mapping keeps the memory; the descriptor is not needed any more
            case Batch(jobs=jobs, cpu_seconds=cpu_seconds, free_from=free_from):
                cpu_budget.renew(cpu_seconds)
                reply = _serve_batch(runner, jobs, arena, free_from, told)
                if isinstance(reply, (Done, GoldenFault)) and reply.cached is not None:
                    told = reply.cached
                conn.send(reply)
            case _:
                conn.send(Fault(f"unknown message {type(message).__name__}", internal=True))


class _GcTimer:
    """Wall seconds spent in collections, by generation (a gc callback: two clock reads per collection)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._start


_GC_TIMER = _GcTimer()



class _CpuBudget:
    """RLIMIT_CPU at the whole CPU seconds used so far + each hand-off's budget. The worker runs one thread
    (ORT with one intra-op and one inter-op thread runs on the caller's), so its CPU time grows no faster
    than wall time: the limit is set REFRESH_S above used + budget, so within REFRESH_S of the last setting
    it still leaves each hand-off its whole budget, and it is renewed only after that (getrusage + setrlimit cost 5-30 µs on a loaded machine, most of a tiny
    job's hand-off). A limit hit is a local fault (SIGXCPU), never a verdict, so this reads wall time."""

    REFRESH_S = 0.25

    def __init__(self) -> None:
        _, self._hard = resource.getrlimit(resource.RLIMIT_CPU)  # only root could raise it: read once
        self._soft = -1
        self._set_at = -math.inf

    def renew(self, seconds: int) -> None:
        now = time.monotonic()
        if now - self._set_at < self.REFRESH_S and self._soft >= 0:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + self.REFRESH_S) + seconds
        if self._hard != resource.RLIM_INFINITY:
            soft = min(soft, self._hard)
        if soft != self._soft:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, self._hard))
            self._soft = soft
        self._set_at = now


def _serve_batch(runner: Any, jobs: tuple[WireJob, ...], arena: Arena | None, free_from: int,
                 told: frozenset[bytes] | None = None) -> Done | GoldenFault | Fault:
    pinned = frozenset(job.model_id for job in jobs if isinstance(job, (InferWire, InferRows)))
    replies: list[tuple[int, JobResult | SharedOutputs | RowResults]] = []
    writer = None if arena is None else Writer(arena, free_from)
    try:
        for job in jobs:
            if isinstance(job, InferWire):
                inputs = {name: _resolve(arena, value) for name, value in job.inputs.items()}
                result = runner.infer(job.model_id, job.package, inputs, pinned)
                del inputs  # no view of the arena outlives the job
                replies.append((job.index, _share(writer, result)))
            elif isinstance(job, InferRows):
                replies.append((job.indices[0], _serve_rows(runner, job, arena, writer, pinned)))
            else:
                replies.append((job.index, runner.check(job.model_bytes, job.spec, job.golden_inputs, job.gas_left)))
    except Exception as exc:
        return _failure(exc, runner, told)
    return Done(tuple(replies), _news(runner.cached_ids(), told))


def _serve_rows(runner: Any, job: InferRows, arena: Arena | None, writer: Writer | None,
                pinned: frozenset[bytes]) -> RowResults:
    """Each row of an `InferRows` run as the inference of its own `InferWire` (`Runner.infer`: the same
    checks, verdicts and faults), the outputs stacked by name; a row whose result does not stack with the
    first successful row's (a verdict; outputs of other names, dtypes or shapes) travels in `separate`.

    The rows' raw outputs are stacked first and put on the grid together (`canonical_outputs` of the stack:
    one set of numpy calls per block instead of one per row, each of which finds the caches cold after a
    larger model's run). The grid is elementwise, so the stack's grid values are the rows' own, and a row
    that is not stacked holds zeros (zero on the grid too). If the stack gets a grid verdict, each row is
    put on the grid alone (`_rows_on_grid`) and gets the result `infer` would give it."""
    stacked = {name: _resolve(arena, value) for name, value in job.inputs.items()}
    rows = len(job.indices)
    if any(value.ndim == 0 or value.shape[0] != rows for value in stacked.values()):
        raise WorkerFault("rows of an InferRows do not match its indices")
    loaded: Any = None
    raw_out: dict[str, np.ndarray] | None = None  # the stacked raw outputs; zeros in the rows not stacked
    stacked_rows: list[int] = []
    separate: list[tuple[int, JobResult]] = []
    for row in range(rows):
        try:
            loaded, raw = runner.infer_raw(job.model_id, job.package,
                                           {name: value[row] for name, value in stacked.items()}, pinned)
        except InferenceError as exc:
            separate.append((row, JobResult(error=exc)))
            continue
        if raw_out is None:
            raw_out = {name: np.zeros((rows, *value.shape), value.dtype) for name, value in raw.items()}
        if raw.keys() != raw_out.keys() or any(value.dtype != raw_out[name].dtype
                                               or value.shape != raw_out[name].shape[1:] for name, value in raw.items()):
            separate.append((row, _on_grid(loaded, raw)))
            continue
        for name, value in raw.items():
            raw_out[name][row] = value
        stacked_rows.append(row)
    del stacked  # no view of the arena outlives the job
    out: dict[str, np.ndarray] = {}
    if raw_out is not None and stacked_rows:
        try:
            out = canonical_outputs(raw_out, loaded.outputs, loaded.package.spec.grid_k)
        except InferenceError:  # a row off the grid: each row on its own, for its own verdict
            out = _rows_on_grid(loaded, raw_out, stacked_rows, separate)
            separate.sort(key=_row_of)
    arrays: list[tuple[str, np.ndarray | ArrayRef]] = []
    for name, value in out.items():
        ref = writer.put(value) if writer is not None and in_arena(value) else None
        arrays.append((name, value if ref is None else ref))
    return RowResults(tuple(arrays), tuple(separate))


def _row_of(pair: tuple[int, JobResult]) -> int:
    return pair[0]


def _on_grid(loaded: Any, raw: Mapping[str, np.ndarray]) -> JobResult:
    """One row's result from its raw outputs, as `Runner.infer` gives it: its canonical outputs, or the
    grid's verdict."""
    try:
        return outputs_result(canonical_outputs(raw, loaded.outputs, loaded.package.spec.grid_k))
    except InferenceError as exc:
        return JobResult(error=exc)


def _rows_on_grid(loaded: Any, raw_out: dict[str, np.ndarray], stacked_rows: list[int],
                  separate: list[tuple[int, JobResult]]) -> dict[str, np.ndarray]:
    """The stacked rows put on the grid one by one: the stacked canonical outputs of those that are on it
    (zeros elsewhere); the others' verdicts added to `separate`."""
    out: dict[str, np.ndarray] = {}
    rows = next(iter(raw_out.values())).shape[0]
    for row in stacked_rows:
        result = _on_grid(loaded, {name: value[row] for name, value in raw_out.items()})
        if result.outputs is None:
            separate.append((row, result))
            continue
        if not out:
            out = {name: np.zeros((rows, *value.shape), value.dtype) for name, value in result.outputs.items()}
        for name, value in result.outputs.items():
            out[name][row] = value
    return out


def _failure(exc: Exception, runner: Any, told: frozenset[bytes] | None) -> GoldenFault | Fault:
    """The reply to a job that raised: a golden mismatch, this worker's local fault, or (anything else) a bug
    in our code, reported loudly as an internal fault and never as a verdict."""
    if isinstance(exc, GoldenMismatch):
        return GoldenFault(exc.model_id, exc.detail, _news(runner.cached_ids(), told))
    if isinstance(exc, LocalFault):
        return Fault(str(exc))
    if isinstance(exc, MemoryError):
        return Fault("out of memory")
    return Fault(repr(exc)[:300], internal=True)


class _Rehearsal:
    """A worker's wake-up rehearsal: its last flat job read again from its old bytes, the result dropped.

    After a few ms idle (a validator's lone single job between blocks) the worker's caches hold whatever ran
    meanwhile, and the job's Python before the run costs 3-5x what it costs warm (docs/performance-sandbox.md, "Single
    jobs: the verdict and the lone job"). The pool sends `flat.WAKE` before it builds such a job; the worker
    wakes up while the pool works (on a machine with an idle core: the wake-up of its halted vCPU overlaps the
    pool's work) and goes through its last job's reading again: the header, the session lookup, the inputs'
    views. It does not run the model: measured, a run on cold caches costs as much in the rehearsal as in the
    job, and the job then waited for it. Nothing is sent, no counter but `rehearsals` moves."""

    def __init__(self) -> None:
        self._body: bytearray | None = None
        self.wanted = False  # set by the first wake-up: a pool that sends none costs no copy per job
        self.rehearsals = 0

    def keep(self, body: bytearray, job: flat.FlatJob) -> None:
        """Keep a served job's bytes (a private copy: the job's own buffer is reused) when all its inputs were
        in the message and it is small, once the pool has sent a wake-up."""
        if not self.wanted:
            return
        inline = all(where == flat.INLINE for where in job.slots[0::3])
        self._body = bytearray(body) if inline and len(body) <= REHEARSAL_JOB_BYTES else None

    def rehearse(self, runner: Any) -> None:
        body = self._body
        if body is None:
            return
        self.rehearsals += 1
        # Old bytes through code that already read them once: nothing here can be a verdict or a fault of the
        # coming job, so whatever it raises (its model evicted or quarantined since) is dropped with the result.
        with contextlib.suppress(Exception):
            job = flat.read_job(body)
            flat.job_inputs(job, runner.session_for(job.model_id, None).flat, body, None)


def _serve_flat(runner: Any, body: bytearray, arena: Arena | None, cpu_budget: _CpuBudget,
                told: frozenset[bytes] | None, rehearsal: _Rehearsal | None = None,
                reader: flat.JobReader | None = None) -> list[Any] | Done | GoldenFault | Fault:
    """A flat job: its outputs as a flat reply's buffers; a verdict, golden mismatch or fault as the pickled
    reply a one-job Batch would get. `reader` parses each model's job header once (flat.JobReader)."""
    try:
        reader = reader or flat.JobReader()
        job = reader.read(body)
        cpu_budget.renew(job.cpu_seconds)
        loaded = runner.session_for(job.model_id, None)
        layout = loaded.flat
        if layout is None:
            layout = loaded.flat = flat.Layout.of(loaded.package.spec.inputs, loaded.outputs)
        writer = None if arena is None else Writer(arena, job.free_from)
        replies: flat.ReplyWriter | None = loaded.reply
        if replies is None:
            replies = loaded.reply = flat.ReplyWriter()
        grid_k = loaded.package.spec.grid_k
        if (job.raw or layout.few_floats) and job.signature == layout.signature \
                and 0 <= grid_k <= flat.MAX_RAW_GRID_K:
            # The raw outputs go back, and the pool puts them on the grid: after a long run this process's
            # caches are cold, the pool's (it waits spinning, or reads its last reply again) are not. A few
            # float32 values go back raw even to a pool that blocks (flat.few_floats): their grid costs the
            # pool little, and the model's replies keep one form whether or not the pool spins (the readers'
            # and writers' plans of the last reply then hold: docs/sandbox.md, "The grid of a few floats").
            raw = runner.run_raw(loaded, reader.inputs(job, layout, body, arena))
            parts = replies.parts(raw, writer, grid_k + 1)
            if parts is not None:
                if rehearsal is not None:
                    rehearsal.keep(body, job)
                return parts
            outputs = canonical_outputs(raw, loaded.outputs, grid_k)
        elif job.signature == layout.signature:
            outputs = runner.run_feeds(loaded, reader.inputs(job, layout, body, arena))
        else:  # the pool checked the arrays against another spec of this model id: check them as a Batch's
            outputs = runner.run_checked(loaded, flat.job_inputs(job, flat.Layout.of_signature(job.signature), body,
                                                                 arena))
        parts = replies.parts(outputs, writer)
        if parts is None:
            return Done(((0, JobResult(outputs=outputs)),), _news(runner.cached_ids(), told))
        if rehearsal is not None:
            rehearsal.keep(body, job)
        return parts
    except InferenceError as exc:
        return Done(((0, JobResult(error=exc)),), _news(runner.cached_ids(), told))
    except Exception as exc:  # a malformed flat job included: a bug of ours, never a verdict
        return _failure(exc, runner, told)


def _news(cached: frozenset[bytes], told: frozenset[bytes] | None) -> frozenset[bytes] | None:
    """The cached models, or None when the pool already knows them (the usual case: no set on the pipe)."""
    return None if cached == told else cached


def _resolve(arena: Arena | None, value: np.ndarray | ArrayRef) -> np.ndarray:
    if not isinstance(value, ArrayRef):
        return value
    if arena is None:
        raise WorkerFault("an input names the arena, but none was shared")
    try:
        return arena.view(value)
    except (ValueError, TypeError) as exc:
        raise WorkerFault(f"input outside the arena: {exc}") from None


def _share(writer: Writer | None, result: JobResult) -> JobResult | SharedOutputs:
    """The outputs written into the arena where they belong there and fit after the inputs; the others stay
    in the message."""
    if writer is None or result.outputs is None or not any(in_arena(v) for v in result.outputs.values()):
        return result
    arrays: list[tuple[str, np.ndarray | ArrayRef]] = []
    for name, value in result.outputs.items():
        ref = writer.put(value) if in_arena(value) else None
        arrays.append((name, value if ref is None else ref))
    return SharedOutputs(tuple(arrays))


def _describe(runner: Any, spin: SpinWait, rehearsal: _Rehearsal) -> dict[str, Any]:
    from vm.sandbox.session import ENV_PREFIXES, pinned_session_options

    so = pinned_session_options()
    return {
        "pid": os.getpid(),
        "env": sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIXES)),
        "intra_op_threads": so.intra_op_num_threads,
        "inter_op_threads": so.inter_op_num_threads,
        "graph_optimization_level": str(so.graph_optimization_level),
        "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "cached": len(runner.cached_ids()),
        "resident": len(runner.resident_ids()),
        "resident_bytes": runner.resident_bytes(),
        "runs": runner.runs,
        "run_seconds": runner.run_seconds,
        "spins": spin.spins,
        "spin_hits": spin.hits,
        "spins_contended": spin.contended,
        "spin_trips": spin.trips,
        "spin_gated": spin.gated,
        "spin_contended_shares": [round(share, 3) for share in spin.contended_shares],
        "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        "gc_threshold": list(gc.get_threshold()),
        "gc_frozen": gc.get_freeze_count(),
        "gc_seconds": list(_GC_TIMER.seconds),
        "rehearsals": rehearsal.rehearsals,
    }


@dataclass(slots=True)
class _Worker:
    process: Any
    conn: Channel
    info: Ready
    cached: frozenset[bytes] = frozenset()
    arena: Arena | None = None
    # Wall seconds per job of this worker's last hand-off: the pool spins for a reply only when the batch
    # should be answered within the spin's bound (a longer one would burn the CPU and hold the GIL for
    # nothing), judged from the last one.
    seconds_per_job: float = 0.0
    # The reader of its flat replies, and the last one of inline outputs, read again while waiting for the
    # next (flat.rehearse_read).
    reader: flat.ReplyReader = field(default_factory=flat.ReplyReader)
    last_reply: bytearray | None = None
    # When its last reply came (monotonic seconds): a worker idle for longer has stopped spinning for a job.
    replied_at: float = 0.0


def _slot_of(model_id: bytes, size: int) -> int:
    return int.from_bytes(model_id[:8].ljust(8, b"\0"), "big") % size


class WorkerPool:
    """`size` sandbox workers; `run_batch(jobs)` is one hand-off per block and returns results in job order.

    Inference jobs go to the worker chosen by their model id (so each session is cached once); model bytes
    cross the pipe only when that worker does not hold the model. Thread-safe: calls are serialized.
    """

    def __init__(self, size: int = 1, limits: WorkerLimits | None = None, *, shared_memory: bool = True,
                 spin: bool = True, spin_min_share: float = SpinWait.MIN_SHARE, flat_jobs: bool = True,
                 wake_up: bool = False, spin_rule: tuple[int, int] = (SpinWait.WINDOW, SpinWait.TRIP_AFTER)) -> None:
        """`shared_memory=False` sends arrays pickled on the pipe instead, `spin=False` makes both sides block
        at once when they wait, `flat_jobs=False` sends a single inference as a pickled Batch like any other
        (the baselines bench/vm.py compares); `wake_up=True` wakes an idle worker before building a single job
        (docs/sandbox.md, "Wake-up before a lone job": off until measured on an idle machine);
        `spin_min_share=0` spins even on a contended core and `spin_rule=SpinWait.OLD_RULE` stops spinning after
        one contended spin (channel.SpinWait: for benches only)."""
        if size < 1:
            raise ValueError("pool size must be >= 1")
        self._size = size
        self._shared_memory = shared_memory
        self._limits = limits or WorkerLimits()
        self._limits.validate_pool(size)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * size
        self._quarantined: set[bytes] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._started_once = [False] * size
        self._worker_spin = (NEXT_JOB_SPIN_S if spin else 0.0, spin_min_share, spin_rule)
        self.spin = SpinWait(REPLY_SPIN_S if spin else 0.0, spin_min_share, spin_rule)
        self._flat_jobs = flat_jobs and shared_memory
        self._wake_up = wake_up
        # Input layouts of the specs seen in single jobs (flat.Layout), by the spec object's id.
        # With each, the templates of its jobs by (model id, raw flag, arena size) (flat.job_template; None: none).
        self._layouts: dict[int, tuple[ModelSpec, flat.Layout,
                                       dict[tuple[bytes, bool, int], flat.JobTemplate | None]]] = {}
        # Workers started again after one was discarded (a crash, timeout or fault); single jobs sent flat;
        # flat replies read again while waiting (flat.rehearse_read); flat replies put on the grid here.
        self.restarts = 0
        self.flat_runs = 0
        self.rehearsals = 0
        self.grids_here = 0
        self.wakes = 0  # wake-up messages sent ahead of a single job (flat.WAKE)
        self.row_jobs = 0  # inferences sent as rows of an InferRows (`_rows`)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def quarantined(self) -> frozenset[bytes]:
        return frozenset(self._quarantined)

    def holds(self, model_id: bytes) -> bool:
        """Whether the worker that `model_id` routes to holds its session now (a resident model loaded
        ahead: node/precompute.py); a restarted worker holds nothing until it is sent the model again."""
        with self._lock:
            worker = self._workers[_slot_of(model_id, self._size)]
            return worker is not None and worker.process.is_alive() and model_id in worker.cached

    def start(self) -> None:
        """Start every worker now instead of on first use."""
        with self._lock:
            for slot in range(self._size):
                self._ensure(slot)

    def start_forked(self) -> None:
        """Start every worker now by forking this process instead of spawning an interpreter: only from a process
        with one thread that has imported what a worker imports and holds nothing a worker must not inherit (a
        devnet node right after it was itself forked, node.devnet_fork). Later restarts spawn as usual."""
        with self._lock:
            for slot in range(self._size):
                self._ensure(slot, multiprocessing.get_context("fork"))

    def describe(self) -> list[dict[str, Any]]:
        """Diagnostics from each worker (pid, threading environment, session settings)."""
        with self._lock:
            out = []
            for slot in range(self._size):
                worker = self._ensure(slot)
                try:
                    worker.conn.send(Describe())
                    if not worker.conn.poll(self._limits.start_timeout_s):
                        raise WorkerFault("worker did not answer")
                    reply = worker.conn.recv()
                except (OSError, EOFError, UndecodableReply) as exc:
                    self._discard(slot)
                    raise WorkerFault(f"worker failed: {exc}") from None
                if not isinstance(reply, Described):
                    self._discard(slot)
                    raise WorkerFault(f"worker answered Describe with {type(reply).__name__}")
                out.append(dict(reply.info))
            return out

    def unpin_except(self, keep: frozenset[bytes]) -> int:
        """Tell every running worker to drop the pinned sessions of models not in `keep` (the chain's resident
        set after a commit: a retired or rejected model left it); how many sessions were dropped. Starts no
        worker (a new one pins nothing); a worker that fails to answer is discarded, which drops them too."""
        with self._lock:
            dropped = 0
            for slot, worker in enumerate(self._workers):
                if self._closed or worker is None or not worker.process.is_alive():
                    continue
                before = worker.cached
                try:
                    worker.conn.send(Unpin(frozenset(keep)))
                    self._interpret(slot, worker, self._receive(slot, worker, time.monotonic()
                                                                + self._limits.start_timeout_s, None), [])
                except (OSError, EOFError, ValueError):
                    self._discard(slot)
                except LocalFault:  # discarded by `_receive` or `_interpret`: it pins nothing now
                    pass
                dropped += len(before - worker.cached)
            return dropped

    def run_batch(self, jobs: Sequence[Job], timeout_s: float | None = None) -> list[JobResult]:
        """Run one block's jobs; raises LocalFault (GoldenMismatch, WorkerFault) if this node cannot decide."""
        with self._lock:
            if self._closed:
                raise WorkerFault("pool is closed")
            for job in jobs if self._quarantined else ():
                if isinstance(job, InferJob) and job.model.model_id in self._quarantined:
                    raise GoldenMismatch(job.model.model_id, "model is quarantined on this node")
            if len(jobs) == 1 and self._flat_jobs and type(jobs[0]) is InferJob:
                result = self._run_flat(jobs[0], timeout_s)
                if result is not None:
                    return [result]
            deadline = time.monotonic() + (self._limits.batch_timeout_s if timeout_s is None else timeout_s)
            plan: dict[int, list[tuple[int, Job]]] = {}
            check_slot = 0
            slots: dict[bytes, int] = {}  # each model's slot, computed once per batch
            for index, job in enumerate(jobs):
                if isinstance(job, InferJob):
                    model_id = job.model.model_id
                    slot = slots.get(model_id, -1)
                    if slot < 0:
                        slot = slots[model_id] = _slot_of(model_id, self._size)
                else:
                    slot, check_slot = check_slot, (check_slot + 1) % self._size
                plan.setdefault(slot, []).append((index, job))
            sent: dict[int, _Worker] = {}
            # Each slot's reply as expected: the batch position of each job sent (a rows job's first), and the
            # rows jobs' positions by their first.
            expect: dict[int, tuple[list[int], dict[int, tuple[int, ...]]]] = {}
            started = time.monotonic()
            fault: LocalFault | None = None
            for slot, slot_jobs in plan.items():
                try:
                    worker = self._ensure(slot)
                    wire, free_from = self._wire(worker, slot_jobs)
                    worker.conn.send(Batch(wire, self._limits.cpu_seconds_per_batch, free_from))
                    sent[slot] = worker
                    expect[slot] = ([job.indices[0] if isinstance(job, InferRows) else job.index for job in wire],
                                    {job.indices[0]: job.indices for job in wire if isinstance(job, InferRows)})
                except LocalFault as exc:
                    fault = fault or exc
                except (OSError, EOFError, ValueError) as exc:
                    self._discard(slot)
                    fault = fault or WorkerFault(f"worker failed while receiving a batch: {exc}")
            results: list[JobResult | None] = [None] * len(jobs)
            for slot, worker in sent.items():
                jobs_here = len(plan[slot])
                spin = self.spin if worker.seconds_per_job * jobs_here <= self.spin.limit_s else None
                try:
                    for index, result in self._collect(slot, worker, deadline, spin, *expect[slot]):
                        results[index] = result
                except LocalFault as exc:
                    fault = fault or exc
                worker.replied_at = now = time.monotonic()
                worker.seconds_per_job = (now - started) / jobs_here
            if fault is not None:
                raise fault
            assert all(r is not None for r in results)
            return [r for r in results if r is not None]

    def _run_flat(self, job: InferJob, timeout_s: float | None) -> JobResult | None:
        """One inference as one flat message each way (vm/sandbox/flat.py), when its worker holds the model
        and the inputs are exactly the declared arrays; None when it cannot go that way (the caller then sends
        a pickled Batch, which also gives the verdict on inputs that do not match)."""
        model_id = job.model.model_id
        slot = _slot_of(model_id, self._size)
        worker = self._workers[slot]
        # A worker sends nothing between batches: something to read now means it died (end of stream) or broke
        # step, and the pickled path sorts that out (`_ensure`). One poll instead of `is_alive` (getpid + wait4).
        if worker is None or model_id not in worker.cached or worker.conn.poll(0):
            return None
        started = time.monotonic()
        # A worker idle for longer than its spin for the next job is blocked, and both sides' caches went to
        # whatever ran meanwhile (a lone job). A pool with the wake-up on and a core to spare (its spin-waits on)
        # wakes the worker first, so that it wakes up and rehearses while this job is built (flat.WAKE), and
        # reads its last reply again while the worker works (docs/sandbox.md, "Wake-up before a lone job"). Not
        # on a contended core: a woken worker would take this thread's core, and the rehearsals would come
        # before the work instead of beside it.
        lone = self._wake_up and started - worker.replied_at > NEXT_JOB_SPIN_S and self.spin.active(started)
        if lone:
            try:
                worker.conn.send_parts([flat.WAKE])
            except OSError as exc:
                self._discard(slot)
                raise WorkerFault(f"worker failed while receiving a batch: {exc}") from None
            self.wakes += 1
        layout, templates = self._layout(job.model.spec)
        arrays = layout.arrays(job.inputs)
        if arrays is None:
            return None  # (a woken worker then gets the pickled batch, as any other message)
        deadline = started + (self._limits.batch_timeout_s if timeout_s is None else timeout_s)
        # Expected within the spin's bound: spin from the start; later (up to NAP_BEFORE_SPIN_S): sleep, then
        # spin for the end (channel.Channel.poll, `expect_s`); later still: block. A pool that will spin asks
        # for the raw outputs and puts them on the grid itself, on the caches its spin keeps warm; one that
        # blocks has the worker do it, as before (docs/performance-sandbox.md, "Single jobs: cold caches"), but
        # for a few float32 values, which the worker always sends raw (flat.few_floats).
        expect = worker.seconds_per_job
        spin = None if expect > NAP_BEFORE_SPIN_S or not self.spin.gate(started) else self.spin
        # The job from its template (built once per model, raw flag and arena size; its larger inputs copied to
        # their fixed places in the arena), else built whole (an arena-sized input the arena has no room for).
        raw = spin is not None
        arena = worker.arena
        key = (model_id, raw, 0 if arena is None else arena.size)
        if key in templates:
            template = templates[key]
        else:
            template = templates[key] = flat.job_template(model_id, layout, self._limits.cpu_seconds_per_batch, raw,
                                                          key[2])
        if template is not None:
            parts = flat.templated_parts(template, arrays, arena)
        else:
            parts = flat.job_parts(model_id, layout, arrays, self._limits.cpu_seconds_per_batch,
                                   None if worker.arena is None else Writer(worker.arena), raw)
        try:
            worker.conn.send_parts(parts)
        except (OSError, ValueError) as exc:
            self._discard(slot)
            raise WorkerFault(f"worker failed while receiving a batch: {exc}") from None
        self.flat_runs += 1
        # Between the sleep and the spin the pool reads its last reply again (flat.rehearse_read): the read of
        # this one then runs on warm caches. For a lone job that it woke the worker for and spins for from the
        # start, the pool rereads it now, while the worker works.
        last = worker.last_reply
        nap = expect if expect > self.spin.limit_s else 0.0
        if lone and spin is not None and not nap and last is not None:
            self._rehearse(worker.reader, last)
        reply = self._receive(slot, worker, deadline, spin, nap,
                              None if last is None else functools.partial(self._rehearse, worker.reader, last))
        worker.replied_at = now = time.monotonic()
        worker.seconds_per_job = now - started
        if type(reply) is bytearray:
            self.grids_here += reply[1:2] != b"\0"  # the grid byte (flat.reply_grid): raw outputs
            try:
                outputs = worker.reader.canonical(reply, worker.arena)
            except flat.MalformedFlat as exc:
                self._discard(slot)
                raise UndecodableReply(f"worker sent a malformed reply: {exc}") from None
            except InferenceError as exc:  # raw outputs off the grid: the verdict the worker would have given
                return JobResult(error=exc)
            finally:
                worker.last_reply = reply if len(reply) <= flat.REHEARSAL_BYTES else None
            return JobResult(outputs=outputs)
        ((_, result),) = self._interpret(slot, worker, reply, [0])
        return result

    def _layout(self, spec: ModelSpec) -> tuple[flat.Layout, dict[tuple[bytes, bool, int], flat.JobTemplate | None]]:
        """The input layout of `spec` (checked once per spec object) and its flat job templates."""
        entry = self._layouts.get(id(spec))
        if entry is None or entry[0] is not spec:
            if len(self._layouts) >= 256:
                self._layouts.clear()
            entry = self._layouts[id(spec)] = (spec, flat.Layout.of(spec.inputs), {})
        return entry[1], entry[2]

    def _rows(self, slot_jobs: list[tuple[int, Job]]) -> dict[int, tuple[tuple[int, ...], _Columns]]:
        """The slot's inferences that travel as rows (`InferRows`): for each model (and spec) with at least
        ROWS_MIN jobs whose inputs are exactly the declared arrays (`flat.Layout.arrays`), the jobs' batch
        positions and, by input name, the declared shape and the jobs' arrays in order, under the first
        position. `_wire` stacks each input's arrays where the worker reads them (`_stack`)."""
        groups: dict[tuple[bytes, int], tuple[list[int], list[list[np.ndarray]], flat.Layout]] = {}
        # Each package object's group, looked up once: a block's jobs of a model share one package.
        by_package: dict[int, tuple[list[int], list[list[np.ndarray]], flat.Layout]] = {}
        for index, job in slot_jobs:
            if type(job) is not InferJob:
                continue
            model = job.model
            group = by_package.get(id(model))
            if group is None:
                layout = self._layout(model.spec)[0]
                key = (model.model_id, id(layout))
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ([], [], layout)
                by_package[id(model)] = group
            arrays = group[2].arrays(job.inputs)
            if arrays is None:
                continue
            group[0].append(index)
            group[1].append(arrays)
        rows: dict[int, tuple[tuple[int, ...], _Columns]] = {}
        for indices, columns, layout in groups.values():
            if len(indices) < ROWS_MIN:
                continue
            rows[indices[0]] = (tuple(indices), {
                name: (shape, [job_arrays[position] for job_arrays in columns])
                for position, (name, _, shape, _) in enumerate(layout.inputs)})
            self.row_jobs += len(indices)
        return rows

    def _rehearse(self, reader: flat.ReplyReader, last: bytearray) -> None:
        self.rehearsals += 1
        flat.rehearse_read(reader, last)

    def _wire(self, worker: _Worker, slot_jobs: list[tuple[int, Job]]) -> tuple[tuple[WireJob, ...], int]:
        """The jobs as the worker receives them, their inputs written into its arena; and where the free
        part of the arena begins."""
        if not self._shared_memory:
            return self._wire_pickled(worker, slot_jobs), 0
        rows = self._rows(slot_jobs)
        in_rows = {index for indices, _ in rows.values() for index in indices}
        need = arena_bytes_for([job.inputs for index, job in slot_jobs
                                if index not in in_rows and isinstance(job, InferJob)]) + sum(
            aligned(nbytes) for _, columns in rows.values() for _, column in columns.values()
            if joins_in_arena(column[0].dtype, nbytes := len(column) * column[0].nbytes))
        arena = worker.arena
        if arena is None or arena.size < 2 * need:
            arena = Arena(arena_size(need))
            try:
                worker.conn.send(ShareArena(arena.size), (arena.fd,))
            finally:
                arena.close()  # the worker holds its own descriptor now; the mapping stays here
            worker.arena = arena
        writer = Writer(arena)
        wire: list[WireJob] = []
        shipping: set[bytes] = set()
        for index, job in slot_jobs:
            group = rows.get(index)
            if group is None and index in in_rows:
                continue  # sent with the rows of its model's first job
            if isinstance(job, CheckJob):
                wire.append(CheckWire(index, job.model_bytes, job.spec, tuple(job.golden_inputs), job.gas_left))
                continue
            model_id = job.model.model_id
            package: ModelPackage | None = None
            if model_id not in worker.cached and model_id not in shipping:
                package = job.model
                shipping.add(model_id)
            inputs: dict[str, np.ndarray | ArrayRef] = {}
            if group is None:
                for name, value in job.inputs.items():
                    ref = writer.put(value) if in_arena(value) else None
                    inputs[name] = value if ref is None else ref
            else:
                for name, (shape, column) in group[1].items():
                    inputs[name] = _stack(writer, shape, column)
            wire.append(InferWire(index, model_id, package, inputs) if group is None
                        else InferRows(group[0], model_id, package, inputs))
        return tuple(wire), writer.end

    def _collect(self, slot: int, worker: _Worker, deadline: float, spin: SpinWait | None,
                 indices: list[int], rows: dict[int, tuple[int, ...]]) -> Iterator[tuple[int, JobResult]]:
        """The worker's results for the jobs at `indices` (batch positions, in the order sent; a rows job's
        first, its positions in `rows`)."""
        return self._interpret(slot, worker, self._receive(slot, worker, deadline, spin), indices, rows)

    def _receive(self, slot: int, worker: _Worker, deadline: float, spin: SpinWait | None,
                 expect_s: float = 0.0, rehearse: Callable[[], object] | None = None) -> Any:
        """The worker's next message (a reply object, or a flat reply's bytes); WorkerFault if none comes by
        `deadline` or it cannot be read (the worker is discarded)."""
        try:
            if not worker.conn.poll(max(0.0, deadline - time.monotonic()), spin, expect_s, rehearse):
                self._discard(slot)
                raise WorkerFault("worker timed out")
            return worker.conn.recv()
        except UndecodableReply as exc:  # a broken or taken-over worker: never trust it again
            self._discard(slot)
            raise UndecodableReply(f"worker sent an {exc}") from None
        except (OSError, EOFError):
            worker.process.join(_STOP_TIMEOUT_S)
            code = worker.process.exitcode
            self._discard(slot)
            raise WorkerFault(f"worker died (exit code {code})") from None

    def _interpret(self, slot: int, worker: _Worker, reply: FromWorker | bytearray, indices: list[int],
                   rows: dict[int, tuple[int, ...]] | None = None) -> Iterator[tuple[int, JobResult]]:
        """The results a pickled reply gives for the jobs at `indices` (and the rows jobs in `rows`), as (batch
        position, result) pairs made as they are read (a rows job's by `zip`, which reuses its pair when the
        reader drops it: no object per row for them); LocalFault for a fault, a golden mismatch or anything
        malformed (the worker is discarded but for a golden mismatch), raised before any pair is read."""
        rows = rows or {}
        match reply:
            case Done(results=results, cached=cached) if _well_formed(results, cached, indices, rows):
                if cached is not None:
                    worker.cached = cached
                out: list[Iterable[tuple[int, JobResult]]] = []
                for index, result in results:
                    if isinstance(result, RowResults):
                        out.append(self._unrows(slot, worker, result, rows[index]))
                    else:
                        out.append(((index, self._unshare(slot, worker, result)),))
                return itertools.chain.from_iterable(out)
            case GoldenFault(model_id=bytes() as model_id, detail=str() as detail, cached=cached) if (
                    cached is None or _ids(cached)):
                if cached is not None:
                    worker.cached = cached
                self._quarantined.add(model_id)
                raise GoldenMismatch(model_id, detail)
            case Fault(message=message, internal=internal):
                self._discard(slot)
                raise WorkerFault(f"worker {'bug' if internal else 'fault'}: {message}")
            case _:
                self._discard(slot)
                raise WorkerFault(f"worker answered a batch with a malformed {type(reply).__name__}")

    def _wire_pickled(self, worker: _Worker, slot_jobs: list[tuple[int, Job]]) -> tuple[WireJob, ...]:
        wire: list[WireJob] = []
        for index, job in slot_jobs:
            if isinstance(job, CheckJob):
                wire.append(CheckWire(index, job.model_bytes, job.spec, tuple(job.golden_inputs), job.gas_left))
            else:
                package = None if job.model.model_id in worker.cached else job.model
                wire.append(InferWire(index, job.model.model_id, package, dict(job.inputs)))
        return tuple(wire)

    def _unrows(self, slot: int, worker: _Worker, result: RowResults,
                indices: tuple[int, ...]) -> Iterator[tuple[int, JobResult]]:
        """The results of a rows job by batch position: each row's outputs as views of a private copy of the
        stacked arrays (one copy per output name, not per job), the separate rows' results as sent."""
        n = len(indices)
        try:
            arrays: list[tuple[str, np.ndarray]] = []
            for name, sent in result.outputs:
                if isinstance(sent, ArrayRef):
                    assert worker.arena is not None
                    value = worker.arena.copy_out(sent)
                else:
                    value = sent
                if not _plain(value) or value.ndim == 0 or value.shape[0] != n:
                    raise ValueError(f"output {name!r} does not hold {n} rows")
                arrays.append((name, value))
            separate = dict(result.separate)
            if len(separate) != len(result.separate) or not all(0 <= row < n for row in separate):
                raise ValueError("separate rows out of range or repeated")
        except (AssertionError, ValueError, TypeError, OverflowError) as exc:
            self._discard(slot)
            raise WorkerFault(f"worker bug: malformed rows: {exc}") from None
        if len(arrays) == 1 and not separate:  # the common case: one output, every row succeeded
            ((name, value),) = arrays
            return zip(indices, [outputs_result({name: row}) for row in value], strict=True)
        return zip(indices, [found if (found := separate.get(row)) is not None else
                             outputs_result({name: value[row] for name, value in arrays}) for row in range(n)],
                   strict=True)

    def _unshare(self, slot: int, worker: _Worker, result: JobResult | SharedOutputs) -> JobResult:
        """A result with private copies of the outputs the worker left in the arena."""
        if isinstance(result, JobResult):
            return result
        try:
            assert worker.arena is not None
            arena = worker.arena
            return JobResult(outputs={name: arena.copy_out(value) if isinstance(value, ArrayRef) else value
                                      for name, value in result.arrays})
        except (AssertionError, ValueError, TypeError, OverflowError) as exc:  # numpy refuses a ref outside the arena
            self._discard(slot)
            raise WorkerFault(f"worker bug: outputs outside the arena: {exc}") from None

    def _ensure(self, slot: int, ctx: Any = None) -> _Worker:
        worker = self._workers[slot]
        if worker is not None and worker.process.is_alive():
            return worker
        if worker is not None:
            self._discard(slot)
        parent_sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if ctx is not None:  # a forked worker must not hold the pool's end: it would never see the pool go away
            multiprocessing.util.register_after_fork(parent_sock, socket.socket.close)
        parent = Channel(parent_sock, allowed=REPLY_GLOBALS)
        process = (ctx or self._ctx).Process(target=_worker_main, args=(child, self._limits, *self._worker_spin),
                                             daemon=True)
        try:
            process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        ready = None
        try:
            if parent.poll(self._limits.start_timeout_s):
                ready = parent.recv()
        except (OSError, EOFError, UndecodableReply):
            ready = None
        if not isinstance(ready, Ready):
            # Read the exit code before _kill closes the process object (reading it after raises).
            exitcode = process.exitcode
            _kill(process)
            parent.close()
            reason = "did not start in time" if exitcode is None else f"failed to start (exit code {exitcode})"
            raise WorkerFault(f"worker {reason}")
        worker = _Worker(process, parent, ready)
        self._workers[slot] = worker
        if self._started_once[slot]:
            self.restarts += 1
        self._started_once[slot] = True
        return worker

    def _discard(self, slot: int) -> None:
        worker = self._workers[slot]
        self._workers[slot] = None
        if worker is not None:
            _kill(worker.process)
            worker.conn.close()
            worker.arena = None  # unmapped once no array views it; nothing to unlink (memfd)

    def close(self) -> None:
        """Stop every worker (politely, then by force after a bounded wait)."""
        with self._lock:
            self._closed = True
            for slot, worker in enumerate(self._workers):
                if worker is None:
                    continue
                with contextlib.suppress(OSError, EOFError, ValueError):
                    worker.conn.send(Stop())
                worker.process.join(_STOP_TIMEOUT_S)
                self._discard(slot)


def _stack(writer: Writer, shape: tuple[int, ...], column: list[np.ndarray]) -> np.ndarray | ArrayRef:
    """One input of a rows job: the jobs' arrays (each of the declared `shape`) stacked along a new first
    axis, written once, straight into the arena where the stacked array belongs there (`Writer.join`), else
    stacked in private memory for the message."""
    first = column[0]
    if joins_in_arena(first.dtype, len(column) * first.nbytes):
        ref = writer.join(column, shape)
        if ref is not None:
            return ref
    # One C loop: the rows joined along their first axis, then split off as a new one.
    return np.concatenate(column).reshape(len(column), *shape) if shape else np.stack(column)


def _ids(cached: object) -> bool:
    return type(cached) is frozenset and all(type(model_id) is bytes for model_id in cached)


def _well_formed(results: object, cached: object, indices: list[int],
                 rows: Mapping[int, tuple[int, ...]] | None = None) -> bool:
    """Whether a Done holds one result per job sent, in order, of the types the pool reads (a `RowResults`
    exactly for the rows jobs, whose positions `rows` holds by the first): the allow-list bounds what a reply
    can build, not how a taken-over worker fills it."""
    if type(results) is not tuple or len(results) != len(indices) or not (cached is None or _ids(cached)):
        return False
    rows = rows or {}
    for item, index in zip(results, indices, strict=True):
        if type(item) is not tuple or len(item) != 2 or item[0] != index:
            return False
        result = item[1]
        if (type(result) is RowResults) != (index in rows):
            return False
        if type(result) is RowResults:
            if not _named_arrays(result.outputs) or type(result.separate) is not tuple or not all(
                    type(pair) is tuple and len(pair) == 2 and type(pair[0]) is int
                    and type(pair[1]) is JobResult and _result_types(pair[1]) for pair in result.separate):
                return False
        elif type(result) is SharedOutputs:
            if not _named_arrays(result.arrays):
                return False
        elif type(result) is not JobResult or not _result_types(result):
            return False
    return True


def _named_arrays(pairs: object) -> bool:
    """A tuple of (name, array in the message or ArrayRef into the arena) pairs."""
    return type(pairs) is tuple and all(
        type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str
        and (type(pair[1]) is ArrayRef or _plain(pair[1])) for pair in pairs)


def _plain(value: object) -> bool:
    """A numpy array of numbers: not an object array a reply built with numpy's own reconstruction."""
    return type(value) is np.ndarray and value.dtype.kind in "biuf"


def _arrays(outputs: object) -> bool:
    return type(outputs) is dict and all(type(k) is str and _plain(v) for k, v in outputs.items())


def _result_types(result: JobResult) -> bool:
    """Whether a result holds what the VM reads, of the types it reads them as (a reply can set fields
    without the constructors' checks: NEWOBJ + BUILD)."""
    outputs, error, info, golden = result.outputs, result.error, result.info, result.golden
    return ((outputs is None or _arrays(outputs))
            and (error is None or isinstance(error, (InvalidModel, InferenceError)))
            and (info is None or _info_types(info))
            and (golden is None or (type(golden) is tuple and all(g is None or _arrays(g) for g in golden))))


def _info_types(info: object) -> bool:
    if type(info) is not ModelInfo or type(info.sha256) is not bytes or type(info.model_class) is not CompareMode:
        return False
    numbers = (info.opset, info.gas_per_call, info.macs, info.elementwise_ops, info.activation_bytes,
               info.parameter_bytes, info.node_count)
    specs = (*info.inputs, *info.outputs) if type(info.inputs) is tuple and type(info.outputs) is tuple else (0,)
    histogram = info.op_histogram
    return (all(type(n) is int for n in numbers)
            and all(type(a) is ArraySpec and type(a.name) is str and a.dtype in ALLOWED_DTYPES
                    and type(a.shape) is tuple and all(type(d) is int for d in a.shape) for a in specs)
            and type(histogram) is tuple and all(
                type(h) is tuple and len(h) == 2 and type(h[0]) is str and type(h[1]) is int for h in histogram))


def _kill(process: Any) -> None:
    if process.is_alive():
        process.kill()
    process.join(_STOP_TIMEOUT_S)
    with contextlib.suppress(ValueError):
        process.close()
