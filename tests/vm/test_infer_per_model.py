"""What an inference's block logic computes once per model instead of per transaction (vm/execute.py
`BlockModels.inputs_match`, vm/engine.py `feed_plan`/`plan_feeds` and `to_tensors`) gives what the per-transaction
forms gave: the same verdict on declared inputs, the same feeds, the same committed tensors; and a committed
inference result that a validator or apply reuses as the final result (vm/apply.py `final_result`) is reused only
when execution gives that very value."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.block import Block, compute_results_root
from core.errors import InvalidBlock
from core.header import TxResult, TxStatus
from core.tensor import DType, Tensor
from core.types import Address, Amount, Gas, Hash32, Height
from tests.vm.devnet import Devnet
from vm.apply import apply_block
from vm.engine import feed_plan, feeds, plan_feeds, to_tensors
from vm.execute import BlockModels
from vm.state import ModelRecord
from vm.txs import Infer, ModelClass, ModelMeta, TensorSpec

pytestmark = pytest.mark.vm


def record(*inputs: TensorSpec) -> ModelRecord:
    meta = ModelMeta("m", inputs, (TensorSpec("y", DType.INT64, (1, 10)),), ModelClass.EXACT, 16, 64, 200,
                     Amount(0), ())
    return ModelRecord(Address(bytes(20)), meta, Hash32(bytes(32)), 100, 1, Gas(10), Height(1), Gas(5))


U8 = TensorSpec("x", DType.UINT8, (1, 64))
F32 = TensorSpec("z", DType.FLOAT32, (2, 3))


def tensor(dtype: DType, shape: tuple[int, ...], fill: int = 1) -> Tensor:
    n = int(np.prod(shape)) * dtype.itemsize
    return Tensor(dtype, shape, bytes((fill + i) % 251 for i in range(n)))


def test_declared_inputs_are_checked_as_the_per_transaction_rule_did() -> None:
    models = BlockModels(4)
    one, two = record(U8), record(U8, F32)
    good = tensor(DType.UINT8, (1, 64))
    assert models.inputs_match(one, (good,))
    assert models.inputs_match(one, (good,))  # memoized: the same answer
    assert not models.inputs_match(one, (tensor(DType.INT8, (1, 64)),))  # dtype
    assert not models.inputs_match(one, (tensor(DType.UINT8, (64, 1)),))  # shape
    assert not models.inputs_match(one, (good, good))  # count
    assert not models.inputs_match(one, ())
    assert models.inputs_match(two, (good, tensor(DType.FLOAT32, (2, 3))))
    assert not models.inputs_match(two, (good, tensor(DType.FLOAT32, (3, 2))))
    assert not models.inputs_match(two, (good,))
    # Another record (a model re-declared) is judged on its own declaration, not on a memo of the first.
    assert not models.inputs_match(record(F32), (good,))
    assert models.inputs_match(record(F32), (tensor(DType.FLOAT32, (2, 3)),))


def test_planned_feeds_equal_each_tensors_own_feeds() -> None:
    meta = record(U8, F32).meta
    inputs = (tensor(DType.UINT8, (1, 64), 3), tensor(DType.FLOAT32, (2, 3), 9))
    planned, own = plan_feeds(feed_plan(meta), inputs), feeds(meta, inputs)
    assert list(planned) == list(own) == ["x", "z"]
    for name in own:
        assert planned[name].dtype == own[name].dtype and planned[name].shape == own[name].shape
        assert planned[name].tobytes() == own[name].tobytes()
        assert not planned[name].flags.writeable


@pytest.mark.parametrize("dtype", ["<i8", ">i8", "<f4", ">f4", "u1", "bool"])
def test_output_tensors_are_the_wire_bytes_whatever_the_arrays_byte_order(dtype: str) -> None:
    value = np.arange(6).reshape(2, 3).astype(dtype)
    for _ in range(2):  # the second call finds the dtype looked up already
        (out,) = to_tensors({"y": value})
        expected = Tensor.from_numpy(value)
        assert out == expected


def test_a_memo_of_another_record_at_the_same_address_is_not_used() -> None:
    """The memo is keyed by the record object's id; a record freed and another allocated at its address must
    not inherit its declaration (white-box: the entry is planted as the address reuse would leave it)."""
    models = BlockModels(4)
    old, new = record(U8), record(F32)
    assert models.inputs_match(old, (tensor(DType.UINT8, (1, 64)),))
    models._declared[id(new)] = models._declared.pop(id(old))
    assert not models.inputs_match(new, (tensor(DType.UINT8, (1, 64)),))
    assert models.inputs_match(new, (tensor(DType.FLOAT32, (2, 3)),))


def _with_result(block: Block, index: int, result: TxResult) -> Block:
    results = tuple(result if i == index else r for i, r in enumerate(block.results))
    return replace(block, results=results, header=replace(block.header, results_root=compute_results_root(results)))


def test_a_committed_inference_result_with_another_gas_is_refused(net: Devnet) -> None:
    model = next(m.model_id for m in net.genesis.models if m.name == "digits_int8")
    user = net.account(6)
    x = Tensor.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 64)).astype(np.uint8))
    net.step()
    block = net.propose([net.tx(user, Infer(model, (x,), Amount(0)), gas_limit=2_000_000) for _ in range(2)])
    assert [r.status for r in block.results[:2]] == [TxStatus.OK, TxStatus.OK]
    assert net.apps[1].validate_block(block).is_valid
    state = net.apps[1].view()
    applied = apply_block(state, block)
    assert applied.receipts == block.results
    assert applied.receipts[1] is block.results[1]  # the committed value, reused

    for delta in (-1, 1):  # the outputs are the block's own: only the gas differs from execution
        forged = _with_result(block, 1, replace(block.results[1], gas_used=Gas(int(block.results[1].gas_used) + delta)))
        verdict = net.apps[1].validate_block(forged)
        assert not verdict.is_valid and verdict.kind.value == "invalid" and 1 in verdict.bad_txs
        with pytest.raises(InvalidBlock, match="result of tx 1 differs"):
            apply_block(net.apps[1].view(), forged)
