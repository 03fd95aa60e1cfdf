"""The check memo keeps every deferred registration's answer computed ahead until its activation
(vm/checkmemo.py, docs/sandbox.md "Deferred activation"): however many synchronous checks pass through the LRU
in between, the activation block is validated without handing the sandbox its check; the precomputed area
holds only the window the node checks ahead, and the LRU stays within its entries and bytes. A check that
faults only counts towards this node's decision that it cannot run it when it faulted alone. Real VM,
LevelDB, in-process ONNX Runtime and real worker processes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import LocalFault
from core.tensor import DType
from tests.vm.deferred_models import VM
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import memory_hog_model, meta_for, spec
from tests.vm.test_vm_check_memo import CountingExecutor, _check_job, _wide
from tests.vm.test_vm_deferred_verdict import TightPool, queue
from vm.checkmemo import FAULTS_DECIDED, CheckMemo, compute_result_bytes
from vm.sandbox.executor import LocalExecutor
from vm.txs import ModelClass

pytestmark = pytest.mark.vm

FLOOD = 12  # synchronous checks between the precompute and the activation: more than the LRU's 8 entries


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[Devnet, CountingExecutor]]:
    """Node 0 builds; node 1 validates on a sandbox that counts the checks it is handed."""
    validator = CountingExecutor()
    net = Devnet.start(tmp_path, devnet_genesis(vm=VM), executors=[LocalExecutor, lambda: validator])
    yield net, validator
    net.close()


def flood(memo: CheckMemo) -> None:
    """`FLOOD` distinct real registration checks through the memo's block path (the same small model with
    different gas left for its golden runs: each its own key)."""
    model_bytes, meta = _wide()
    job = _check_job(model_bytes, meta)
    for i in range(FLOOD):
        memo.run_batch([dataclasses.replace(job, gas_left=job.gas_left + i)])


def test_a_precomputed_answer_survives_a_flood_of_checks_until_its_activation(
        counted: tuple[Devnet, CountingExecutor]) -> None:
    """(Before: the memo was one LRU of 8, so the flood evicted the answer and the validator computed the check
    at the activation height, on the block path.)"""
    net, validator = counted
    model_id = queue(net, 81, "kept")
    app = net.apps[1]
    assert app.precompute_deferred(LocalExecutor(), 2) == 1  # the node's background pass
    flood(app.check_memo)
    assert len(app.check_memo) <= 8 + 1  # the LRU's entries, plus the one answer kept ahead
    validator.reset()
    block = net.propose()
    [verdict] = net.validate(block, [1])
    assert verdict.is_valid, verdict
    assert validator.checks == 0  # the activation's check was answered from the memo
    net.commit(block)
    assert net.apps[1].view().model(model_id) is not None
    # After the commit the entry is no longer pending: the next pass lets its answer go.
    assert app.precompute_deferred(LocalExecutor(), 2) == 0
    assert len(app.check_memo) <= 8


def test_the_lru_stays_within_its_bytes() -> None:
    """Golden outputs count against `max_bytes`: with room for two answers, a third evicts the oldest."""
    model_bytes, meta = _wide()
    job = _check_job(model_bytes, meta)
    executor = CountingExecutor()
    size = compute_result_bytes(executor.run_batch([job])[0])
    assert size > 0
    memo = CheckMemo(executor, capacity=8, max_bytes=2 * size)
    jobs = [dataclasses.replace(job, gas_left=job.gas_left + i) for i in range(3)]
    for j in jobs:
        memo.run_batch([j])
    assert len(memo) == 2 and memo.kept_bytes == 2 * size
    executor.reset()
    memo.run_batch([jobs[2]])
    assert executor.checks == 0  # the newest is kept
    memo.run_batch([jobs[0]])
    assert executor.checks == 1  # the oldest was evicted
    memo.close()


def test_only_a_check_that_faults_alone_counts_towards_a_decided_fault() -> None:
    """The attack: a block's batch holds a registration that any node can check beside a job that exhausts the
    worker (a hostile proposer's). Were that fault counted against the checkable registration, two such blocks
    would make this node stop running its check, and accept a proposer's postponement of it. Counted only
    when a check faults alone, the fault is the hog's, and only after `FAULTS_DECIDED` of its own runs."""
    hog_bytes = memory_hog_model()
    hog_meta = meta_for("hog", hog_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                        ModelClass.EXACT, [[np.array([[3]], np.int32)]])
    hog = _check_job(hog_bytes, hog_meta)
    checkable = _check_job(*_wide())
    pool = TightPool()
    memo = CheckMemo(pool)
    try:
        for _ in range(FAULTS_DECIDED):
            with pytest.raises(LocalFault):
                memo.run_batch([checkable, hog])
        assert memo.faults(checkable) == 0 and memo.faults(hog) == 0
        [answer] = memo.run_batch([checkable])  # alone, the same node's sandbox decides it
        assert answer.info is not None and answer.error is None
        for _ in range(FAULTS_DECIDED):
            with pytest.raises(LocalFault):
                memo.run_batch([hog])
        handed = pool.checks
        with pytest.raises(LocalFault, match="not run again"):
            memo.run_batch([hog])
        assert pool.checks == handed and memo.faults(hog) == FAULTS_DECIDED
    finally:
        memo.close()
