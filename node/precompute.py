"""Deferred registrations checked in the background (vm/deferred.py, docs/sandbox.md "Deferred activation").

After each commit that leaves registrations pending, the node runs their checks on a sandbox worker of its
own (one process, started on first need and stopped when nothing is left to check, so the block path's pool
is never held by this work), and the answers land in the VM's check memo under the keys the activation
blocks will ask for: at the activation height, building, validating and applying find the verdict instead
of computing it. A local fault (the
worker out of memory or time) is alarmed and no answer is kept; the activation then computes the check itself
(the memo counts the fault: a check that faulted twice alone is not run again, vm/checkmemo.py).

The same pass loads every resident model (vm/resident.py: deferred registrations, pending or registered) that
the block path's worker pool does not hold yet, pinned, one model per hand-off (`VMApplication.preload_resident`):
at start-up, before the activation height, and after a worker restart. A block that calls one before its load
finished loads it on the block path: a slower block, never another verdict.

Only a node that builds or validates blocks needs the verdicts ahead: a node that only applies committed
blocks (no validator key, not in the validator set, or catching up by block sync) takes each verdict from its
activation block (vm/activation.py) and never asks the memo. The `wanted` predicate says which; a pass it
refuses is counted in `skipped` and starts no worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from core.errors import InferchainError
from vm.deferred import pending_in_order

if TYPE_CHECKING:
    from vm.app import VMApplication
    from vm.sandbox.executor import Executor

logger = logging.getLogger(__name__)

# Heights before a deferred activation during which the pass loads no resident model (`_activation_near`).
PRELOAD_HOLD = 8


def _one_worker() -> Executor:
    from vm.sandbox.worker import WorkerPool

    return WorkerPool(size=1)


class DeferredPrecompute:
    """`wake()` after a commit; `run` checks the next pending registrations in a thread, one at a time."""

    def __init__(self, app: VMApplication, *, alarm: Callable[[str], None],
                 make_executor: Callable[[], Executor] = _one_worker, ahead: int = 2,
                 wanted: Callable[[], bool] = lambda: True) -> None:
        self._app = app
        self._wanted_now = wanted
        self._alarm = alarm
        self._make_executor = make_executor
        self._ahead = ahead
        self._executor: Executor | None = None
        self._wanted = trio.Event()
        self._passed = trio.Event()
        self.ran = 0  # checks this node answered ahead of their activation
        self.skipped = 0  # passes not run: the node only applies blocks (`wanted` said no)
        self.preloaded = 0  # resident models loaded ahead into the block path's pool
        self.held = 0  # passes that left the preload for later: an activation was near

    def wake(self) -> None:
        self._wanted.set()

    async def next_pass(self) -> None:
        """Wait until the pass under way (or the next one) has finished."""
        await self._passed.wait()

    def _precompute(self) -> int:
        started, cpu = time.perf_counter(), time.thread_time()  # log lines only: never in a verdict
        if self._executor is None:
            self._executor = self._make_executor()  # a pool starts its process on its first job, not here
        ran = self._app.precompute_deferred(self._executor, self._ahead)
        if ran == 0:  # nothing new pending: the worker (an ONNX Runtime process) is not kept idle
            self.close()
        checked, checked_cpu = time.perf_counter(), time.thread_time()
        # Resident models (vm/resident.py), pending ones included, into the block path's own pool: at start
        # (the first pass) and after a worker restart, before a block that calls one needs it. Not while an
        # activation is due within PRELOAD_HOLD heights: a load holds the block path's worker for seconds
        # (the heights' PoI challenges and any check the memo lacks would wait behind it) and its CPU is what
        # the activation height's checks need; the pass after the activation commits loads it.
        preloaded, held = 0, self._activation_near()
        if held:
            self.held += 1
        else:
            preloaded = self._app.preload_resident()
        self.preloaded += preloaded
        if ran or preloaded:
            done = time.perf_counter()
            logger.info("background pass at height %d: %d check(s) in %.2f s (this thread's CPU %.2f s), "
                        "%d resident model(s) preloaded in %.2f s (CPU %.2f s)%s", self._app.last_height, ran,
                        checked - started, checked_cpu - cpu, preloaded, done - checked,
                        time.thread_time() - checked_cpu, "; preload held: an activation is near" if held else "")
        return ran

    def _activation_near(self) -> bool:
        view = self._app.view()
        pending = pending_in_order(view, 1)
        return bool(pending) and int(pending[0][1].activates_at) - int(view.chain().height) <= PRELOAD_HOLD

    async def run(self) -> None:
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                if not self._wanted_now():
                    self.skipped += 1
                    self.close()  # a worker kept from before (the node left the validator set)
                    self._pass_done()
                    continue
                try:
                    self.ran += await trio.to_thread.run_sync(self._precompute)
                except InferchainError as exc:  # this node's fault: the activation will compute it itself
                    self._alarm(f"background check of a deferred registration: {exc}")
                self._pass_done()
        finally:
            self.close()

    def _pass_done(self) -> None:
        passed, self._passed = self._passed, trio.Event()
        passed.set()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None
