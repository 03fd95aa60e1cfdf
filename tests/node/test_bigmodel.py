"""A 64 MiB model on real LevelDB and the node's file blob store: it uploads in 256 KiB chunks, registers,
serves an inference, survives a restart, reaches a node that applies the same blocks later, and an abandoned
upload's chunks are deleted after it expires. The state holds hashes only; the blob directory ends up
holding exactly the blobs a committed record names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from node.blobstore import FileBlobStore
from node.leveldb import LevelDBStore
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import meta_for, spec, upload_txs
from vm.app import VMApplication
from vm.execute import infer_gas
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.executor import LocalExecutor
from vm.state import Upload, upload_key
from vm.txs import Infer, ModelClass, ModelMeta, split_model

pytestmark = pytest.mark.node

WIDTH = 4096  # a float32 WIDTH x WIDTH weight: 64 MiB


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """y = x @ W with seeded random weights, canonical; built once per run and cached in a temp dir."""
    path = tmp_path_factory.getbasetemp() / "bigmodel-64mib.onnx"
    if path.exists():
        return path.read_bytes()
    weight = np.random.default_rng(7).standard_normal((WIDTH, WIDTH), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    canonical = canonicalize(model.SerializeToString(), {"x": (1, WIDTH)})
    path.write_bytes(canonical)
    return canonical


def _meta(name: str, model_bytes: bytes | None = None) -> ModelMeta:
    """Metadata with one golden vector run on `model_bytes` (None: no vector; an upload never completed)."""
    ins, outs = (spec("x", DType.FLOAT32, (1, WIDTH)),), (spec("y", DType.FLOAT32, (1, WIDTH)),)
    if model_bytes is None:
        return ModelMeta(name, ins, outs, ModelClass.TOLERANT, 10, 1 << 12, 1000, Amount(0), ())
    return meta_for(name, model_bytes, ins, outs, ModelClass.TOLERANT, [[np.full((1, WIDTH), 0.5, np.float32)]],
                    grid_k=10, tol_abs=1 << 12, tol_rel_ppm=1000)


def _upload_all(net: Devnet, txs: list[Transaction]) -> None:
    done = 0
    while done < len(txs):
        block = net.step(txs[done:])
        assert block.txs, "no chunk fitted in a block"
        assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
        done += len(block.txs)


def test_a_64_mib_model_uploads_registers_restarts_syncs_and_leaves_no_garbage(tmp_path: Path, big_model: bytes) -> None:
    assert len(big_model) >= 64 << 20
    # Registering 64 MiB costs more gas than the default per-transaction cap allows (priced per byte); this
    # chain raises the cap and registers it in its completing block (not deferred: tests/vm/test_vm_deferred.py).
    genesis = devnet_genesis(4, vm={"max_tx_gas": 3_000_000_000, "defer_check_gas_over": 3_000_000_000,
                                    "max_deferred_registration_gas": 3_000_000_000,
                                    "upload_expiry_blocks": 3, "upload_expiry_blocks_per_mib": 2},
                             consensus={"max_block_gas": 4_000_000_000})
    params = genesis.params
    net = Devnet.start(tmp_path, genesis, nodes=1, blobs=lambda i: FileBlobStore(tmp_path / f"blobs{i}"))
    owner, user, idler = net.account(5), net.account(6), net.account(7)
    try:
        # An upload that is abandoned after its first chunk: its blob goes when the upload expires.
        junk = bytes(range(256)) * 4096
        abandoned = upload_txs(idler, junk, _meta("abandoned"), params=params, chain_id=genesis.chain_id,
                               first_nonce=0)
        assert net.step(abandoned[:1]).results[0].status is TxStatus.OK
        abandoned_chunk = sha256(split_model(junk, _meta("abandoned"))[0].data)
        assert net.apps[0].blobs.get_blob(abandoned_chunk) is not None

        meta = _meta("big", big_model)
        txs = upload_txs(owner, big_model, meta, params=params, chain_id=genesis.chain_id, first_nonce=0)
        assert len(txs) == 258  # the header alone (its golden vector is large), 256 full chunks, the rest
        _upload_all(net, txs)
        model_id = split_model(big_model, meta)[0].model_id
        view = net.apps[0].view()
        record = view.model(model_id)
        assert record is not None and record.bytes_hash == sha256(big_model)
        assert view.get(upload_key(model_id), Upload) is None
        assert net.apps[0].view().get(upload_key(split_model(junk, _meta("abandoned"))[0].model_id), Upload) is None

        x = np.ones((1, WIDTH), np.float32)
        inputs = (Tensor.from_numpy(x),)
        result = net.step([net.tx(user, _infer(model_id, inputs), gas_limit=infer_gas(params, record, inputs))])
        assert result.results[0].status is TxStatus.OK, result.results[0].log

        # Only what a committed record names is left: the genesis models and the big one.
        named = {bytes(m.model_id): bytes(sha256(m.model_bytes)) for m in genesis.models}
        expected = set(named.values()) | {bytes(record.bytes_hash)}
        assert {bytes(d) for d in net.apps[0].blobs.digests()} == expected

        # A restart reopens the same database and blob directory and serves the model.
        net.close()
        reopened = VMApplication(LevelDBStore(tmp_path / "node0"), genesis, executor=LocalExecutor(),
                                 blobs=FileBlobStore(tmp_path / "blobs0"))
        net.apps = [reopened]
        assert reopened.view().model_bytes(record) == big_model
        again = net.step([net.tx(user, _infer(model_id, inputs), gas_limit=infer_gas(params, record, inputs))])
        assert again.results[0].outputs == result.results[0].outputs

        # A node that applies the same blocks later (as block sync does) ends with the same blobs.
        late = VMApplication(LevelDBStore(tmp_path / "late"), genesis, executor=LocalExecutor(),
                             blobs=FileBlobStore(tmp_path / "blobs-late"))
        try:
            for block in net.blocks:
                with late.store.write_batch(sync=False) as batch:
                    assert late.finalize_block(block, batch).state_root == block.header.state_root
            assert late.view().model_bytes(record) == big_model
            assert {bytes(d) for d in late.blobs.digests()} == expected
        finally:
            late.close()
            late.store.close()
    finally:
        net.close()


def _infer(model_id: Hash32, inputs: tuple[Tensor, ...]) -> Infer:
    return Infer(model_id, inputs, Amount(0))


class _Crash(Exception):
    pass


def test_a_crash_before_the_state_commits_leaves_no_name_without_its_blob(tmp_path: Path) -> None:
    """The block's blobs are on disk before its batch commits; a crash in between leaves an unnamed blob,
    which start-up sweeps; the block then commits again and names its blob."""
    genesis = devnet_genesis(4)
    net = Devnet.start(tmp_path, genesis, nodes=1, blobs=lambda i: FileBlobStore(tmp_path / f"blobs{i}"))
    try:
        data = np.random.default_rng(5).bytes(300_000)
        meta = _meta("crash")
        [first, _] = split_model(data, meta)
        tx = upload_txs(net.account(5), data, meta, params=genesis.params, chain_id=genesis.chain_id,
                        first_nonce=0)[0]
        block = net.propose([tx])
        app = net.apps[0]
        with pytest.raises(_Crash), app.store.write_batch(sync=True) as batch:
            app.finalize_block(block, batch)
            assert app.blobs.get_blob(sha256(first.data)) is not None  # durable before the state names it
            raise _Crash  # the process dies before the batch commits
        assert app.view().get(upload_key(first.model_id), Upload) is None
        net.close()
        reopened = VMApplication(LevelDBStore(tmp_path / "node0"), genesis, executor=LocalExecutor(),
                                 blobs=FileBlobStore(tmp_path / "blobs0"))
        net.apps = [reopened]
        assert reopened.blobs.get_blob(sha256(first.data)) is None  # swept: nothing names it
        net.commit(block)
        upload = reopened.view().get(upload_key(first.model_id), Upload)
        assert upload is not None and upload.chunk_hash(0) == sha256(first.data)
        assert reopened.blobs.get_blob(sha256(first.data)) == first.data
    finally:
        net.close()
