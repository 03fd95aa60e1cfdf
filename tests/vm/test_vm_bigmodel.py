"""Room for real models: an ImageNet-sized image (1x3x224x224 float32, 602,112 B) is a golden input and an
inference input, end to end through build, validate and apply; anything past the wire caps is a typed,
one-line `TooLarge`; an upload stays open longer the larger the model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from core.errors import TooLarge
from core.header import TxStatus
from core.limits import MAX_TENSOR_BYTES
from core.tensor import DType, Tensor
from core.types import Amount, Hash32
from tests.vm.devnet import Devnet
from tests.vm.helpers import meta_for, spec, upload_txs
from vm.execute import admission_error, infer_gas, upload_lifetime
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.limits import NODE_RESERVE_BYTES, WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.state import RegistrationData
from vm.txs import HEADER_INLINE_BYTES, Infer, ModelClass, split_model

pytestmark = pytest.mark.vm

IMAGE = (1, 3, 224, 224)


def pool_model() -> bytes:
    """Per-channel mean of an image: float32[1,3,224,224] -> float32[1,3,1,1]."""
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(IMAGE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return canonicalize(model.SerializeToString(), {"x": IMAGE})


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(IMAGE, dtype=np.float32)


def test_an_imagenet_image_is_a_golden_input_and_an_inference_input(net: Devnet) -> None:
    owner, user = net.account(5), net.account(6)
    model_bytes = pool_model()
    meta = meta_for("pool", model_bytes, [spec("x", DType.FLOAT32, IMAGE)], [spec("y", DType.FLOAT32, (1, 3, 1, 1))],
                    ModelClass.TOLERANT, [[image(1)]], grid_k=20, tol_abs=64, tol_rel_ppm=200)
    assert len(meta.golden[0].inputs[0].data) == 602_112
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0)
    assert len(txs) == 2 and split_model(model_bytes, meta)[0].data == b""  # the big header rides alone
    assert net.step(txs[:1]).results[0].status is TxStatus.OK
    landed = net.step(txs[1:]).results[0]
    assert landed.status is TxStatus.OK, landed.log
    model_id = RegistrationData.decode(landed.data).model_id
    record = net.apps[0].view().model(model_id)
    assert record is not None

    x = image(2)
    tx = net.tx(user, Infer(model_id, (Tensor.from_numpy(x),), Amount(0)),
                gas_limit=infer_gas(net.genesis.params, record, (Tensor.from_numpy(x),)))
    result = net.step([tx]).results[0]
    assert result.status is TxStatus.OK, result.log
    means = result.outputs[0].to_numpy().reshape(3) / 2.0**20  # float outputs are committed on the 2^-20 grid
    assert np.allclose(means, x.mean(axis=(2, 3)).reshape(3), atol=1e-5)


def test_a_tensor_past_the_cap_is_a_typed_one_line_error() -> None:
    at_cap = np.zeros(MAX_TENSOR_BYTES // 4, np.float32)
    assert Tensor.decode(Tensor.from_numpy(at_cap).encode()).data == at_cap.tobytes()
    with pytest.raises(TooLarge) as err:
        Tensor.from_numpy(np.zeros(MAX_TENSOR_BYTES // 4 + 1, np.float32))
    assert "\n" not in str(err.value) and str(MAX_TENSOR_BYTES) in str(err.value)
    with pytest.raises(TooLarge):  # built by hand, the encoder refuses it with the same type
        Tensor(DType.UINT8, (MAX_TENSOR_BYTES + 1,), bytes(MAX_TENSOR_BYTES + 1)).encode()


def test_a_small_header_still_rides_with_chunk_zero(net: Devnet) -> None:
    model_bytes = pool_model()
    meta = meta_for("pool", model_bytes, [spec("x", DType.FLOAT32, IMAGE)], [spec("y", DType.FLOAT32, (1, 3, 1, 1))],
                    ModelClass.TOLERANT, [], grid_k=20, tol_abs=64, tol_rel_ppm=200)
    chunks = split_model(model_bytes, meta)
    assert len(chunks[0].header.encode()) <= HEADER_INLINE_BYTES  # type: ignore[union-attr]
    assert len(chunks) == 1 and chunks[0].data == model_bytes


def test_upload_lifetime_grows_with_the_model(net: Devnet) -> None:
    vm = net.genesis.params.vm
    small, big = upload_lifetime(vm, 1000), upload_lifetime(vm, 128 << 20)
    assert small == vm.upload_expiry_blocks + vm.upload_expiry_blocks_per_mib
    assert big == vm.upload_expiry_blocks + 128 * vm.upload_expiry_blocks_per_mib


def test_the_worker_pool_keeps_to_the_validator_memory_budget() -> None:
    """Four validators on 24 GiB: each validator's workers and node stay within 6 GiB, so a pool that could
    outgrow it is refused when it is made, before any worker starts."""
    limits = WorkerLimits()
    assert 4 * limits.validator_budget_bytes <= 24 << 30
    largest = max(n for n in range(1, 16) if n * limits.worker_resident_bytes() + limits.pinned_session_bytes()
                  + NODE_RESERVE_BYTES <= limits.validator_budget_bytes)
    assert largest == 2  # with the resident models' pinned sessions (vm/resident.py) at the default bound
    WorkerPool(largest).close()
    with pytest.raises(ValueError, match="over the budget"):
        WorkerPool(largest + 1)
    # The cache holds at least two sessions of a model at the 128 MiB cap (2 x bytes + overhead each).
    assert limits.session_cache_bytes >= 2 * (2 * (128 << 20) + (256 << 10))


def test_the_mempool_refuses_an_inference_over_the_input_cap(net: Devnet) -> None:
    """Inputs of 1 MiB and 4 bytes (two valid tensors) are over vm.max_infer_input_bytes (1 MiB): they could
    only fail, so the mempool's entry check refuses them; a 1 MiB input and an ImageNet image are admitted."""
    vm, user = net.genesis.params.vm, net.account(6)
    account = net.apps[0].view().account(user.address)
    at_cap = np.zeros(MAX_TENSOR_BYTES // 4, np.float32)
    assert vm.max_infer_input_bytes == at_cap.nbytes
    for inputs, refused in (((at_cap, np.zeros(1, np.float32)), True), ((at_cap,), False), ((image(3),), False)):
        tensors = tuple(Tensor.from_numpy(x) for x in inputs)
        tx = net.tx(user, Infer(Hash32(bytes(32)), tensors, Amount(0)), gas_limit=2_000_000, nonce=account.nonce)
        reason = admission_error(tx, net.genesis.chain_id, vm, account)
        assert (reason == f"inputs exceed {vm.max_infer_input_bytes} bytes") if refused else reason is None
