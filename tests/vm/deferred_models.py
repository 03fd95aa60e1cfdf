"""Models and uploads for the deferred-activation tests (vm/deferred.py): 512 KiB weights models whose check
is over the lowered `vm.max_tx_gas` of `VM`, and an upload whose completing chunk carries the gas
`vm.execute.completing_gas` quotes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from core.keys import PrivateKey
from core.tensor import DType, Tensor
from core.tx import Transaction
from node.blobstore import FileBlobStore
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import meta_for, spec
from vm.execute import chunk_gas, completing_gas
from vm.sandbox.canonicalize import canonicalize
from vm.txs import GoldenVector, ModelClass, ModelMeta, build_tx, split_model

K = 32_768  # weights of K x 4 float32: 512 KiB, a check of ~2.6M gas at the default prices
VM = {"max_tx_gas": 2_000_000, "defer_check_gas_over": 1_000_000, "gas_register_deferred": 100_000,
      "max_deferred_registration_gas": 10_000_000, "background_gas_per_block": 1_000_000}


def weights_model(seed: int) -> bytes:
    """float32[1,K] x W[K,4] -> float32[1,4], W seeded random: 512 KiB of weights."""
    w = np.random.default_rng(seed).standard_normal((K, 4)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "weights",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return canonicalize(model.SerializeToString(), {"x": (1, K)})


def weights_meta(name: str, model_bytes: bytes) -> ModelMeta:
    x = np.random.default_rng(7).standard_normal((1, K)).astype(np.float32)
    return meta_for(name, model_bytes, [spec("x", DType.FLOAT32, (1, K))], [spec("y", DType.FLOAT32, (1, 4))],
                    ModelClass.TOLERANT, [[x]], grid_k=20, tol_abs=64, tol_rel_ppm=200)


def lying_meta(meta: ModelMeta) -> ModelMeta:
    """The same declaration with golden outputs far from what the model computes: its check fails."""
    vector = meta.golden[0]
    wrong = tuple(Tensor(t.dtype, t.shape, (np.frombuffer(t.data, np.int64) + 10**9).tobytes())
                  for t in vector.outputs)
    return meta.replace(golden=(GoldenVector(vector.inputs, wrong),))


def upload(net: Devnet, key: PrivateKey, model_bytes: bytes, meta: ModelMeta) -> list[Transaction]:
    params = net.genesis.params
    chunks = split_model(model_bytes, meta, 256 * 1024)
    nonce = net.apps[0].view().account(key.address).nonce
    txs = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        gas = chunk_gas(params, chunk, len(model_bytes), last,
                        registration=completing_gas(params, model_bytes, meta) if last else 0)
        txs.append(build_tx(key, chunk, chain_id=net.genesis.chain_id, nonce=nonce + i, gas_limit=gas,
                            fee=gas * params.vm.min_gas_price))
    return txs


def near_meta(meta: ModelMeta) -> ModelMeta:
    """The same declaration with golden outputs 1.5 x the tolerance off what the model computes: outside the
    tolerance, inside the band (`vm.sandbox.golden.wider_tolerance`) where one node cannot tell its own
    drift from a wrong claim."""
    vector = meta.golden[0]
    shifted = []
    for t in vector.outputs:
        q = np.frombuffer(t.data, np.int64)
        bound = meta.tol_abs + meta.tol_rel_ppm * np.abs(q.astype(np.float64)) / 1e6
        shifted.append(Tensor(t.dtype, t.shape, (q + np.rint(1.5 * bound).astype(np.int64)).tobytes()))
    return meta.replace(golden=(GoldenVector(vector.inputs, tuple(shifted)),))


@contextmanager
def file_blob_devnet(tmp_path: Path, nodes: int) -> Iterator[Devnet]:
    """`nodes` in-process nodes on the deferred genesis (`VM`), each with its own file blob store (and, as
    every VM application, its own assembly memo: vm/assembly.py)."""
    devnet = Devnet.start(tmp_path, devnet_genesis(vm=VM), nodes=nodes,
                          blobs=lambda i: FileBlobStore(tmp_path / f"blobs{i}"))
    try:
        yield devnet
    finally:
        devnet.close()
