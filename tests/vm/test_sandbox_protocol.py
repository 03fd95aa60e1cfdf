"""The pool and its workers speak in typed messages (vm/sandbox/protocol.py), and the engine's batch slots
are typed: a worker refuses anything else as a bug, and a failed PoI challenge is a LocalFault.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from core.errors import LocalFault
from core.tensor import Tensor
from core.types import Hash32
from tests.vm.devnet import devnet_genesis
from vm.engine import ChallengeRun, Engine
from vm.models import load_model
from vm.sandbox.executor import CheckJob, JobResult, LocalExecutor
from vm.sandbox.protocol import Batch, CheckWire, Describe, Described, Done, Fault, Ready
from vm.sandbox.worker import WorkerPool
from vm.txs import ModelClass, ModelMeta, TensorSpec

pytestmark = pytest.mark.vm


def test_messages_are_frozen_and_cross_a_pipe_unchanged() -> None:
    poi = load_model("poi_mix")
    batch = Batch((CheckWire(3, poi.model_bytes, poi.spec),), cpu_seconds=5)
    assert pickle.loads(pickle.dumps(batch)) == batch
    with pytest.raises(AttributeError):
        batch.cpu_seconds = 6  # type: ignore[misc]
    done = Done(((3, JobResult()),), frozenset({b"m"}))
    assert pickle.loads(pickle.dumps(done)) == done


def test_a_worker_answers_typed_messages_and_refuses_anything_else() -> None:
    poi = load_model("poi_mix")
    with WorkerPool(size=1) as pool:
        pool.start()
        worker = pool._ensure(0)  # the real pipe to the real worker process
        assert isinstance(worker.info, Ready) and worker.info.pid == worker.process.pid
        worker.conn.send(Batch((CheckWire(7, poi.model_bytes, poi.spec),), cpu_seconds=30))
        assert worker.conn.poll(60)
        reply = worker.conn.recv()
        assert isinstance(reply, Done) and reply.results[0][0] == 7 and reply.results[0][1].info is not None
        worker.conn.send(("batch", [(0, ("check", poi.model_bytes, poi.spec))], 30))  # the old tuple protocol
        assert worker.conn.poll(60)
        refused = worker.conn.recv()
        assert refused == Fault("unknown message tuple", internal=True)
        worker.conn.send(Describe())
        assert worker.conn.poll(60)
        described = worker.conn.recv()
        assert isinstance(described, Described) and described.info["intra_op_threads"] == 1
        # The pool still serves batches through the same worker.
        assert pool.run_batch([CheckJob(poi.model_bytes, poi.spec)])[0].ok
        assert pool.restarts == 0


def test_a_failed_poi_challenge_is_a_local_fault() -> None:
    """The engine raised ValueError when the PoI model gave no output; the app only catches LocalFault."""
    genesis = devnet_genesis(1)
    poi = load_model("poi_mix")
    spec = poi.spec.inputs[0]
    inputs = (TensorSpec(spec.name, Tensor.from_numpy(np.zeros(spec.shape, np.uint8)).dtype, spec.shape),)
    outputs = tuple(TensorSpec(o.name, Tensor.from_numpy(np.zeros(o.shape, o.dtype)).dtype, o.shape)
                    for o in poi.outputs)
    meta = ModelMeta("poi", inputs, outputs, ModelClass.EXACT, 0, 0, 0, 0, ())
    engine = Engine(LocalExecutor(), lambda _: poi.model_bytes)
    wrong = (Tensor.from_numpy(np.zeros((1, 3), np.uint8)),)  # not the declared input shape
    with pytest.raises(LocalFault, match="PoI model failed: InputMismatch"):
        engine.run_challenge(ChallengeRun(Hash32(bytes(32)), meta, wrong), genesis.params)
