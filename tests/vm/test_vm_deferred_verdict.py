"""The proposer's verdict on a deferred activation travels in its block (vm/activation.py), as an inference's
outputs do: a validator refuses a verdict its own check clearly contradicts, defers to the proposer where its
own golden outputs sit near the tolerance, and a node applying the committed block takes the verdict from it.
Attacks: a proposer lying either way, a block without the verdict or with one where none is due, and golden
outputs tuned to the tolerance's edge."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.app import VerdictKind
from core.block import Block, compute_results_root
from core.errors import LocalFault
from core.hashing import sha256
from core.header import TxResult, TxStatus
from core.tensor import DType
from core.types import Gas, Hash32
from tests.vm.deferred_models import VM, lying_meta, near_meta, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import memory_hog_model, meta_for, spec
from vm.activation import LOG_POSTPONED, LOG_UNCHECKED, DeferredCheck
from vm.checkmemo import FAULTS_DECIDED
from vm.deferred import PENDING, REGISTERED, REJECTED, DeferredModel, get_deferred
from vm.sandbox.executor import CheckJob, Job, JobResult, LocalExecutor
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.state import RegistrationData
from vm.txs import ModelClass, ModelMeta, compute_model_id

pytestmark = pytest.mark.vm

# The memory hog's check (~1.2M gas) is deferred; its work fits one block of background budget.
HOG_VM = {"defer_check_gas_over": 1_000_000}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    """Node 0 builds, node 1 validates, node 2 only applies committed blocks (block sync's path)."""
    devnet = Devnet.start(tmp_path, devnet_genesis(vm=VM), nodes=3)
    yield devnet
    devnet.close()


def queue(net: Devnet, seed: int, name: str, edit: Callable[[ModelMeta], ModelMeta] = lambda m: m) -> Hash32:
    """Upload a deferred model and step to the block before its activation; its id."""
    model_bytes = weights_model(seed)
    meta = edit(weights_meta(name, model_bytes))
    for tx in upload(net, net.account(5), model_bytes, meta):
        net.step([tx], validators=[1])
    activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
    while net.height < activates_at - 1:
        net.step(validators=[1])
    return compute_model_id(sha256(model_bytes), meta)


def proposer_lies(net: Devnet, monkeypatch: pytest.MonkeyPatch, forge: Callable[[DeferredCheck], DeferredCheck]) -> None:
    """Node 0 runs the real check, then writes `forge` of its result into its block (a modified node)."""
    engine = net.apps[0].engine
    real = engine.check_deferred
    monkeypatch.setattr(engine, "check_deferred", lambda *args: forge(real(*args)))


def with_results(block: Block, results: tuple[TxResult, ...]) -> Block:
    header = block.header.replace(results_root=compute_results_root(results))
    return block.replace(header=header, results=results)


def verdicts(net: Devnet, model_id: Hash32) -> list[object]:
    return [get_deferred(app.view(), model_id) for app in net.apps]


def test_the_activation_block_carries_the_verdict_and_an_applying_node_takes_it(net: Devnet) -> None:
    model_id = queue(net, 61, "carried")
    block = net.step(validators=[1])
    assert len(block.results) == len(block.txs) + 1
    system = block.results[-1]
    assert system.status is TxStatus.OK and system.gas_used == 0
    data = RegistrationData.decode(system.data)
    assert data.model_id == model_id
    records = [app.view().model(model_id) for app in net.apps]
    assert records[0] is not None and records[0] == records[1] == records[2]  # node 2 applied the block's verdict
    assert int(records[0].gas_per_call) == int(data.gas_per_call)
    net.assert_supply_conserved()


def test_a_block_without_the_due_verdict_or_with_one_not_due_is_refused(net: Devnet) -> None:
    queue(net, 62, "omitted")
    block = net.propose()
    [missing] = net.validate(with_results(block, block.results[:-1]), [1])
    assert not missing.is_valid and "carries no verdict" in missing.reason
    net.step(validators=[1])
    spare = net.propose()
    [extra] = net.validate(with_results(spare, (*spare.results, block.results[-1])), [1])
    assert not extra.is_valid and "none is due" in extra.reason


def test_a_proposer_registering_a_model_whose_check_clearly_fails_has_its_block_refused(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    model_id = queue(net, 63, "liar", lying_meta)
    proposer_lies(net, monkeypatch, lambda c: DeferredCheck(True, 1000, 1000, "", True))
    lie = net.propose()
    assert lie.results[-1].status is TxStatus.OK
    [verdict] = net.validate(lie, [1])
    assert not verdict.is_valid and "clearly fails" in verdict.reason
    monkeypatch.undo()
    net.step(validators=[1])  # an honest proposer's block of the same height
    records = verdicts(net, model_id)
    assert records[0] is not None and records[0] == records[1] == records[2]
    assert records[0].status == REJECTED  # type: ignore[attr-defined]
    assert all(app.view().model(model_id) is None for app in net.apps)


def test_a_proposer_rejecting_a_model_whose_check_clearly_passes_has_its_block_refused(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    model_id = queue(net, 64, "victim")
    proposer_lies(net, monkeypatch, lambda c: DeferredCheck(False, 0, 0, "golden vectors do not reproduce"))
    lie = net.propose()
    assert lie.results[-1].status is TxStatus.MODEL_REJECTED
    [verdict] = net.validate(lie, [1])
    assert not verdict.is_valid and "clearly passes" in verdict.reason
    # A registration at another price than the model's is refused too.
    monkeypatch.undo()
    proposer_lies(net, monkeypatch, lambda c: dataclasses.replace(c, gas_per_call=c.gas_per_call + 1))
    [priced] = net.validate(net.propose(), [1])
    assert not priced.is_valid and "price differs" in priced.reason
    monkeypatch.undo()
    net.step(validators=[1])
    records = verdicts(net, model_id)
    assert records[0] == records[1] == records[2] and records[0].status == REGISTERED  # type: ignore[attr-defined]


def test_near_band_outputs_on_a_validator_defer_to_the_proposers_verdict(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The split attack: golden outputs 1.5 x the tolerance off, where honest CPUs may fall on both sides of
    it. A proposer whose own outputs were within the tolerance registers the model; this validator's are near
    it, so it cannot be sure and accepts; every node, the applying one included, then holds the same state.
    (Before, each node wrote its own check's verdict: a validator on the other side wrote another state.)"""
    model_id = queue(net, 65, "edge", near_meta)
    proposer_lies(net, monkeypatch, lambda c: dataclasses.replace(c, accepted=True, log="", certain=True))
    block = net.propose()
    assert block.results[-1].status is TxStatus.OK
    [verdict] = net.validate(block, [1])
    assert verdict.is_valid, verdict
    net.commit(block)
    records = [app.view().model(model_id) for app in net.apps]
    assert records[0] is not None and records[0] == records[1] == records[2]
    assert all(r.status == REGISTERED for r in verdicts(net, model_id))  # type: ignore[attr-defined]


def test_a_malformed_verdict_is_refused(net: Devnet) -> None:
    queue(net, 67, "malformed")
    block = net.propose()
    system = block.results[-1]
    for bad in (system.replace(gas_used=Gas(5)), system.replace(status=TxStatus.FAILED),
                system.replace(data=RegistrationData(Hash32(bytes(32)), Gas(1), Gas(1)).encode())):
        [verdict] = net.validate(with_results(block, (*block.results[:-1], bad)), [1])
        assert not verdict.is_valid, bad


def hog() -> tuple[bytes, ModelMeta]:
    """A model whose golden run needs ~192 MiB of activations (`memory_hog_model`), deferred under `HOG_VM`."""
    model_bytes = memory_hog_model()
    return model_bytes, meta_for("hog", model_bytes, [spec("x", DType.INT32, (1, 1))],
                                 [spec("y", DType.INT32, (1, 1))], ModelClass.EXACT, [[np.array([[3]], np.int32)]])


class TightPool(WorkerPool):
    """A node whose sandbox workers are capped at 300 MiB of address space: the hog's run exhausts them. A real
    pool, counting the registration checks it is handed."""

    def __init__(self) -> None:
        super().__init__(1, WorkerLimits(memory_bytes=300 << 20))
        self.checks = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.checks += sum(isinstance(job, CheckJob) for job in jobs)
        return super().run_batch(jobs)


def tight() -> TightPool:
    pool = TightPool()
    pool.start()
    return pool


def upload_pending(net: Devnet, model_bytes: bytes, meta: ModelMeta) -> tuple[Hash32, DeferredModel]:
    """Upload a model whose check is deferred, one chunk a block (node 1 validating each); its id and pending
    queue entry."""
    model_id = compute_model_id(sha256(model_bytes), meta)
    for tx in upload(net, net.account(5), model_bytes, meta):
        net.step([tx], validators=[1])
    record = get_deferred(net.apps[0].view(), model_id)
    assert record is not None and record.status == PENDING
    return model_id, record


def test_a_validator_that_cannot_run_the_check_has_a_local_fault_and_an_applying_node_needs_none(
        tmp_path: Path) -> None:
    """Also once node 1 has decided it cannot run the check (it faulted twice alone, in its background pass:
    vm/checkmemo.py), the decided fault is still a local fault, never a verdict: node 1 cannot judge the
    proposer's decided verdict and prevotes nil, without handing its sandbox the check again."""
    model_bytes, meta = hog()
    pool = tight()
    net = Devnet.start(tmp_path, devnet_genesis(vm=HOG_VM), executors=[LocalExecutor, lambda: pool, tight])
    try:
        model_id, record = upload_pending(net, model_bytes, meta)
        while net.height < int(record.activates_at) - 1:
            net.step(validators=[1])
        background = tight()
        try:
            for _ in range(FAULTS_DECIDED):
                with pytest.raises(LocalFault):
                    net.apps[1].precompute_deferred(background, 2)
            assert net.apps[1].precompute_deferred(background, 2) == 0  # decided: not run again
            assert background.checks == FAULTS_DECIDED
        finally:
            background.close()
        pool.checks = 0
        block = net.propose()  # node 0's sandbox runs the hog: it registers
        assert block.results[-1].status is TxStatus.OK
        [verdict] = net.validate(block, [1])
        assert verdict.kind is VerdictKind.LOCAL_FAULT  # prevote nil, never a verdict on the proposer
        assert pool.checks == 0 and net.apps[1].check_memo.faults_answered == 1
        net.commit(block)  # the others committed it: node 1 and node 2 apply the block's verdict, running nothing
        records = [app.view().model(model_id) for app in net.apps]
        assert records[0] is not None and records[0] == records[1] == records[2]
    finally:
        net.close()


def test_a_check_that_faults_on_every_node_is_postponed_then_rejected_and_the_chain_goes_on(tmp_path: Path) -> None:
    """A model whose golden run needs more memory than any node's sandbox allows (workers capped at 300 MiB):
    each activation's proposer has a local fault. It postpones the entry to the queue's tail, validators
    accept that unchecked, and after `vm.max_postponements` the activation rejects it: blocks keep committing.
    (Before, the activation raised LocalFault on every node: that height could not be built, forever.)

    Neither the builder nor the validator hands its sandbox the check more than once per activation height:
    a decided fault (`FAULTS_DECIDED` faults of the same check, each alone) holds at the height it was decided
    at, so a later activation runs it once again (vm/checkmemo.py: a fault that does not recur must not
    decide the entry's later activations); a block built again in the same height runs nothing."""
    model_bytes, meta = hog()
    pools = [tight(), tight()]
    net = Devnet.start(tmp_path, devnet_genesis(vm=HOG_VM),
                       executors=[lambda: pools[0], lambda: pools[1], LocalExecutor])
    try:
        model_id, record = upload_pending(net, model_bytes, meta)
        for pool in pools:
            pool.checks = 0
        bound = net.genesis.params.vm.max_postponements
        for attempt in range(bound + 1):
            activates_at = int(record.activates_at)
            while net.height < activates_at:
                if attempt == bound and net.height == activates_at - 1:
                    net.propose()  # the last activation built twice in its height (a later round's block)
                block = net.step(validators=[1])
            system = block.results[-1]
            record = get_deferred(net.apps[0].view(), model_id)
            assert record is not None
            if attempt < bound:
                assert system.status is TxStatus.POSTPONED and system.log == LOG_POSTPONED
                assert record.status == PENDING and int(record.postponed) == attempt + 1
                assert int(record.activates_at) > net.height  # back at the queue's tail
            else:
                assert system.status is TxStatus.MODEL_REJECTED and system.log == LOG_UNCHECKED
        records = verdicts(net, model_id)
        assert records[0] == records[1] == records[2] and records[0].status == REJECTED  # type: ignore[attr-defined]
        assert all(app.view().model(model_id) is None for app in net.apps)
        assert bound + 1 > FAULTS_DECIDED
        assert [pool.checks for pool in pools] == [bound + 1, bound + 1]  # once per activation height
        assert net.apps[0].check_memo.faults_answered == 1  # the second build of the last one: decided, not run
        net.step(validators=[1])  # the chain goes on
        net.assert_supply_conserved()
    finally:
        net.close()
