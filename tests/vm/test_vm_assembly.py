"""The completing chunk's assembly (vm/assembly.py): the block that completes an upload is the same block whether
its facts came from the memo or were recomputed, on the builder, a validator and a node that applies it from
scratch; the model's blob lands in every node's store either way (composed from its chunks at commit when the
block only named it). An upload whose bytes do not match their header is never memoized, and still rejected."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.block import Block
from core.hashing import sha256
from core.header import TxStatus
from core.tx import Transaction
from core.types import Hash32
from tests.vm.deferred_models import file_blob_devnet, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet
from vm.assembly import compute_assembly_key, prepare_assembly
from vm.deferred import PENDING, get_deferred
from vm.execute import chunk_gas
from vm.txs import build_tx, compute_model_id, split_model

pytestmark = pytest.mark.vm


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    """Node 0 builds, node 1 validates, node 2 applies committed blocks; each with its own file blob store."""
    with file_blob_devnet(tmp_path, 3) as devnet:
        yield devnet


def test_the_completing_block_is_the_same_from_the_memo_and_recomputed(net: Devnet) -> None:
    model_bytes = weights_model(1)
    meta = weights_meta("big", model_bytes)
    chunks = split_model(model_bytes, meta, 256 * 1024)
    txs = upload(net, net.account(5), model_bytes, meta)
    net.step_until_landed(txs[:-1])
    header = chunks[0].header
    assert header is not None
    key = compute_assembly_key(header, [sha256(c.data) for c in chunks])

    memo = net.apps[0].assembly_memo  # the builder's own (vm.app.VMApplication.assembly_memo)
    misses = memo.misses
    recomputed = net.propose(txs[-1:])  # a miss: read, hashed and parsed here, then memoized
    assert memo.misses == misses + 1 and memo.has(key)
    hits = memo.hits
    memoized = net.propose(txs[-1:])  # the same template: now a hit, which names the blob by its chunks
    assert memo.hits == hits + 1
    assert memoized.id == recomputed.id and memoized.results == recomputed.results  # state root, results: all
    [result] = memoized.results
    assert result.status is TxStatus.OK, result.log

    # The validator, another application in this process, has a memo of its own: it misses and recomputes,
    # and the same block is valid.
    assert not net.apps[1].assembly_memo.has(key) and not net.apps[2].assembly_memo.has(key)
    assert net.apps[1].validate_block(memoized).is_valid
    assert net.apps[1].assembly_memo.has(key) and not net.apps[2].assembly_memo.has(key)
    net.commit(memoized)  # node 0 commits its memoized build, node 1 its validation, node 2 applies from scratch
    model_id = compute_model_id(sha256(model_bytes), meta)
    for app in net.apps:
        record = get_deferred(app.view(), model_id)
        assert record is not None and record.status == PENDING
        assert app.blobs.get_blob(sha256(model_bytes)) == model_bytes  # stored whole, checked on read
        assert app.view().get_blob(sha256(model_bytes)) == model_bytes


def test_an_upload_whose_bytes_do_not_match_its_header_is_not_memoized_and_is_rejected(net: Devnet) -> None:
    model_bytes = weights_model(2)
    meta = weights_meta("liar", model_bytes)
    chunks = split_model(model_bytes, meta, 256 * 1024)
    owner = net.account(5)
    txs = upload(net, owner, model_bytes, meta)
    net.step_until_landed(txs[:-1])
    header = chunks[0].header
    assert header is not None
    last = chunks[-1]
    forged = last.replace(data=bytes([last.data[0] ^ 1]) + last.data[1:])  # same size, another hash
    params = net.genesis.params
    gas = txs[-1].gas_limit
    assert gas >= chunk_gas(params, forged, len(model_bytes), True)
    tx: Transaction = build_tx(owner, forged, chain_id=net.genesis.chain_id, nonce=txs[-1].nonce, gas_limit=gas,
                               fee=txs[-1].fee)
    parts = [sha256(c.data) for c in chunks[:-1]] + [sha256(forged.data)]
    assert prepare_assembly(header, [c.data for c in chunks[:-1]] + [forged.data], net.apps[0].assembly_memo) is None

    block = net.step([tx], validators=[1])
    [result] = block.results
    assert result.status is TxStatus.MODEL_REJECTED and "do not match" in result.log
    assert not any(app.assembly_memo.has(compute_assembly_key(header, parts)) for app in net.apps)
    for app in net.apps:
        assert app.blobs.size(Hash32(sha256(model_bytes))) is None
        assert get_deferred(app.view(), compute_model_id(sha256(model_bytes), meta)) is None


def test_a_miss_waits_for_the_preparation_under_way_and_takes_its_answer(net: Devnet) -> None:
    """The node's preparation (node/uploadahead.py) runs while a block arrives: the block path waits for that
    answer instead of computing it alongside, and builds the block the slow path builds."""
    model_bytes = weights_model(6)
    meta = weights_meta("awaited", model_bytes)
    chunks = split_model(model_bytes, meta, 256 * 1024)
    header = chunks[0].header
    assert header is not None
    txs = upload(net, net.account(5), model_bytes, meta)
    net.step_until_landed(txs[:-1])
    key = compute_assembly_key(header, [sha256(c.data) for c in chunks])
    built: list[Block] = []
    memo = net.apps[0].assembly_memo  # the builder's: what its node's preparation fills
    with memo.preparing(key) as mine:
        assert mine
        builder = threading.Thread(target=lambda: built.append(net.propose(txs[-1:])))
        builder.start()
        deadline = time.monotonic() + 60
        while memo.waiting == 0 and builder.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert memo.waiting == 1  # the build is waiting for this preparation
        assert net.apps[1].assembly_memo.waiting == 0  # another application's memo knows nothing of it
        assert prepare_assembly(header, [c.data for c in chunks], memo) == model_bytes
    builder.join(timeout=60)
    assert not builder.is_alive() and memo.waited == 1
    memo.clear()
    assert net.propose(txs[-1:]).id == built[0].id  # recomputed: the same block
