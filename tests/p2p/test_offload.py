"""p2p.offload.run_sync with real worker threads: result, errors, the loop left free, cancellation while
queued and while running, the limiter's bound, context variables, and no per-job thread renaming."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest
import trio

from p2p import offload

pytestmark = [pytest.mark.p2p]

WAIT_S = 10.0  # bound on every wait; nothing here should come near it


def _os_thread_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


def test_result_comes_back_from_another_thread() -> None:
    async def main() -> tuple[int, int]:
        return await offload.run_sync(lambda a, b: (a + b, threading.get_ident()), 2, 3)

    total, ident = trio.run(main)
    assert total == 5
    assert ident != threading.get_ident()


def test_exception_reaches_the_caller() -> None:
    class Boom(ValueError):
        pass

    def fail() -> None:
        raise Boom("bad signature")

    async def main() -> None:
        await offload.run_sync(fail)

    with pytest.raises(Boom, match="bad signature"):
        trio.run(main)


def test_the_event_loop_runs_while_the_job_blocks() -> None:
    gate = threading.Event()

    async def main() -> bool:
        async with trio.open_nursery() as nursery:
            async def opener() -> None:
                await trio.sleep(0.01)
                gate.set()  # only the event loop can let the job finish

            nursery.start_soon(opener)
            with trio.fail_after(WAIT_S):
                return await offload.run_sync(gate.wait, WAIT_S)
        raise AssertionError("unreachable")

    assert trio.run(main) is True


def test_cancel_while_queued_never_runs_the_job() -> None:
    limiter = trio.CapacityLimiter(1)
    gate = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: offload.run_sync(gate.wait, WAIT_S, limiter=limiter))
            await trio.sleep(0.01)
            assert limiter.borrowed_tokens == 1
            with trio.move_on_after(0.05) as scope:
                await offload.run_sync(ran.append, "second", limiter=limiter)  # queued behind the first
            assert scope.cancelled_caught
            gate.set()
        assert limiter.borrowed_tokens == 0  # the queued call gave nothing back it did not hold

    trio.run(main)
    assert ran == []


def test_cancel_while_running_waits_for_the_job() -> None:
    gate = threading.Event()
    finished = threading.Event()

    def job() -> str:
        gate.wait(WAIT_S)
        finished.set()
        return "done"

    async def main() -> str | None:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                async def cancel_then_open() -> None:
                    await trio.sleep(0.01)
                    scope.cancel()
                    await trio.sleep(0.05)
                    gate.set()

                nursery.start_soon(cancel_then_open)
                result = await offload.run_sync(job)
                assert finished.is_set()  # it did not return before the job finished
                return result
        return None

    assert trio.run(main) == "done"


def test_the_limiter_bounds_jobs_at_once() -> None:
    limiter = trio.CapacityLimiter(2)
    lock = threading.Lock()
    running = [0]
    most = [0]

    def job() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1

    async def main() -> None:
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(lambda: offload.run_sync(job, limiter=limiter))
        assert limiter.borrowed_tokens == 0

    trio.run(main)
    assert most[0] == 2


def test_context_variables_reach_the_job() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        var.set("caller's")
        return await offload.run_sync(var.get)

    assert trio.run(main) == "caller's"


def test_the_worker_thread_is_not_renamed_per_job() -> None:
    """trio.to_thread renames the OS thread for each job (a prctl there and back); run_sync does not."""

    async def main() -> tuple[str, str]:
        ours = await offload.run_sync(_os_thread_name)
        theirs = await trio.to_thread.run_sync(_os_thread_name)
        return ours, theirs

    ours, theirs = trio.run(main)
    assert theirs == "_os_thread_name"  # to_thread names it after the function (15 bytes at most)
    assert ours != theirs
