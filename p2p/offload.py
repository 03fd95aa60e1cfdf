"""Running a blocking function in a worker thread without trio's per-call thread naming.

`trio.to_thread.run_sync` names the cached worker thread after each job and back again (two `prctl` calls
and a formatted name per call). On the per-transaction path (signature checks of a gossip batch or an RPC
request, envelope checks, mempool store writes) that is pure overhead, so the hot callers use `run_sync`
here: trio's own thread cache (`trio.lowlevel.start_thread_soon`) with no name, the result delivered
to the waiting task with the run's trio token. Semantics are those of `to_thread.run_sync` with
`abandon_on_cancel=False`: the limiter bounds how many jobs run at once and a job waits for a token while
queued (cancellable there); once started, the caller waits for it to finish whatever happens, and its
exception is raised in the caller. The function runs in a copy of the caller's context variables.
It lives in `p2p` so that both `p2p` and `node` can use it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import trio

if TYPE_CHECKING:
    import outcome

T = TypeVar("T")

_DEFAULT_LIMITER = trio.to_thread.current_default_thread_limiter


async def run_sync(fn: Callable[..., T], *args: object, limiter: trio.CapacityLimiter | None = None,
                   thread_name: str | None = None) -> T:
    """`fn(*args)` in a worker thread; the event loop goes on meanwhile. Not cancellable once started.
    `thread_name`, if given, names the thread for the job as `to_thread` does (bench.offload measures its cost)."""
    if limiter is None:
        limiter = _DEFAULT_LIMITER()
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    await limiter.acquire_on_behalf_of(task)  # queued here: cancellable, nothing has run
    try:
        token = trio.lowlevel.current_trio_token()
        context = contextvars.copy_context()

        def work() -> T:
            return context.run(fn, *args)

        def deliver(result: outcome.Outcome[T]) -> None:  # in the worker thread
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)  # the run waits for us: it is still there

        trio.lowlevel.start_thread_soon(work, deliver, thread_name)  # None: trio leaves the thread's name alone

        def abort(_: object) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # the job is running: wait for it, as to_thread does

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result
    finally:
        limiter.release_on_behalf_of(task)
