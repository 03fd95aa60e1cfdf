"""Resident models (vm/resident.py): a deferred registration's cold load is paid once, in tokens, and every
block's first call on it pays no per-KiB load; the chain bounds the bytes resident models hold
(`vm.max_resident_bytes`), so a registrant cannot make every validator pin more than that; the sessions of
resident models are pinned in the worker pool and survive its session cache's pressure and a worker's restart.
Real VM, real LevelDB, real ONNX Runtime (in-process and in a real worker pool)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.tx import Transaction
from tests.vm.deferred_models import VM, lying_meta, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from vm.deferred import PENDING, REGISTERED, REJECTED, get_deferred
from vm.engine import feeds, model_spec, resident_preload_job, sandbox_limits
from vm.execute import deferred_check_price, infer_gas, registration_check_gas_and_nodes
from vm.resident import get_resident_set, resident_load_gas_static
from vm.retire import compute_resident_deposit, get_model_deposit
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.limits import MIB, WorkerLimits, resident_load_gas
from vm.sandbox.worker import WorkerPool
from vm.state import upload_key
from vm.txs import Infer, ModelChunk, compute_model_id

pytestmark = pytest.mark.vm

MODEL_BYTES = len(weights_model(1))
# Room for one 512 KiB weights model, not two.
RESIDENT_VM = {**VM, "max_tx_gas": 20_000_000, "max_resident_bytes": MODEL_BYTES * 3 // 2}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    """Node 0 builds, node 1 validates, node 2 only applies committed blocks."""
    devnet = Devnet.start(tmp_path, devnet_genesis(vm=RESIDENT_VM), nodes=3)
    yield devnet
    devnet.close()


def step(net: Devnet, txs: list[Transaction] | None = None) -> list[TxStatus]:
    block = net.step(txs or [], validators=[1])
    return [r.status for r in block.results[: len(block.txs)]]


def queue(net: Devnet, owner_index: int, model_bytes: bytes, name: str, *, lying: bool = False,
          ) -> tuple[list[Transaction], bytes]:
    """Upload every chunk but the completing one; returns the upload's transactions and the model id."""
    meta = weights_meta(name, model_bytes)
    meta = lying_meta(meta) if lying else meta
    txs = upload(net, net.account(owner_index), model_bytes, meta)
    for tx in txs[:-1]:
        assert step(net, [tx]) == [TxStatus.OK]
    return txs, bytes(compute_model_id(sha256(model_bytes), meta))


def run_to(net: Devnet, height: int) -> None:
    while net.height < height:
        step(net)


def test_a_resident_model_pays_its_load_once_and_its_calls_pay_no_per_kib_load(net: Devnet) -> None:
    params = net.genesis.params
    model_bytes = weights_model(1)
    txs, model_id = queue(net, 5, model_bytes, "resident")
    owner = net.account(5).address
    before = net.apps[0].view().account(owner).balance
    queued = net.step(txs[-1:], validators=[1])
    assert queued.results[0].status is TxStatus.OK, queued.results[0].log
    # The completing chunk paid the check and the whole cold load (per KiB included) in tokens.
    check, nodes = registration_check_gas_and_nodes(params, model_bytes)
    load_tokens = resident_load_gas_static(params, len(model_bytes), nodes)
    assert load_tokens > sandbox_limits(params).gas.load_per_kib * (len(model_bytes) // 1024)
    spent = before - net.apps[0].view().account(owner).balance
    deposit = compute_resident_deposit(params, len(model_bytes))  # locked, not spent (vm/retire.py)
    assert deposit > 0 and get_model_deposit(net.apps[0].view(), model_id).amount == deposit  # type: ignore[arg-type,union-attr]
    assert spent == txs[-1].fee + (check + load_tokens) * params.vm.min_gas_price + deposit
    assert deferred_check_price(params, model_bytes) == (check + load_tokens) * params.vm.min_gas_price
    held = get_resident_set(net.apps[0].view())
    assert int(held.total_bytes) == len(model_bytes) and [bytes(m) for m in held.models] == [model_id]

    run_to(net, int.from_bytes(queued.results[0].data, "big"))
    records = [app.view().model(model_id) for app in net.apps]  # type: ignore[arg-type]
    record = records[0]
    assert record is not None and records[0] == records[1] == records[2]
    status = get_deferred(net.apps[2].view(), model_id)  # type: ignore[arg-type]
    assert status is not None and status.status == REGISTERED
    gas = sandbox_limits(params).gas
    golden_runs = len(record.meta.golden)
    assert int(record.gas_load) == resident_load_gas(gas, nodes=nodes, golden_runs=golden_runs,
                                                     gas_per_call=int(record.gas_per_call))
    # What a synchronous registration of the same model stores: the per-KiB cold path on every block.
    full = gas.load_base + gas.load_per_node * nodes + gas.load_per_kib * -(-len(model_bytes) // 1024) \
        + golden_runs * int(record.gas_per_call)
    assert int(record.gas_load) == full - gas.load_per_kib * -(-len(model_bytes) // 1024)

    x = np.random.default_rng(3).standard_normal((1, 32_768)).astype(np.float32)
    inputs = (Tensor(DType.FLOAT32, (1, 32_768), x.tobytes()),)
    quote = infer_gas(params, record, inputs)
    caller = net.account(6)
    for _ in range(2):  # each block's first call pays the (per-KiB free) load again, and only that
        tx = net.tx(caller, Infer(model_id, inputs, 0), gas_limit=quote)  # type: ignore[arg-type]
        block = net.step([tx], validators=[1])
        [result] = block.results
        assert result.status is TxStatus.OK, result.log
        assert int(result.gas_used) == quote
        assert quote == (params.vm.gas_infer_base + params.vm.gas_infer_per_io_byte * len(inputs[0].data)
                         + int(record.gas_per_call) + int(record.gas_load))
    # The builder's and the validator's sandboxes hold its session pinned.
    for app in net.apps[:2]:
        assert isinstance(app.executor, LocalExecutor) and model_id in app.executor.resident
    # A node loads resident models ahead (node/precompute.py calls this): once, then it holds them.
    fresh = LocalExecutor()
    assert net.apps[2].preload_resident(fresh) == 1 and model_id in fresh.resident
    assert net.apps[2].preload_resident(fresh) == 0
    # A pool that cannot load it (a memory cap too small for a worker to start): alarmed once, then left to
    # the block path instead of retried on every pass.
    with WorkerPool(1, WorkerLimits(memory_bytes=200 << 20)) as tiny:
        assert net.apps[2].preload_resident(tiny) == 0 and net.apps[2].preload_resident(tiny) == 0
    assert len(net.alarms) == 1 and "ahead" in net.alarms[0], net.alarms
    net.assert_supply_conserved()


def test_a_registrant_cannot_pin_more_than_max_resident_bytes(net: Devnet) -> None:
    """The attack: registrations that together would have every validator's workers pin more than the
    bound. The second completing chunk is refused with the reason (its upload kept, nothing charged but the
    fee); once the first is rejected at its activation its bytes are free and the second queues."""
    params = net.genesis.params
    first_txs, first = queue(net, 5, weights_model(21), "first", lying=True)
    second_txs, second = queue(net, 6, weights_model(22), "second")
    queued = net.step(first_txs[-1:], validators=[1])
    assert queued.results[0].status is TxStatus.OK
    owner = net.account(6).address
    before = net.apps[0].view().account(owner).balance
    refused = net.step(second_txs[-1:], validators=[1])
    [result] = refused.results
    assert result.status is TxStatus.FAILED
    assert "over vm.max_resident_bytes" in result.log, result.log
    assert before - net.apps[0].view().account(owner).balance == second_txs[-1].fee  # no check, no load
    view = net.apps[0].view()
    assert view.get_raw(upload_key(second)) is not None  # type: ignore[arg-type]
    assert get_deferred(view, second) is None  # type: ignore[arg-type]
    assert int(get_resident_set(view).total_bytes) == MODEL_BYTES

    run_to(net, int.from_bytes(queued.results[0].data, "big"))
    verdict = get_deferred(net.apps[0].view(), first)  # type: ignore[arg-type]
    assert verdict is not None and verdict.status == REJECTED
    assert get_resident_set(net.apps[2].view()).total_bytes == 0  # the rejection gave its bytes back
    again = net.tx(net.account(6), ModelChunk.decode(second_txs[-1].payload), gas_limit=int(second_txs[-1].gas_limit))
    assert step(net, [again]) == [TxStatus.OK]
    pending = get_deferred(net.apps[1].view(), second)  # type: ignore[arg-type]
    assert pending is not None and pending.status == PENDING
    assert params.vm.max_resident_bytes < 2 * MODEL_BYTES


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _package(seed: int, *, resident: bool) -> tuple[InferJob, bytes]:
    model_bytes = weights_model(seed)
    meta = weights_meta(f"m{seed}", model_bytes)
    model_id = compute_model_id(sha256(model_bytes), meta)
    limits = sandbox_limits(devnet_genesis(vm=RESIDENT_VM).params)
    if resident:
        job = resident_preload_job(model_id, meta, model_bytes, limits)
        assert job is not None
        return job, bytes(model_id)
    pkg = ModelPackage(bytes(model_id), model_bytes, model_spec(meta, limits), None)
    return InferJob(pkg, feeds(meta, meta.golden[0].inputs)), bytes(model_id)


def test_resident_sessions_survive_the_cache_lru_and_reload_after_a_worker_restart() -> None:
    """A real worker pool whose session cache holds one 512 KiB model: ordinary models evict each other,
    the resident one stays; a restarted worker holds nothing, and the preload job pins it again."""
    resident, resident_id = _package(61, resident=True)
    others = [_package(seed, resident=False) for seed in (62, 63, 64)]
    limits = WorkerLimits(session_cache_bytes=2 * MIB, resident_model_bytes=MIB)
    with WorkerPool(size=1, limits=limits) as pool:
        assert pool.run_batch([resident])[0].ok
        for job, model_id in others:
            assert pool.run_batch([job])[0].ok
            assert pool.holds(model_id) and pool.holds(resident_id)
        assert not pool.holds(others[0][1])  # the LRU evicted the ordinary ones
        [info] = pool.describe()
        assert info["resident"] == 1
        os.kill(int(info["pid"]), signal.SIGKILL)
        assert wait_until(lambda: not pool.holds(resident_id))  # a dead worker holds nothing
        assert pool.run_batch([resident])[0].ok  # a fresh worker, the model sent and pinned again
        assert pool.restarts == 1
        assert pool.holds(resident_id) and pool.describe()[0]["resident"] == 1
