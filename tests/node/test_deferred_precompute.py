"""The background check of deferred registrations (node/precompute.py): after the queueing block commits, a
node runs the check on a worker process of its own, so at the activation height its validation and its
plain apply find the verdict in the check memo and hand the sandbox nothing; a node that did not precompute
(the builder here) computes the same verdict itself. A local fault in the background keeps nothing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio

from core.hashing import sha256
from core.header import TxStatus
from node.precompute import DeferredPrecompute
from tests.node.helpers import one_precompute_pass
from tests.vm.deferred_models import VM, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from vm.deferred import REGISTERED, get_deferred
from vm.sandbox.executor import CheckJob, Job, JobResult, LocalExecutor
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.txs import compute_model_id

pytestmark = pytest.mark.node


class CountingExecutor(LocalExecutor):
    """The real in-process sandbox, counting the registration checks the block path hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.checks += sum(isinstance(job, CheckJob) for job in jobs)
        return super().run_batch(jobs)


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[Devnet, list[CountingExecutor]]]:
    executors = [CountingExecutor() for _ in range(3)]
    net = Devnet.start(tmp_path, devnet_genesis(vm=VM), executors=[lambda e=e: e for e in executors])  # type: ignore[misc]
    for executor in executors:
        executor.checks = 0  # the genesis models' checks at start
    yield net, executors
    net.close()


def test_the_activation_finds_the_background_verdict_in_the_memo(
        counted: tuple[Devnet, list[CountingExecutor]]) -> None:
    net, executors = counted
    model_bytes = weights_model(21)
    meta = weights_meta("bg", model_bytes)
    model_id = compute_model_id(sha256(model_bytes), meta)
    txs = upload(net, net.account(5), model_bytes, meta)
    for tx in txs[:-1]:
        net.step([tx], validators=[1])
    queued = net.step(txs[-1:], validators=[1])
    assert queued.results[0].status is TxStatus.OK, queued.results[0].log
    activates_at = int.from_bytes(queued.results[0].data, "big")

    alarms: list[str] = []
    for app in net.apps[1:]:  # the validator and the apply-only node; the builder does not precompute
        service = DeferredPrecompute(app, alarm=alarms.append, make_executor=lambda: WorkerPool(1))
        trio.run(one_precompute_pass, service)
        assert service.ran == 1 and app.check_memo.precomputed == 1 and not alarms
        service.wake()
        assert app.precompute_deferred(LocalExecutor()) == 0  # already known: not run again

    while net.height < activates_at:
        net.step(validators=[1])  # node 0 builds, node 1 validates, node 2 applies the blocks from scratch
    builder, validator, syncing = executors
    assert builder.checks == 1  # no background run on the builder: the activation computed it
    assert all(app.check_memo.hashed == 0 for app in net.apps)  # keyed by the known hash, never re-hashed
    assert validator.checks == 0 and syncing.checks == 0  # the others handed the sandbox no check
    # The validator found its background verdict; the apply-only node took the verdict from the block
    # (vm/deferred.py: the activation block carries it) and asked nothing.
    assert net.apps[1].check_memo.hits >= 1 and net.apps[2].check_memo.hits == 0
    records = [app.view().model(model_id) for app in net.apps]
    assert records[0] is not None and records[0] == records[1] == records[2]
    done = get_deferred(net.apps[2].view(), model_id)
    assert done is not None and done.status == REGISTERED


def test_a_local_fault_in_the_background_keeps_nothing(counted: tuple[Devnet, list[CountingExecutor]]) -> None:
    """A background worker that cannot run the check (a memory cap too small for it to start): alarmed, never a
    verdict; the activation computes the check itself."""
    net, executors = counted
    model_bytes = weights_model(22)
    meta = weights_meta("bgfault", model_bytes)
    txs = upload(net, net.account(6), model_bytes, meta)
    for tx in txs:
        net.step([tx], validators=[1])
    activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
    alarms: list[str] = []
    tiny = DeferredPrecompute(net.apps[1], alarm=alarms.append,
                              make_executor=lambda: WorkerPool(1, WorkerLimits(memory_bytes=200 << 20)))
    trio.run(one_precompute_pass, tiny)
    assert "background check" in alarms[0] and tiny.ran == 0 and len(net.apps[1].check_memo) == 0
    while net.height < activates_at:
        net.step(validators=[1])
    assert executors[1].checks == 1  # computed at the activation instead
    assert net.apps[1].view().model(compute_model_id(sha256(model_bytes), meta)) is not None
