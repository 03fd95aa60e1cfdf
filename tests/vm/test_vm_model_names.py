"""Model names are first come per chain: a taken name is refused when an upload starts (so only that one
transaction's fee is spent), and a name comes free again when its upload expires or is rejected."""

from __future__ import annotations

import pytest

from core.header import TxStatus
from tests.vm.devnet import Devnet
from tests.vm.helpers import upload_txs
from tests.vm.test_vm_models import digits_meta
from vm.state import Upload, model_name_key, upload_key
from vm.txs import split_model

pytestmark = pytest.mark.vm


def test_a_second_model_with_a_taken_name_is_refused_at_its_first_chunk(net: Devnet) -> None:
    owner, squatter = net.account(5), net.account(6)
    params, chain = net.genesis.params, net.genesis.chain_id
    model_bytes, meta = digits_meta(fee=7)
    first = upload_txs(owner, model_bytes, meta, params=params, chain_id=chain, first_nonce=0, chunk_bytes=4096)
    first_id = split_model(model_bytes, meta, 4096)[0].model_id
    net.step(first)
    assert net.apps[0].view().model(first_id) is not None
    _, same_name = digits_meta(fee=9)  # other metadata: another model id, the same name
    second = upload_txs(squatter, model_bytes, same_name, params=params, chain_id=chain, first_nonce=0,
                        chunk_bytes=4096)
    second_id = split_model(model_bytes, same_name, 4096)[0].model_id
    assert second_id != first_id
    before = net.apps[0].view().account(squatter.address).balance
    block = net.step(second[:1])
    assert block.results[0].status is TxStatus.FAILED
    assert block.results[0].log == "the model name 'digits-again' is taken (names are first come per chain)"
    view = net.apps[0].view()
    assert view.get(upload_key(second_id), Upload) is None  # no upload opened, so no chunk blob referenced
    assert before - view.account(squatter.address).balance == second[0].fee  # that one fee, nothing more
    assert view.get_raw(model_name_key("digits-again")) == first_id
    net.assert_supply_conserved()


def test_genesis_model_names_are_taken_from_the_start(net: Devnet) -> None:
    model_bytes, meta = digits_meta()
    taken = meta.replace(name="digits_mlp")
    txs = upload_txs(net.account(5), model_bytes, taken, params=net.genesis.params, chain_id=net.genesis.chain_id,
                     first_nonce=0, chunk_bytes=4096)
    assert "is taken" in net.step(txs[:1]).results[0].log


def test_two_uploads_racing_for_a_name_the_first_to_start_wins(net: Devnet) -> None:
    params, chain = net.genesis.params, net.genesis.chain_id
    model_bytes, meta = digits_meta(fee=1)
    _, rival = digits_meta(fee=2)
    a = upload_txs(net.account(5), model_bytes, meta, params=params, chain_id=chain, first_nonce=0, chunk_bytes=4096)
    b = upload_txs(net.account(6), model_bytes, rival, params=params, chain_id=chain, first_nonce=0, chunk_bytes=4096)
    block = net.step([a[0], b[0]])
    assert block.results[0].status is TxStatus.OK and "is taken" in block.results[1].log


def test_an_expired_upload_frees_its_name(net: Devnet) -> None:
    params, chain = net.genesis.params, net.genesis.chain_id
    model_bytes, meta = digits_meta(fee=1)
    txs = upload_txs(net.account(2), model_bytes, meta, params=params, chain_id=chain, first_nonce=0,
                     chunk_bytes=4096)
    model_id = split_model(model_bytes, meta, 4096)[0].model_id
    net.step(txs[:1])
    upload = net.apps[0].view().get(upload_key(model_id), Upload)
    assert upload is not None and net.apps[0].view().get_raw(model_name_key(meta.name)) == model_id
    while net.height < upload.expires_at:
        net.step()
    assert net.apps[0].view().get_raw(model_name_key(meta.name)) is None
    _, other = digits_meta(fee=2)
    again = upload_txs(net.account(6), model_bytes, other, params=params, chain_id=chain, first_nonce=0)
    block = net.step(again)
    assert block.results[-1].status is TxStatus.OK, block.results[-1].log


def test_a_rejected_model_frees_its_name(net: Devnet) -> None:
    params, chain = net.genesis.params, net.genesis.chain_id
    _, meta = digits_meta()
    junk = b"this is not an onnx model" * 10
    block = net.step(upload_txs(net.account(2), junk, meta, params=params, chain_id=chain, first_nonce=0))
    assert block.results[0].status is TxStatus.MODEL_REJECTED
    assert net.apps[0].view().get_raw(model_name_key(meta.name)) is None
