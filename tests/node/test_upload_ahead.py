"""Uploads prepared ahead (node/uploadahead.py): once every chunk of an upload is committed or waiting in the
mempool, the node assembles, checks and stores the model before the completing block, which then finds its
facts in the memo (vm/assembly.py) and is the block the slow path builds. A mempool chunk that is not the
model's (a forged one) prepares nothing and stores nothing: the block, with the true chunk, recomputes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from core.hashing import sha256
from core.header import TxStatus
from core.tx import Transaction
from core.types import Hash32
from node.blobstore import FileBlobStore
from node.uploadahead import UploadAhead
from tests.vm.deferred_models import VM, file_blob_devnet, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from vm.assembly import compute_assembly_key
from vm.state import Upload, upload_key
from vm.txs import build_tx, compute_model_id, split_model

pytestmark = pytest.mark.node


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    with file_blob_devnet(tmp_path, 2) as devnet:
        yield devnet


def one_pass(ahead: UploadAhead, noted: list[Transaction]) -> None:
    """The mempool's notes for `noted` and a commit's wake, then one pass of the service (bounded)."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ahead.run)
            for tx in noted:
                ahead.note(tx.hash, tx, False, 0)
            ahead.wake()  # as a commit does
            with trio.fail_after(60):
                await ahead.next_pass()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_upload_whose_last_chunks_wait_in_the_mempool_is_prepared_before_its_block(net: Devnet) -> None:
    model_bytes = weights_model(3)
    meta = weights_meta("ahead", model_bytes)
    chunks = split_model(model_bytes, meta, 256 * 1024)
    header = chunks[0].header
    assert header is not None
    txs = upload(net, net.account(5), model_bytes, meta)
    net.step_until_landed(txs[:1])  # the header's chunk commits; the others wait in the mempool
    mempool = {bytes(tx.hash): tx for tx in txs[1:]}
    app = net.apps[1]
    ahead = UploadAhead(app, app.blobs, mempool.get)
    one_pass(ahead, txs[1:])
    assert ahead.prepared == 1
    assert app.blobs.get_blob(sha256(model_bytes)) == model_bytes  # stored before any block names it
    key = compute_assembly_key(header, [sha256(c.data) for c in chunks])
    assert app.assembly_memo.has(key)  # in the memo of the application whose node prepared it, only there
    assert not net.apps[0].assembly_memo.has(key)
    one_pass(ahead, [])  # a second pass finds it prepared: nothing again
    assert ahead.prepared == 1

    hits, misses = app.assembly_memo.hits, net.apps[0].assembly_memo.misses
    block = net.propose(txs[1:])  # the completing block, built by node 0, which recomputes it (its own memo)
    assert net.apps[0].assembly_memo.misses == misses + 1
    assert len(block.txs) == len(txs[1:]) and app.validate_block(block).is_valid  # node 1: from its memo
    assert app.assembly_memo.hits == hits + 1
    assert [r.status for r in block.results] == [TxStatus.OK] * len(txs[1:])
    assert net.propose(txs[1:], node=1).id == block.id  # node 1 builds it from its memo: the same block
    assert app.assembly_memo.hits == hits + 2
    net.commit(block)
    one_pass(ahead, [])  # completed: its blob is named, never listed as garbage
    net.step()
    assert ahead.dropped == 0
    for a in net.apps:
        assert a.view().get_blob(sha256(model_bytes)) == model_bytes


def test_a_forged_mempool_chunk_prepares_nothing_and_the_true_block_recomputes(net: Devnet) -> None:
    model_bytes = weights_model(4)
    meta = weights_meta("forged", model_bytes)
    chunks = split_model(model_bytes, meta, 256 * 1024)
    owner = net.account(5)
    txs = upload(net, owner, model_bytes, meta)
    net.step_until_landed(txs[:-1])
    last = chunks[-1]
    forged = build_tx(owner, last.replace(data=bytes(len(last.data))), chain_id=net.genesis.chain_id,
                      nonce=txs[-1].nonce, gas_limit=txs[-1].gas_limit, fee=txs[-1].fee)
    app = net.apps[1]
    ahead = UploadAhead(app, app.blobs, {bytes(forged.hash): forged}.get)
    one_pass(ahead, [forged])
    assert ahead.prepared == 0 and app.blobs.size(Hash32(sha256(model_bytes))) is None

    misses = app.assembly_memo.misses
    block = net.step(txs[-1:], validators=[1])
    assert app.assembly_memo.misses > misses
    [result] = block.results
    assert result.status is TxStatus.OK, result.log
    for a in net.apps:
        assert a.view().get_blob(sha256(model_bytes)) == model_bytes


def test_an_upload_entirely_in_the_mempool_is_prepared_from_its_first_chunks_header(net: Devnet) -> None:
    model_bytes = weights_model(5)
    meta = weights_meta("whole", model_bytes)
    txs = upload(net, net.account(5), model_bytes, meta)
    app = net.apps[0]
    ahead = UploadAhead(app, app.blobs, {bytes(tx.hash): tx for tx in txs[1:]}.get)
    one_pass(ahead, txs[1:])  # without the header's chunk: nothing to go by
    assert ahead.prepared == 0
    ahead = UploadAhead(app, app.blobs, {bytes(tx.hash): tx for tx in txs}.get)
    one_pass(ahead, txs)
    assert ahead.prepared == 1 and app.blobs.get_blob(sha256(model_bytes)) == model_bytes


def test_the_blob_prepared_for_an_upload_that_expires_is_deleted_at_the_next_commit(tmp_path: Path) -> None:
    vm = {**VM, "upload_expiry_blocks": 3, "upload_expiry_blocks_per_mib": 0}
    net = Devnet.start(tmp_path, devnet_genesis(vm=vm), nodes=2, blobs=lambda i: FileBlobStore(tmp_path / f"b{i}"))
    try:
        model_bytes = weights_model(5)
        meta = weights_meta("expires", model_bytes)
        txs = upload(net, net.account(5), model_bytes, meta)
        net.step_until_landed(txs[:1])  # the upload opens; its other chunks wait in node 1's mempool
        mempool = {bytes(tx.hash): tx for tx in txs[1:]}
        app = net.apps[1]
        ahead = UploadAhead(app, app.blobs, mempool.get)
        one_pass(ahead, txs[1:])
        digest = Hash32(sha256(model_bytes))
        assert ahead.prepared == 1 and app.blobs.size(digest) == len(model_bytes)
        mempool.clear()  # the chunks leave the mempool: the upload never completes
        while app.view().get(upload_key(compute_model_id(digest, meta)), Upload) is not None:
            net.step()  # until it expires
        one_pass(ahead, [])
        assert ahead.dropped == 1 and app.blobs.size(digest) == len(model_bytes)  # listed, not deleted yet
        net.step()  # the next commit collects it (no record names it)
        assert app.blobs.size(digest) is None  # red without the drop: kept until a restart's sweep
        one_pass(ahead, [])
        assert ahead.dropped == 1
    finally:
        net.close()
