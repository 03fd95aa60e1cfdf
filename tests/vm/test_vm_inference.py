"""Inference in blocks: committed outputs, tolerance, numeric failures, wrong outputs and their evidence."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.block import Block, compute_results_root
from core.evidence import WrongInference
from core.header import TxResult, TxStatus
from core.tensor import DType, Tensor
from core.types import Amount, Hash32
from tests.vm.devnet import Devnet
from tests.vm.helpers import log_model, meta_for, spec, upload_txs
from vm.evidence import make_wrong_inference
from vm.state import RegistrationData
from vm.txs import Infer, ModelClass

pytestmark = pytest.mark.vm


def model_id(net: Devnet, name: str) -> Hash32:
    return next(m.model_id for m in net.genesis.models if m.name == name)


def digits_x(seed: int = 0) -> Tensor:
    return Tensor.from_numpy(np.random.default_rng(seed).random((1, 64), dtype=np.float32))


def digits_u(seed: int = 0) -> Tensor:
    return Tensor.from_numpy(np.random.default_rng(seed).integers(0, 256, (1, 64)).astype(np.uint8))


def with_result(block: Block, index: int, result: TxResult) -> Block:
    results = tuple(result if i == index else r for i, r in enumerate(block.results))
    return replace(block, results=results, header=replace(block.header, results_root=compute_results_root(results)))


def shifted(result: TxResult, delta: int) -> TxResult:
    out = result.outputs[0].to_numpy().copy()
    out.flat[0] += delta
    return replace(result, outputs=(Tensor.from_numpy(out),))


def test_exact_and_tolerant_inferences_commit_their_outputs(net: Devnet) -> None:
    user = net.account(6)
    block = net.step([net.tx(user, Infer(model_id(net, "digits_int8"), (digits_u(),), Amount(0)), gas_limit=2_000_000),
                      net.tx(user, Infer(model_id(net, "digits_mlp"), (digits_x(),), Amount(0)), gas_limit=2_000_000)])
    exact, tolerant = block.results
    assert exact.status is TxStatus.OK and exact.outputs[0].dtype == DType.INT32
    assert tolerant.status is TxStatus.OK and tolerant.outputs[0].dtype == DType.INT64  # on the 2^k grid
    gas = net.genesis.params.vm
    record = net.apps[0].view().model(model_id(net, "digits_int8"))
    assert record is not None
    # The block's first inference on the model also pays its load.
    assert exact.gas_used == gas.gas_infer_base + 64 * gas.gas_infer_per_io_byte + record.gas_per_call + record.gas_load


def test_static_rules_fail_an_inference_without_running_it(net: Devnet) -> None:
    user = net.account(6)
    wrong_shape = Tensor.from_numpy(np.zeros((1, 63), dtype=np.float32))
    block = net.step([
        net.tx(user, Infer(model_id(net, "digits_mlp"), (wrong_shape,), Amount(0)), gas_limit=2_000_000),
        net.tx(user, Infer(Hash32(b"\x07" * 32), (digits_x(),), Amount(0)), gas_limit=2_000_000),
        net.tx(user, Infer(model_id(net, "digits_mlp"), (digits_x(),), Amount(0)), gas_limit=2_000),
    ])
    assert [r.log for r in block.results] == ["inputs do not match the model's declared inputs", "unknown model",
                                              "out of gas"]
    assert block.results[2].status is TxStatus.OUT_OF_GAS


def test_a_non_finite_output_fails_the_inference_on_every_node(net: Devnet) -> None:
    owner = net.account(5)
    model_bytes = log_model()
    meta = meta_for("log", model_bytes, [spec("x", DType.FLOAT32, (1, 4))], [spec("y", DType.FLOAT32, (1, 4))],
                    ModelClass.TOLERANT, [[np.array([[1, 2, 3, 4]], np.float32)]], grid_k=16, tol_abs=64,
                    tol_rel_ppm=100)
    registered = net.step(upload_txs(owner, model_bytes, meta, params=net.genesis.params,
                                     chain_id=net.genesis.chain_id, first_nonce=0))
    assert registered.results[0].status is TxStatus.OK, registered.results[0].log
    log_id = RegistrationData.decode(registered.results[0].data).model_id
    bad = Tensor.from_numpy(np.array([[1, -1, 0, 2]], np.float32))
    good = Tensor.from_numpy(np.array([[1, 2, 4, 8]], np.float32))
    user = net.account(6)
    block = net.step([net.tx(user, Infer(log_id, (bad,), Amount(0)), gas_limit=2_000_000),
                      net.tx(user, Infer(log_id, (good,), Amount(0)), gas_limit=2_000_000)])
    assert block.results[0].status is TxStatus.INFERENCE_FAILED and block.results[0].log == "NonFiniteOutput"
    assert block.results[0].gas_used > 0
    assert block.results[1].status is TxStatus.OK


def test_tolerant_output_within_tolerance_is_accepted_beyond_it_names_the_transaction(net: Devnet) -> None:
    user = net.account(6)
    txs = [net.tx(net.account(7), Infer(model_id(net, "digits_int8"), (digits_u(1),), Amount(0)), gas_limit=2_000_000),
           net.tx(user, Infer(model_id(net, "digits_mlp"), (digits_x(),), Amount(0)), gas_limit=2_000_000)]
    block = net.propose(txs)
    honest = block.results[1]
    near = with_result(block, 1, shifted(honest, 1))  # one grid unit: within t_abs
    assert net.apps[1].validate_block(near).is_valid
    far = with_result(block, 1, shifted(honest, 10**6))
    verdict = net.apps[1].validate_block(far)
    assert verdict.kind.value == "invalid" and verdict.bad_txs == (1,) and verdict.wrong_outputs == ()
    # The chain's answer is the proposer's: committing the near block commits its values.
    net.commit(near)
    assert net.blocks[-1].results[1] == shifted(honest, 1)


def test_a_wrong_exact_output_becomes_evidence_and_is_punished(net: Devnet) -> None:
    user = net.account(6)
    block = net.propose([net.tx(user, Infer(model_id(net, "digits_int8"), (digits_u(),), Amount(0)),
                                gas_limit=2_000_000)])
    wrong = with_result(block, 0, shifted(block.results[0], 1))
    verdict = net.apps[1].validate_block(wrong)
    assert verdict.kind.value == "invalid" and verdict.bad_txs == (0,) and verdict.wrong_outputs == (0,)
    signed = net.sign_proposal(wrong)
    (evidence,) = net.apps[1].wrong_inference_evidence(signed)
    assert evidence == make_wrong_inference(signed, 0)
    assert net.apps[0].is_valid_evidence(evidence) and net.apps[1].is_valid_evidence(evidence)
    # The honest output proves nothing.
    assert not net.apps[1].is_valid_evidence(make_wrong_inference(net.sign_proposal(block), 0))
    forged: WrongInference = replace(evidence, result=block.results[0])
    assert not net.apps[1].is_valid_evidence(forged)
    # The chain moves on with the honest block; the next block carries the evidence.
    net.commit(block)
    offender = wrong.header.proposer
    before = net.apps[0].view().validator(offender)
    punished_block = net.step(evidence=[evidence])
    assert punished_block.evidence == (evidence,)
    after = net.apps[0].view().validator(offender)
    assert before is not None and after is not None
    bps = net.genesis.params.slashing.wrong_inference_slash_bps
    assert after.jailed and after.stake == before.stake - before.stake * bps // 10_000
    assert offender not in net.apps[0].validator_set(net.height + 2)
    # The same offence is not punished twice.
    again = net.propose(evidence=[evidence])
    assert again.evidence == ()
    net.assert_supply_conserved()


def test_outputs_that_overflow_the_block_push_transactions_to_later_blocks(tmp_path: Path) -> None:
    from tests.vm.devnet import devnet_genesis
    from tests.vm.helpers import wide_meta, wide_model

    genesis = devnet_genesis(4, consensus={"max_block_bytes": 14_000}, vm={"max_infer_input_bytes": 8_000})
    net = Devnet.start(tmp_path, genesis, nodes=2)
    try:
        owner, user = net.account(5), net.account(6)
        model_bytes = wide_model()
        wide_id = net.register(owner, model_bytes, wide_meta(model_bytes))
        txs = [net.tx(user, Infer(wide_id, (Tensor.from_numpy(np.array([[i]], np.int32)),), Amount(0)),
                      gas_limit=2_000_000) for i in range(12)]
        included = 0
        while included < len(txs):
            block = net.step(txs[included:])
            assert len(block.encode()) <= 14_000 and block.txs
            assert all(r.status is TxStatus.OK and r.outputs[0].shape == (1, 512) for r in block.results)
            included += len(block.txs)
        assert net.height > 3  # it took several blocks
    finally:
        net.close()
