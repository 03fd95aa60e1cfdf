"""A decided check fault lasts one height (vm/checkmemo.py): a check that faulted `FAULTS_DECIDED` times alone is
not run again at the committed height it was decided at, and is run once again at a later one, where an answer
forgets the faults. Real VM, LevelDB and worker processes; the faults are a real worker killed from outside.

The over-count it closes: a fault that will not recur (a worker killed from outside twice, here by SIGKILL)
counted as decided for every later activation of the entry, up to `vm.max_postponements`: the validator could
judge none of them, and as a proposer would postpone a checkable model, until "could not be checked"
rejected it."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from core.errors import LocalFault
from core.header import TxStatus
from tests.vm.deferred_models import VM, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_deferred_verdict import upload_pending
from vm.checkmemo import FAULTS_DECIDED
from vm.deferred import REGISTERED, get_deferred
from vm.sandbox.executor import CheckJob, Job, JobResult, LocalExecutor
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm


class KilledPool(WorkerPool):
    """A real one-worker pool whose worker is killed (SIGKILL, from outside) right before it is handed each of
    the first `kills` batches holding a registration check; counts the checks it is handed."""

    def __init__(self, kills: int) -> None:
        super().__init__(1)
        self.kills = kills
        self.checks = 0
        self._checking = False

    def run_batch(self, jobs: Sequence[Job], timeout_s: float | None = None) -> list[JobResult]:
        self._checking = any(isinstance(job, CheckJob) for job in jobs)
        self.checks += sum(isinstance(job, CheckJob) for job in jobs)
        return super().run_batch(jobs, timeout_s)

    def _wire(self, worker: Any, slot_jobs: Any) -> Any:
        if self._checking and self.kills > 0:
            self.kills -= 1
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(10)
        return super()._wire(worker, slot_jobs)


class CountingPool(KilledPool):
    """The block path's real pool (no kills), counting the checks it is handed."""

    def __init__(self) -> None:
        super().__init__(kills=0)


def test_a_worker_killed_twice_decides_the_fault_for_that_height_only(tmp_path: Path) -> None:
    """Node 1's background check of a pending entry faults twice (its worker killed from outside each time):
    decided, the background pass does not run it again (not at that height, nor later: a worker per block).
    At the activation, a later height, node 1's block path runs the check once again, judges the proposer's
    verdict valid from its own answer, and the faults are forgotten. Red without the height rule: the decision
    still holds at the activation, nothing runs, and node 1 cannot judge it (a local fault: it would prevote
    nil on this and every later activation of the entry)."""
    model_bytes = weights_model(97)
    meta = weights_meta("killed", model_bytes)
    background = KilledPool(kills=FAULTS_DECIDED)
    pool = CountingPool()
    net = Devnet.start(tmp_path, devnet_genesis(vm=VM), nodes=2, executors=[LocalExecutor, lambda: pool])
    try:
        model_id, record = upload_pending(net, model_bytes, meta)
        assert int(record.activates_at) >= net.height + 3
        validator = net.apps[1]
        for _ in range(FAULTS_DECIDED):
            with pytest.raises(LocalFault, match="worker"):
                validator.precompute_deferred(background, 2)
        assert validator.precompute_deferred(background, 2) == 0  # decided: not run again
        net.step(validators=[1])
        assert validator.precompute_deferred(background, 2) == 0  # nor by the background at a later height
        assert background.checks == FAULTS_DECIDED and background.kills == 0
        while net.height < int(record.activates_at) - 1:
            net.step(validators=[1])
        pool.checks = 0
        block = net.propose()
        assert block.results[-1].status is TxStatus.OK, block.results[-1].log
        [verdict] = net.validate(block, [1])
        assert verdict.is_valid, verdict  # its own check ran again, at the activation's height, and answered
        assert pool.checks == 1 and validator.check_memo.faults_answered == 0
        net.commit(block)
        done = get_deferred(validator.view(), model_id)
        assert done is not None and done.status == REGISTERED
    finally:
        background.close()
        net.close()
