"""Whatever registration accepts, every later read decodes: what is written and what is read share one cap.

A model at every metadata cap (16 inputs and 16 outputs with 64-byte names and rank 8, a 64-byte name, 4
golden vectors, metadata exactly MAX_META_BYTES long) registers in three chunks (chunk 0 carries the
oversized header alone; the upload record is read back) and serves an inference through build, validate and apply. Metadata one byte over the cap is refused
as a malformed transaction, and the chain goes on (it used to register, after which every block that
called the model failed to build: its record could not be decoded).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from core.errors import DecodeError
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.types import Address, Amount, Hash32, Height
from tests.vm.devnet import Devnet
from tests.vm.helpers import upload_txs
from vm.execute import infer_gas
from vm.sandbox.canonicalize import canonicalize
from vm.state import CHUNK_LIST_BYTES, MAX_UPLOAD_CHUNKS, ModelRecord, Upload
from vm.txs import (
    MAX_GOLDEN_VECTORS,
    MAX_META_BYTES,
    MAX_MODEL_IO,
    MAX_MODEL_NAME_BYTES,
    GoldenVector,
    Infer,
    ModelClass,
    ModelMeta,
    TensorSpec,
    UploadHeader,
    split_model,
)

pytestmark = pytest.mark.vm

RANK = 8


def _name(prefix: str, i: int) -> str:
    return f"{prefix}{i:02d}".ljust(MAX_MODEL_NAME_BYTES, "_")


def _shape(n: int) -> tuple[int, ...]:
    return (1,) * (RANK - 1) + (n,)


def widest_model(first: int) -> tuple[bytes, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """16 uint8 inputs of rank 8 copied to 16 outputs (exact class); input 0 has `first` elements."""
    sizes = [first] + [1] * (MAX_MODEL_IO - 1)
    ins = [helper.make_tensor_value_info(_name("in", i), TensorProto.UINT8, list(_shape(n))) for i, n in enumerate(sizes)]
    outs = [helper.make_tensor_value_info(_name("out", i), TensorProto.UINT8, list(_shape(n)))
            for i, n in enumerate(sizes)]
    nodes = [helper.make_node("Identity", [_name("in", i)], [_name("out", i)]) for i in range(MAX_MODEL_IO)]
    model = helper.make_model(helper.make_graph(nodes, "main", ins, outs),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    canonical = canonicalize(model.SerializeToString(), {_name("in", i): _shape(n) for i, n in enumerate(sizes)})
    specs_in = tuple(TensorSpec(_name("in", i), DType.UINT8, _shape(n)) for i, n in enumerate(sizes))
    specs_out = tuple(TensorSpec(_name("out", i), DType.UINT8, _shape(n)) for i, n in enumerate(sizes))
    return canonical, specs_in, specs_out


def meta_of(first: int, name_bytes: int) -> tuple[bytes, ModelMeta]:
    model_bytes, ins, outs = widest_model(first)
    golden = []
    for case in range(MAX_GOLDEN_VECTORS):
        values = [Tensor.from_numpy(np.full(s.shape, case + i, np.uint8)) for i, s in enumerate(ins)]
        golden.append(GoldenVector(tuple(values), tuple(values)))  # Identity: outputs equal inputs
    fee = Amount(1 << 32)  # encoded in the widest integer form, and payable by a devnet account
    meta = ModelMeta("m" * name_bytes, ins, outs, ModelClass.EXACT, 0, 0, 0, fee, tuple(golden))
    return model_bytes, meta


def meta_at(size: int) -> tuple[bytes, ModelMeta]:
    """Model bytes and metadata whose encoding is exactly `size` bytes (input 0 grows 8 bytes a step; the
    model name fills the rest, one byte a character)."""
    low, high = 1, 1 << 18
    while low < high:  # the widest input 0 whose metadata (with a 56-byte name) fits
        mid = (low + high + 1) // 2
        if len(meta_of(mid, 56)[1].encode()) <= size:
            low = mid
        else:
            high = mid - 1
    model_bytes, meta = meta_of(low, 56)
    gap = size - len(meta.encode())
    assert 0 <= gap <= MAX_MODEL_NAME_BYTES - 56
    model_bytes, meta = meta_of(low, 56 + gap)
    assert len(meta.encode()) == size
    return model_bytes, meta


def test_records_at_the_cap_decode() -> None:
    """The records that carry metadata decode at its cap, the upload with a full list of chunk hashes."""
    _, meta = meta_at(MAX_META_BYTES)
    header = UploadHeader(meta, MAX_UPLOAD_CHUNKS, MAX_UPLOAD_CHUNKS, Hash32(bytes(32)))
    assert UploadHeader.decode(header.encode()) == header
    upload = Upload(Address(bytes(20)), header, b"\xff" * CHUNK_LIST_BYTES, Height(2**63 - 1))
    assert Upload.decode(upload.encode()) == upload
    record = ModelRecord(Address(bytes(20)), meta, Hash32(bytes(32)), 2**32 - 1, 2**16 - 1, 2**64 - 1, Height(2**63 - 1),
                         2**64 - 1)
    assert ModelRecord.decode(record.encode()) == record


def test_metadata_over_the_cap_does_not_decode() -> None:
    _, meta = meta_at(MAX_META_BYTES + 1)
    with pytest.raises(DecodeError, match=f"exceeds the limit of {MAX_META_BYTES}"):
        ModelMeta.decode(meta.encode())
    header = UploadHeader(meta, 1, 1, Hash32(bytes(32)))
    with pytest.raises(DecodeError, match="over the cap"):
        UploadHeader.decode(header.encode())


def test_a_model_at_every_cap_registers_and_serves_an_inference(net: Devnet) -> None:
    owner, user = net.account(5), net.account(6)
    model_bytes, meta = meta_at(MAX_META_BYTES)
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0, chunk_bytes=len(model_bytes) // 2 + 1)
    assert len(txs) == 3  # the upload record (metadata at its cap) is written, then read back
    model_id = split_model(model_bytes, meta, len(model_bytes) // 2 + 1)[0].model_id
    assert [r.status for r in net.step(txs[:2]).results] == [TxStatus.OK, TxStatus.OK]
    landed = net.step(txs[2:]).results[0]
    assert landed.status is TxStatus.OK, landed.log
    record = net.apps[0].view().model(model_id)  # a fresh view: decoded from the stored bytes
    assert record is not None and record.meta == meta
    inputs = tuple(Tensor.from_numpy(np.arange(np.prod(s.shape), dtype=np.uint8).reshape(s.shape)) for s in meta.inputs)
    gas = infer_gas(net.genesis.params, record, inputs)
    block = net.step([net.tx(user, Infer(model_id, inputs, Amount(1 << 32)), gas_limit=gas)])
    result = block.results[0]
    assert result.status is TxStatus.OK, result.log
    assert [t.to_numpy().tolist() for t in result.outputs] == [t.to_numpy().tolist() for t in inputs]


def test_metadata_over_the_cap_is_refused_and_the_chain_goes_on(net: Devnet) -> None:
    owner, user = net.account(5), net.account(6)
    model_bytes, meta = meta_at(MAX_META_BYTES + 1)
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0)
    model_id = split_model(model_bytes, meta)[0].model_id
    block = net.step(txs)
    assert all(r.status is not TxStatus.OK for r in block.results)
    assert net.apps[0].view().model(model_id) is None
    inputs = tuple(Tensor.from_numpy(np.zeros(s.shape, np.uint8)) for s in meta.inputs)
    after = net.step([net.tx(user, Infer(model_id, inputs, Amount(0)), gas_limit=200_000)])
    assert after.results[0].status is TxStatus.FAILED and after.results[0].log == "unknown model"
