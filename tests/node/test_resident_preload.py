"""Resident models loaded ahead (node/precompute.py, vm/resident.py): the node's background pass loads a
resident model into the block path's own worker pool, pinned, but not while its activation is near (within
`PRELOAD_HOLD` heights: the load would hold the block path's worker and the CPU the activation height
needs); the pass after the activation loads it; a worker that restarts holds nothing, and the next pass
loads it again; on the first call the validator's pool already holds it, and the verdict and outputs are
those of a node that loads on the block path. Real VM, LevelDB and worker processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trio

from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from node.metrics import NodeMetrics, TimedExecutor
from node.precompute import PRELOAD_HOLD, DeferredPrecompute
from tests.node.helpers import one_precompute_pass
from tests.vm.deferred_models import VM, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_resident import wait_until
from vm.sandbox.executor import LocalExecutor
from vm.sandbox.worker import WorkerPool
from vm.txs import Infer, compute_model_id

pytestmark = pytest.mark.node


@pytest.fixture
def net_pool(tmp_path: Path) -> Iterator[tuple[Devnet, WorkerPool]]:
    """Node 0 builds (in-process sandbox), node 1 validates with a real one-worker pool behind the node's
    metrics wrapper (node/service.py's composition)."""
    pool = WorkerPool(1)
    devnet = Devnet.start(tmp_path, devnet_genesis(vm={**VM, "max_tx_gas": 20_000_000}),
                          executors=[LocalExecutor, lambda: TimedExecutor(pool, NodeMetrics())])
    yield devnet, pool
    devnet.close()


def test_a_resident_model_is_loaded_ahead_and_again_after_a_worker_restart(
        net_pool: tuple[Devnet, WorkerPool]) -> None:
    net, pool = net_pool
    model_bytes = weights_model(71)
    meta = weights_meta("ahead", model_bytes)
    model_id = bytes(compute_model_id(sha256(model_bytes), meta))
    for tx in upload(net, net.account(5), model_bytes, meta):
        net.step([tx], validators=[1])
    activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
    validator = net.apps[1]
    assert isinstance(validator.executor, TimedExecutor) and not pool.holds(model_id)

    service = DeferredPrecompute(validator, alarm=net.alarms.append)
    assert activates_at - net.height <= PRELOAD_HOLD
    trio.run(one_precompute_pass, service)
    assert service.ran == 1  # its check, ahead, on the pass's own worker
    assert service.held == 1 and service.preloaded == 0 and not pool.holds(model_id)  # its activation is near
    while net.height < activates_at:
        net.step(validators=[1])
    assert all(app.view().model(model_id) is not None for app in net.apps)  # type: ignore[arg-type]
    trio.run(one_precompute_pass, service)  # after the activation's commit
    assert service.preloaded == 1 and pool.holds(model_id)
    [info] = pool.describe()
    assert info["resident"] == 1
    trio.run(one_precompute_pass, service)
    assert service.preloaded == 1  # held: not loaded again

    os.kill(int(info["pid"]), signal.SIGKILL)  # the worker dies between blocks
    assert wait_until(lambda: not pool.holds(model_id))
    trio.run(one_precompute_pass, service)
    assert service.preloaded == 2 and pool.holds(model_id)

    x = np.random.default_rng(5).standard_normal((1, 32_768)).astype(np.float32)
    tx = net.tx(net.account(6), Infer(model_id, (Tensor(DType.FLOAT32, (1, 32_768), x.tobytes()),), 0),  # type: ignore[arg-type]
                gas_limit=20_000_000)
    block = net.step([tx], validators=[1])  # the builder loads on its block path; the validator holds it
    assert block.results[0].status is TxStatus.OK, block.results[0].log
    assert pool.holds(model_id) and pool.restarts == 1
    assert not net.alarms
