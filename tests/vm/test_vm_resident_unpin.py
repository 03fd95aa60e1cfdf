"""Unpinning (vm/resident.py `unpin_departed`, the worker protocol's `Unpin`): a model that leaves the chain's
resident set (retired, or rejected at its activation) stops holding a pinned session in the block path's
workers. Real worker processes, real ONNX Runtime.

The attack it closes: register-and-retire cycles, each paying a resident registration and its load, pinned one
more session per cycle in every validator's workers until they restarted, past the chain's bound
(`vm.max_resident_bytes`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.types import Hash32
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_resident import RESIDENT_VM, _package
from vm.resident import KEY_RESIDENT, ResidentSet, unpin_departed
from vm.sandbox.executor import LocalExecutor
from vm.sandbox.limits import MIB, WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.state import StateView

pytestmark = pytest.mark.vm


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, devnet_genesis(vm=RESIDENT_VM), nodes=1)
    yield devnet
    devnet.close()


def holding(net: Devnet, models: tuple[bytes, ...]) -> StateView:
    """A real state view (LevelDB) whose resident set holds `models`: the record `unpin_departed` reads."""
    view = net.apps[0].view()
    view.put(KEY_RESIDENT, ResidentSet(0, tuple(Hash32(m) for m in models)))
    return view


def test_a_worker_drops_the_pinned_sessions_of_models_that_left_the_resident_set(net: Devnet) -> None:
    """Three resident models pinned one after another (as three register-and-retire cycles pin them), the
    chain's set holding one at a time: after each unpin the worker pins at most the one the set holds, its
    pinned bytes within `vm.max_resident_bytes`; an ordinary cached session stays; a dropped model's next job
    sends its bytes again and is answered. Red without the unpin: three pinned, over the bound."""
    bound = int(RESIDENT_VM["max_resident_bytes"])
    residents = [_package(seed, resident=True) for seed in (81, 82, 83)]
    ordinary, ordinary_id = _package(84, resident=False)
    limits = WorkerLimits(session_cache_bytes=8 * MIB, resident_model_bytes=MIB)
    with WorkerPool(size=1, limits=limits) as pool:
        assert pool.run_batch([ordinary])[0].ok
        for job, model_id in residents:
            assert pool.run_batch([job])[0].ok  # pinned (the node's preload, or a block's first call)
            dropped = unpin_departed(holding(net, (model_id,)), pool)  # the commit that retired the previous
            [info] = pool.describe()
            assert info["resident"] == 1 and info["resident_bytes"] <= bound, info
            assert dropped == (0 if model_id == residents[0][1] else 1)
            assert pool.holds(model_id) and pool.holds(ordinary_id)
        assert unpin_departed(holding(net, ()), pool) == 1  # the last one retired too
        [info] = pool.describe()
        assert info["resident"] == 0 and info["resident_bytes"] == 0 and info["cached"] == 1, info
        assert not pool.holds(residents[-1][1]) and pool.holds(ordinary_id)
        job, model_id = residents[0]
        assert pool.run_batch([job])[0].ok  # the pool knows it was dropped: the bytes travel again
        assert pool.restarts == 0  # no worker was restarted to get there


def test_the_in_process_executor_unpins_too(net: Devnet) -> None:
    executor = LocalExecutor()
    job, model_id = _package(85, resident=True)
    assert executor.run_batch([job])[0].ok and executor.resident == {model_id}
    assert unpin_departed(holding(net, (model_id,)), executor) == 0 and executor.resident == {model_id}
    assert unpin_departed(holding(net, ()), executor) == 1 and executor.resident == frozenset()
    assert not executor.holds(model_id)
