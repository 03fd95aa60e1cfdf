"""Model upload in chunks, registration verdicts committed in blocks, duplicates and expiry."""

from __future__ import annotations

import numpy as np
import pytest

from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.types import Amount
from tests.vm.devnet import Devnet
from tests.vm.helpers import upload_txs
from vm.models import load_model
from vm.state import RegistrationData, Upload, upload_key
from vm.txs import GoldenVector, Infer, ModelClass, ModelMeta, TensorSpec, split_model

pytestmark = pytest.mark.vm


def digits_meta(fee: int = 7, *, break_golden: bool = False) -> tuple[bytes, ModelMeta]:
    """The committed tolerant digits MLP with fresh metadata (so a new model id)."""
    m = load_model("digits_mlp")
    inputs = tuple(TensorSpec(t.name, DType.from_name(t.dtype), t.shape) for t in m.spec.inputs)
    outputs = tuple(TensorSpec(t.name, DType.from_name(t.dtype), t.shape) for t in m.outputs)
    golden = []
    for case in m.golden.cases:
        outs = [case.outputs[o.name] for o in outputs]
        if break_golden:
            outs = [o + 1_000_000 for o in outs]
        golden.append(GoldenVector(tuple(Tensor.from_numpy(case.inputs[i.name]) for i in inputs),
                                   tuple(Tensor.from_numpy(o) for o in outs)))
    meta = ModelMeta("digits-again", inputs, outputs, ModelClass.TOLERANT, m.spec.grid_k, m.spec.tolerance.t_abs,
                     m.spec.tolerance.t_rel_ppm, Amount(fee), tuple(golden))
    return m.model_bytes, meta


def test_upload_in_chunks_registers_when_the_last_chunk_lands(net: Devnet) -> None:
    owner, user = net.account(5), net.account(6)  # neither owns a validator (no rewards)
    model_bytes, meta = digits_meta(fee=7)
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0, chunk_bytes=4096)
    assert len(txs) == 3
    model_id = split_model(model_bytes, meta, 4096)[0].model_id
    first = net.step(txs[:2])
    assert [r.status for r in first.results] == [TxStatus.OK, TxStatus.OK]
    assert net.apps[0].view().model(model_id) is None
    last = net.step(txs[2:])
    assert last.results[0].status is TxStatus.OK, last.results[0].log
    data = RegistrationData.decode(last.results[0].data)
    assert data.model_id == model_id and data.gas_per_call == load_model("digits_mlp").gas_per_call
    record = net.apps[0].view().model(model_id)
    assert record is not None and record.owner == owner.address and record.registered_at == net.height
    assert net.apps[0].view().get(upload_key(model_id), Upload) is None
    # Callable from the next block; the owner earns its fee per call.
    owner_before = net.apps[0].view().account(owner.address).balance
    x = Tensor.from_numpy(np.full((1, 64), 0.5, dtype=np.float32))
    block = net.step([net.tx(user, Infer(model_id, (x,), Amount(7)), gas_limit=2_000_000),
                      net.tx(user, Infer(model_id, (x,), Amount(6)), gas_limit=2_000_000)])
    assert block.results[0].status is TxStatus.OK and len(block.results[0].outputs) == 1
    assert block.results[1].log == "the model's fee 7 exceeds max_model_fee 6"
    assert net.apps[0].view().account(owner.address).balance == owner_before + 7
    net.assert_supply_conserved()


def test_identical_content_is_refused(net: Devnet) -> None:
    owner, other = net.account(2), net.account(4)
    model_bytes, meta = digits_meta()
    params, chain = net.genesis.params, net.genesis.chain_id
    first = upload_txs(owner, model_bytes, meta, params=params, chain_id=chain, first_nonce=0, chunk_bytes=4096)
    again = upload_txs(other, model_bytes, meta, params=params, chain_id=chain, first_nonce=0, chunk_bytes=4096)
    block = net.step([first[0], again[0]])
    assert block.results[1].log == "an upload of this model is already in progress"
    net.step(first[1:])
    late = upload_txs(other, model_bytes, meta, params=params, chain_id=chain, first_nonce=1, chunk_bytes=4096)
    assert net.step([late[0]]).results[0].log == "model already registered"


def test_an_incomplete_upload_expires(net: Devnet) -> None:
    owner = net.account(2)
    model_bytes, meta = digits_meta()
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0, chunk_bytes=4096)
    model_id = split_model(model_bytes, meta, 4096)[0].model_id
    net.step(txs[:1])
    upload = net.apps[0].view().get(upload_key(model_id), Upload)
    assert upload is not None
    while net.height < upload.expires_at:
        net.step()
    view = net.apps[0].view()
    assert view.get(upload_key(model_id), Upload) is None
    assert net.step(txs[1:2]).results[0].log == "no upload in progress for this model"
    chunk_blob = sha256(split_model(model_bytes, meta, 4096)[0].data)
    assert all(app.blobs.get_blob(chunk_blob) is None for app in net.apps)  # collected after the expiry


def test_a_model_that_breaks_the_rules_gets_a_rejection_verdict(net: Devnet) -> None:
    owner = net.account(2)
    _, meta = digits_meta()
    junk = b"this is not an onnx model" * 10
    txs = upload_txs(owner, junk, meta, params=net.genesis.params, chain_id=net.genesis.chain_id, first_nonce=0)
    block = net.step(txs)  # the validator agrees with the proposer's verdict
    assert block.results[0].status is TxStatus.MODEL_REJECTED and block.results[0].log
    model_id = split_model(junk, meta)[0].model_id
    view = net.apps[0].view()
    assert view.model(model_id) is None and view.get(upload_key(model_id), Upload) is None
    net.step()  # the rejected upload's blobs go once the block that released them is committed
    assert all(app.blobs.get_blob(sha256(junk)) is None for app in net.apps)


def test_golden_vectors_that_do_not_reproduce_reject_the_model(net: Devnet) -> None:
    owner = net.account(2)
    model_bytes, meta = digits_meta(break_golden=True)
    txs = upload_txs(owner, model_bytes, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0)
    block = net.step(txs)
    assert block.results[0].status is TxStatus.MODEL_REJECTED
    assert block.results[0].log == "golden vectors do not reproduce"
