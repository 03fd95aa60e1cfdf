"""A registration check runs once per node: round r+1's block, with another header but the same completing
chunk, reuses the verdict of round r's (vm/checkmemo.py); a block already executed on the same state is not
executed again (Tendermint's re-proposal of a locked block); a parameter change or a local fault is never
answered from the memo."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.app import BlockTemplate
from core.block import Block
from core.errors import LocalFault
from core.header import TxStatus
from core.tensor import DType
from core.types import Gas, Timestamp
from tests.vm.devnet import Devnet
from tests.vm.helpers import memory_hog_model, meta_for, spec, upload_txs, wide_model
from tools.genesis import make_genesis
from vm.checkmemo import CheckMemo
from vm.engine import feeds, model_spec, sandbox_limits
from vm.genesis import parse_genesis
from vm.sandbox.executor import CheckJob, Job, JobResult, LocalExecutor
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.state import RegistrationData
from vm.txs import ModelClass, ModelMeta

pytestmark = pytest.mark.vm


class CountingExecutor(LocalExecutor):
    """The real in-process sandbox, counting the registration checks it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def reset(self) -> None:
        """Forget the genesis models' checks (the application's start runs them)."""
        self.checks = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.checks += sum(isinstance(job, CheckJob) for job in jobs)
        return super().run_batch(jobs)


def _wide(width: int = 512) -> tuple[bytes, ModelMeta]:
    model_bytes = wide_model(width)
    return model_bytes, meta_for("wide", model_bytes, [spec("x", DType.INT32, (1, 1))],
                                 [spec("y", DType.INT32, (1, width))], ModelClass.EXACT,
                                 [[np.array([[1]], np.int32)], [np.array([[7]], np.int32)]])


def _later_round(net: Devnet, txs: Sequence[object], node: int = 0, rounds: int = 1) -> Block:
    """A later round's block at the same height: same transactions, another time, so another header."""
    t = net.template()
    later = BlockTemplate(t.chain_id, t.height, t.round, Timestamp(int(t.time) + 3000 * rounds), t.proposer,
                          t.last_block_id, t.last_commit, t.evidence)
    return net.apps[node].build_block(later, txs)  # type: ignore[arg-type]


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[Devnet, list[CountingExecutor]]]:
    executors = [CountingExecutor(), CountingExecutor()]
    net = Devnet.start(tmp_path, executors=[lambda e=e: e for e in executors])  # type: ignore[misc]
    for executor in executors:
        executor.reset()
    yield net, executors
    net.close()


def test_the_next_rounds_block_reuses_the_registration_check(counted: tuple[Devnet, list[CountingExecutor]]) -> None:
    net, (proposer, validator) = counted
    model_bytes, meta = _wide()
    txs = upload_txs(net.account(5), model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0, chunk_bytes=max(1, len(model_bytes) // 3))
    assert len(txs) >= 2
    net.step(txs[:-1])  # every chunk but the completing one
    assert proposer.checks == validator.checks == 0

    round0 = net.propose(txs[-1:])
    assert proposer.checks == 1
    assert [v.is_valid for v in net.validate(round0)] == [True]
    assert validator.checks == 1

    round1 = _later_round(net, txs[-1:])
    assert round1.id != round0.id
    assert proposer.checks == 1  # the proposer's build reused its own check
    assert [v.is_valid for v in net.validate(round1)] == [True]
    assert validator.checks == 1  # the validator's too: same verdict, gas and results (the header's root)
    assert round1.results == round0.results  # (the state roots differ: the chain record holds the block time)
    round2 = _later_round(net, txs[-1:], node=1, rounds=2)  # the validator proposes next: its build reuses it
    assert validator.checks == 1 and round2.results == round0.results
    result = round1.results[0]
    assert result.status is TxStatus.OK and result.gas_used > 0

    net.commit(round1)
    model_id = RegistrationData.decode(result.data).model_id
    records = [app.view().model(model_id) for app in net.apps]
    assert records[0] is not None and records[0] == records[1]
    assert proposer.checks == validator.checks == 1
    assert net.apps[1].check_memo.hits == 2 and net.apps[1].check_memo.misses == 1


def test_a_reproposed_block_is_not_executed_again(counted: tuple[Devnet, list[CountingExecutor]]) -> None:
    net, (_, validator) = counted
    model_bytes, meta = _wide()
    txs = upload_txs(net.account(5), model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0)
    block = net.propose(txs)
    app = net.apps[1]
    assert app.validate_block(block).is_valid and app.reused_executions == 0
    assert app.validate_block(block).is_valid
    assert app.reused_executions == 1 and validator.checks == 1
    assert app.check_memo.hits == 0  # answered by the execution cache: nothing was run, not even the memo asked

    # Another body under the known header is validated in full, and refused.
    bad = dataclasses.replace(block.results[-1], gas_used=Gas(int(block.results[-1].gas_used) + 1))
    forged = dataclasses.replace(block, results=(*block.results[:-1], bad))
    verdict = app.validate_block(forged)
    assert not verdict.is_valid and verdict.kind.value == "invalid"
    assert app.reused_executions == 1

    net.commit(block)  # the cached execution is staged once, and then forgotten
    assert app.view().model(RegistrationData.decode(block.results[-1].data).model_id) is not None


def _check_job(model_bytes: bytes, meta: ModelMeta, limits_changes: dict[str, int] | None = None) -> CheckJob:
    limits = sandbox_limits(parse_genesis(make_genesis(1)).params)
    if limits_changes:
        limits = dataclasses.replace(limits, gas=dataclasses.replace(limits.gas, **limits_changes))
    return CheckJob(model_bytes, model_spec(meta, limits), tuple(feeds(meta, v.inputs) for v in meta.golden),
                    10**12)


def test_a_parameter_change_misses_the_memo() -> None:
    model_bytes, meta = _wide()
    executor = CountingExecutor()
    memo = CheckMemo(executor)
    job = _check_job(model_bytes, meta)
    [first] = memo.run_batch([job])
    [again] = memo.run_batch([dataclasses.replace(job)])
    assert again is first and executor.checks == 1
    assert first.info is not None and first.golden is not None

    price = dataclasses.fields(job.spec.limits.gas)[0].name
    dearer = _check_job(model_bytes, meta, {price: getattr(job.spec.limits.gas, price) * 2 + 1})
    [changed] = memo.run_batch([dearer])
    assert executor.checks == 2 and changed is not first
    [short] = memo.run_batch([dataclasses.replace(job, gas_left=0)])  # the gas left decides the golden runs
    assert executor.checks == 3 and short.golden is None
    other, other_meta = _wide(256)
    memo.run_batch([_check_job(other, other_meta)])
    assert executor.checks == 4 and memo.hits == 1 and memo.misses == 4


def test_a_local_fault_is_not_memoized() -> None:
    model_bytes = memory_hog_model()
    x = np.array([[3]], np.int32)
    meta = meta_for("hog", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[x]])
    job = _check_job(model_bytes, meta)
    memo = CheckMemo(WorkerPool(1, WorkerLimits(memory_bytes=300 << 20)))
    try:
        with pytest.raises(LocalFault):  # the worker runs out of memory on the golden input: no verdict
            memo.run_batch([job])
        assert len(memo) == 0
    finally:
        memo.close()
    memo.executor = WorkerPool(1)  # the same node, its sandbox healthy again: the check runs for real
    try:
        [result] = memo.run_batch([job])
        [again] = memo.run_batch([job])  # a verdict from a worker process is kept like any other
    finally:
        memo.close()
    assert result.info is not None and result.golden is not None and result.golden[0] is not None
    assert again is result and not result.golden[0]["y"].flags.writeable
    assert memo.misses == 2 and memo.hits == 1 and len(memo) == 1
