"""Inference inputs of 1 MiB on a real devnet (4 validators and a full node, real processes, tests/realnet).

The default genesis allows `max_infer_input_bytes` = 1 MiB. A model float32[1,262144] -> ReduceSum is registered
with a 1 MiB golden input (its chunk 0, ~1.07 MiB, is one of the largest transactions), then called on a 1 MiB
input. Both transactions are submitted to the full node, which never proposes: to land in a block they must be
gossiped (py-libp2p's default 1 MiB outbound queue dropped them at the sender) and included by a validator.
Every node then holds the same committed result, the sum of the input within the declared tolerance.
Without p2p.pubsub.SizedQueues the upload's chunk 0 never leaves the full node (not in a block after 60 s).
~55-70 s on the shared 2-core machine, most of it the devnet's start and the 1 MiB golden run.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from core.address import address_from_public_key
from core.header import TxStatus
from core.limits import MAX_TENSOR_BYTES
from core.tensor import DType, Tensor
from core.types import Amount
from tests.realnet import RealNet, realnet_fixture
from tests.vm.helpers import meta_for, spec, upload_txs
from vm.execute import infer_gas
from vm.genesis import load_genesis
from vm.sandbox.canonicalize import canonicalize
from vm.state import ModelRecord, RegistrationData
from vm.txs import Infer, ModelClass, build_tx

pytestmark = pytest.mark.e2e

N = MAX_TENSOR_BYTES // 4  # float32 elements in a 1 MiB input
GRID_K, TOL_ABS, TOL_REL_PPM = 8, 64, 200
net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2)


def reduce_sum_model() -> bytes:
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1)], "sum",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return canonicalize(model.SerializeToString(), {"x": (1, N)})


def test_an_inference_on_a_1_mib_input_is_gossiped_included_elsewhere_and_committed_alike(net: RealNet) -> None:
    genesis = load_genesis(net.devnet.genesis_path)
    assert genesis.params.vm.max_infer_input_bytes == MAX_TENSOR_BYTES
    full = net.add_node(validator=False)  # holds no validator key: it never proposes
    net.wait_height(net.height(0) + 1, nodes=[full])
    client = net.client(full)
    key = net.account_key(0)
    nonce = client.account(address_from_public_key(key.public_key)).nonce
    rng = np.random.default_rng(12)

    model_bytes = reduce_sum_model()
    golden = rng.random((1, N), dtype=np.float32)
    meta = meta_for("sum1m", model_bytes, [spec("x", DType.FLOAT32, (1, N))], [spec("y", DType.FLOAT32, (1, 1))],
                    ModelClass.TOLERANT, [[golden]], grid_k=GRID_K, tol_abs=TOL_ABS, tol_rel_ppm=TOL_REL_PPM)
    chunks = upload_txs(key, model_bytes, meta, params=genesis.params, chain_id=net.chain_id, first_nonce=nonce)
    assert len(chunks[0].encode()) > MAX_TENSOR_BYTES  # the header with its 1 MiB golden input rides alone
    landed = [client.broadcast_tx(tx, mode="commit", timeout=60) for tx in chunks]
    assert all(r.result is not None and r.result.ok for r in landed), landed
    model_id = RegistrationData.decode(landed[-1].result.data).model_id  # type: ignore[union-attr]
    record = ModelRecord.decode(client.model(model_id).raw)

    x = rng.random((1, N), dtype=np.float32)
    inputs = (Tensor.from_numpy(x),)
    gas = infer_gas(genesis.params, record, inputs)
    tx = build_tx(key, Infer(model_id, inputs, Amount(0)), chain_id=net.chain_id, nonce=nonce + len(chunks),
                  gas_limit=gas, fee=gas * genesis.params.vm.min_gas_price)
    assert len(tx.encode()) > MAX_TENSOR_BYTES
    done = client.broadcast_tx(tx, mode="commit", timeout=60)
    assert done.accepted and done.height is not None, done

    # Included by a validator (the full node is none of them), and committed alike on every node.
    block = client.block(done.height).block
    validators = {address_from_public_key(net.validator_key(i).public_key) for i in range(4)}
    assert block.header.proposer in validators
    assert any(t.hash == tx.hash for t in block.txs)
    net.wait_height(done.height, nodes=[0, 1, 2, 3, full], timeout=60)
    committed = [net.client(i).tx(tx.hash) for i in (0, 1, 2, 3, full)]
    assert {c.height for c in committed} == {done.height}
    assert all(c.result == committed[0].result for c in committed)
    result = committed[0].result
    assert result.status is TxStatus.OK, result.log
    q = int(result.outputs[0].to_numpy().reshape(()))
    ref = float(x.astype(np.float64).sum()) * 2.0**GRID_K
    assert abs(q - ref) <= TOL_ABS + TOL_REL_PPM * abs(ref) / 1e6
