"""The once-computed encodings give exactly what core.block computes from scratch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.block import compute_results_root, compute_txs_root
from core.errors import InvalidBlock
from core.header import TxResult, TxStatus
from core.tensor import Tensor
from core.types import Amount, Gas
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_evidence import double_vote
from vm.blockbytes import (
    INFER_CODE_BYTES,
    array_header_size,
    compute_infer_result_bound,
    compute_result_bound,
    get_block_bytes,
    get_result_bound,
    result_raws,
)
from vm.build import HEADER_RESERVE
from vm.txs import Infer, Transfer

pytestmark = pytest.mark.vm


def test_array_headers() -> None:
    assert [array_header_size(n) for n in (0, 15, 16, 65535, 65536)] == [1, 1, 3, 3, 5]


def test_results_encoded_once_per_distinct_value_are_each_results_encoding() -> None:
    """Equal results share one encoding; results with outputs, logs, data or other gas keep their own."""
    out = (Tensor.from_numpy(np.arange(4, dtype=np.int64)),)
    results = [TxResult(TxStatus.OK, Gas(1000), (), b"", ""), TxResult(TxStatus.FAILED, Gas(1000), (), b"", "no"),
               TxResult(TxStatus.OK, Gas(1000), (), b"", ""), TxResult(TxStatus.OK, Gas(999), (), b"", ""),
               TxResult(TxStatus.OK, Gas(1000), out, b"", ""), TxResult(TxStatus.OK, Gas(1000), (), b"\x01", ""),
               TxResult(TxStatus.OK, Gas(1000), out, b"", "")]
    assert result_raws(results) == tuple(r.encode() for r in results)


def test_sizes_and_roots_match_core(net: Devnet) -> None:
    a, b = net.account(6), net.account(7)
    net.step()
    for count in (0, 1, 17):
        txs = [net.tx(a, Transfer(b.address, Amount(i)), gas_limit=1000) for i in range(count)]
        block = net.step(txs, evidence=[double_vote(net, 0, net.height)] if count == 17 else [])
        parts = get_block_bytes(block)
        assert parts.size == len(block.encode())
        assert compute_txs_root(block.txs) == block.header.txs_root
        assert compute_results_root(block.results) == block.header.results_root
        assert [t.hash for t in parts.txs] == [tx.hash for tx in block.txs]
    broken = replace(block, results=(*block.results[:-1], replace(block.results[-1], log="x")))
    with pytest.raises(InvalidBlock):
        get_block_bytes(broken)
    with pytest.raises(InvalidBlock):
        broken.validate_basic()


def test_results_stay_within_their_bound(net: Devnet) -> None:
    """The bound the builder counts before execution covers every result execution writes: transfers that
    succeed, one that fails with a log, and (test_vm_inference) an inference's declared outputs."""
    a, b = net.account(6), net.account(7)
    net.step()
    txs = [net.tx(a, Transfer(b.address, Amount(i)), gas_limit=1000) for i in range(3)]
    txs.append(net.tx(a, Transfer(b.address, Amount(Amount.MAX)), gas_limit=1000))  # more than the balance
    block = net.step(txs)
    assert len(block.results) == 4 and block.results[-1].log
    for tx, result in zip(block.txs, block.results, strict=True):
        assert len(result.encode()) <= get_result_bound(tx, lambda _: None)


def test_a_block_of_transfers_fills_to_its_byte_cap(tmp_path: Path) -> None:
    """Each executed transfer counts its exact result (a few bytes), not a flat reserve: the block fills
    until the next transaction and its result's bound no longer fit (with 320 bytes reserved per result,
    this block held less than half as many)."""
    cap = 24_000
    net = Devnet.start(tmp_path, devnet_genesis(4, consensus={"max_block_bytes": cap}, vm={"max_infer_input_bytes": 8_000}), nodes=2)
    try:
        a, b = net.account(6), net.account(7)
        net.step()
        txs = [net.tx(a, Transfer(b.address, Amount(1)), gas_limit=1000) for _ in range(200)]
        block = net.step(txs)
        size = len(block.encode())
        room = len(txs[0].encode()) + get_result_bound(txs[0], lambda _: None)
        assert 0 < len(block.txs) < len(txs)
        assert cap - HEADER_RESERVE - room < size <= cap
    finally:
        net.close()


def test_inference_results_stay_within_their_declared_outputs_bound(tmp_path: Path) -> None:
    from tests.vm.helpers import wide_meta, wide_model

    net = Devnet.start(tmp_path, devnet_genesis(4), nodes=2)
    try:
        owner, user = net.account(5), net.account(6)
        model_bytes = wide_model()
        wide_id = net.register(owner, model_bytes, wide_meta(model_bytes))
        record = net.apps[0].view().model(wide_id)
        assert record is not None
        txs = [net.tx(user, Infer(wide_id, (Tensor.from_numpy(np.array([[i]], np.int32)),), Amount(0)),
                      gas_limit=2_000_000) for i in range(3)]
        block = net.step(txs)
        assert len(block.txs) == 3
        bound = compute_result_bound(2_000_000, record.meta.outputs, data_bytes=0)
        for tx, result in zip(block.txs, block.results, strict=True):
            assert result.outputs[0].shape == (1, 512)
            assert len(result.encode()) <= bound == get_result_bound(tx, lambda _: record)
            assert bound < len(result.encode()) + 300  # the outputs are counted exactly; the log's cap is slack
    finally:
        net.close()


def test_a_block_of_tiny_inferences_counts_their_outputs_not_a_log_at_its_cap(tmp_path: Path) -> None:
    """An executed inference whose model work has not run yet counts its declared outputs and a failure
    code (`compute_infer_result_bound`), not a log at its cap: a byte-capped block holds over a third more
    tiny inferences than with the full reserve, and every result, a failure's included, stays in the bound."""
    from tests.vm.test_vm_block_gas import inferences

    cap = 24_000
    net = Devnet.start(tmp_path, devnet_genesis(4, consensus={"max_block_bytes": cap, "max_block_gas": 10**9},
                                                vm={"max_infer_input_bytes": 8_000}), nodes=2)
    try:
        net.step()
        txs = inferences(net, 120)
        record = net.apps[0].view().model(Infer.decode(txs[0].payload).model_id)
        assert record is not None
        block = net.step(txs)  # built on node 0, validated by node 1
        full = len(txs[0].encode()) + get_result_bound(txs[0], lambda _: record)
        bound = compute_infer_result_bound(txs[0].gas_limit, record.meta.outputs)
        assert len(block.txs) < len(txs) and len(block.encode()) <= cap
        assert all(r.status is TxStatus.OK for r in block.results)
        assert len(block.txs) * 3 > 4 * ((cap - HEADER_RESERVE) // full)  # the full reserve held 35
        assert len(block.txs) >= (cap - HEADER_RESERVE - 1024) // (len(txs[0].encode()) + bound)
        assert all(len(r.encode()) <= bound for r in block.results)
        failed = TxResult(TxStatus.INFERENCE_FAILED, Gas(txs[0].gas_limit), (), b"", "x" * INFER_CODE_BYTES)
        assert len(failed.encode()) <= bound  # a failure's code fits the same bound
    finally:
        net.close()
