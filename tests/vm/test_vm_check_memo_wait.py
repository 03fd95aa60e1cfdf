"""A block path that misses a deferred registration's check while the node's background pass is running that
very check (vm/checkmemo.py `precompute_window`) waits for its answer instead of running it a second time
alongside: at an activation height just after the completing block, both ran the same big check at once on
every node of a loaded devnet (docs/performance-sandbox.md, "The activation height (activation round)"). The answer
is the same object either way; a background fault leaves the block path to run it itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from core.errors import LocalFault
from core.tensor import DType
from tests.vm.helpers import meta_for, spec, wide_model
from tests.vm.test_vm_check_memo import CountingExecutor as Counting
from tools.genesis import make_genesis
from vm.checkmemo import CheckMemo
from vm.engine import feeds, model_spec, sandbox_limits
from vm.genesis import parse_genesis
from vm.sandbox.executor import CheckJob, Job, JobResult
from vm.txs import ModelClass

pytestmark = pytest.mark.vm


class Held(Counting):
    """The background worker: its check starts, then waits for `release` (or faults, when `fault` is set)."""

    def __init__(self, *, fault: bool = False) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.fault = fault

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.started.set()
        assert self.release.wait(60)
        if self.fault:
            raise LocalFault("worker fault: out of memory (this test's)")
        return super().run_batch(jobs)


def _job() -> CheckJob:
    model_bytes = wide_model(64)
    meta = meta_for("wide", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 64))],
                    ModelClass.EXACT, [[np.array([[1]], np.int32)]])
    limits = sandbox_limits(parse_genesis(make_genesis(1)).params)
    return CheckJob(model_bytes, model_spec(meta, limits), tuple(feeds(meta, v.inputs) for v in meta.golden),
                    10**12)


def _race(memo: CheckMemo, background: Held, job: CheckJob) -> tuple[list[JobResult], list[BaseException]]:
    """The background pass runs `job` (held); meanwhile the block path asks for it; then the pass is released."""
    answers: list[JobResult] = []
    errors: list[BaseException] = []

    def background_pass() -> None:
        try:
            memo.precompute_window([job], background)
        except LocalFault as exc:
            errors.append(exc)

    def block_path() -> None:
        answers.extend(memo.run_batch([job]))

    bg = threading.Thread(target=background_pass)
    bg.start()
    assert background.started.wait(60)
    path = threading.Thread(target=block_path)
    path.start()
    deadline = time.monotonic() + 60
    while memo.waiting == 0 and path.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the block path waits for the background run (bounded)
    waited_for = memo.waiting
    background.release.set()
    bg.join(60)
    path.join(60)
    assert not bg.is_alive() and not path.is_alive()
    assert waited_for == 1  # the block path was waiting for the background run, not running its own
    return answers, errors


def test_the_block_path_waits_for_the_background_run_of_its_check() -> None:
    block_pool = Counting()
    memo = CheckMemo(block_pool)
    background = Held()
    job = _job()
    answers, errors = _race(memo, background, job)
    assert not errors and background.checks == 1
    assert block_pool.checks == 0  # red without the wait: the block path ran the same check alongside
    assert memo.waited == 1 and memo.hits == 1 and memo.misses == 0
    [answer] = answers
    assert answer.ok and answer is memo.run_batch([job])[0]  # the background's answer, kept


def test_a_background_fault_leaves_the_block_path_to_run_it_itself() -> None:
    block_pool = Counting()
    memo = CheckMemo(block_pool)
    background = Held(fault=True)
    job = _job()
    answers, errors = _race(memo, background, job)
    assert len(errors) == 1 and memo.waited == 0
    assert block_pool.checks == 1 and memo.misses == 1  # no answer to take: computed on the block path
    [answer] = answers
    assert answer.ok
