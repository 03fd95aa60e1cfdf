"""Evidence on the real VM: equivocation checked, included once, slashed and tombstoned; wrong-inference
evidence prechecked without running a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.block import compute_evidence_hash, compute_results_root
from core.evidence import DuplicateVote
from core.hashing import sha256
from core.tensor import Tensor
from core.types import Amount, Height, PublicKeyBytes, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Vote, VoteType
from tests.vm.devnet import Devnet
from vm.evidence import make_wrong_inference
from vm.execute import infer_gas
from vm.genesis import Genesis
from vm.sandbox.executor import Job, JobResult, LocalExecutor
from vm.txs import Infer, Stake

pytestmark = pytest.mark.vm


def double_vote(net: Devnet, index: int, height: int) -> DuplicateVote:
    entry = net.apps[0].validator_set(Height(height)).entries[index]
    key = net.keys[entry.address]
    votes = [Vote(VoteType.PREVOTE, Height(height), Round(0), sha256(bytes([i])), Timestamp(1), key.public_key, None,
                  ZERO_SIGNATURE).signed(key, net.genesis.chain_id) for i in (1, 2)]
    return DuplicateVote(votes[0], votes[1])


def test_double_vote_is_slashed_once_and_tombstones(net: Devnet) -> None:
    net.step()
    evidence = double_vote(net, 0, 1)
    offender = evidence.vote_a.validator_address
    assert all(app.is_valid_evidence(evidence) for app in net.apps)
    before = net.apps[0].view().validator(offender)
    block = net.step(evidence=[evidence])
    assert block.evidence == (evidence,)
    after = net.apps[0].view().validator(offender)
    assert before is not None and after is not None and after.tombstoned and after.jailed
    bps = net.genesis.params.slashing.double_sign_slash_bps
    assert after.stake == before.stake - before.stake * bps // 10_000
    assert offender not in net.apps[0].validator_set(net.height + 2)
    assert net.propose(evidence=[evidence]).evidence == ()  # never twice
    owner_index = next(i for i, v in enumerate(net.genesis.validators) if v.public_key == evidence.vote_a.validator)
    stake = net.step([net.tx(net.account(owner_index), Stake(PublicKeyBytes(evidence.vote_a.validator), Amount(1)),
                             gas_limit=10_000)])
    assert stake.results[0].log == "the validator is tombstoned"
    net.assert_supply_conserved()


def test_evidence_that_proves_nothing_is_refused(net: Devnet) -> None:
    net.step()
    good = double_vote(net, 1, 1)
    same_block = DuplicateVote(good.vote_a, good.vote_a)
    bad_sig = DuplicateVote(good.vote_a, replace(good.vote_b, signature=good.vote_a.signature))
    swapped = DuplicateVote(good.vote_b, good.vote_a)  # not in canonical order: consensus refuses it too
    for ev in (same_block, bad_sig, swapped):
        assert not net.apps[0].is_valid_evidence(ev)
        assert net.propose(evidence=[ev]).evidence == ()
    # A proposer that includes it anyway proposes an invalid block.
    block = net.propose()
    forged = replace(block, evidence=(bad_sig,),
                     header=replace(block.header, evidence_hash=compute_evidence_hash((bad_sig,))))
    verdict = net.apps[1].validate_block(forged)
    assert verdict.kind.value == "invalid" and "evidence" in verdict.reason


class CountingExecutor(LocalExecutor):
    """The real in-process sandbox executor, counting the model jobs it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs = 0

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.jobs += len(jobs)
        return super().run_batch(jobs)


def test_wrong_inference_evidence_is_prechecked_without_running_a_model(tmp_path: Path, genesis: Genesis) -> None:
    """Issue 9.7 (VM side): `precheck_wrong_inference` refuses a replayed honest claim, a claim about a
    transaction that is not committed, and a forged proof, and lets a real one through, all before any model
    runs; `is_valid_evidence` then re-runs the model once."""
    counting = CountingExecutor()
    net = Devnet.start(tmp_path, genesis, executors=[LocalExecutor, lambda: counting])
    try:
        digits = next(m.model_id for m in net.genesis.models if m.name == "digits_int8")
        inputs = Tensor.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 64)).astype(np.uint8))
        record = net.apps[0].view().model(digits)
        assert record is not None
        gas = infer_gas(net.genesis.params, record, (inputs,))  # the quote includes the model's first-use load
        block = net.propose([net.tx(net.account(6), Infer(digits, (inputs,), Amount(0)), gas_limit=gas)])
        out = block.results[0].outputs[0].to_numpy().copy()
        out.flat[0] += 1
        results = (replace(block.results[0], outputs=(Tensor.from_numpy(out),)),)
        wrong = replace(block, results=results, header=replace(block.header, results_root=compute_results_root(results)))
        real = make_wrong_inference(net.sign_proposal(wrong), 0)
        replayed = make_wrong_inference(net.sign_proposal(block), 0)  # a public honest proposal, "claimed" wrong
        forged = replace(real, result=block.results[0])  # the proof no longer matches the signed header
        judge = net.apps[1]
        before = counting.jobs
        # Nothing is committed yet: no claim about the transaction can be checked cheaply.
        assert judge.precheck_wrong_inference(real, None) == "the transaction is not in a committed block"
        net.commit(block)
        committed = net.blocks[-1].results[0]
        assert judge.precheck_wrong_inference(real, committed) is None
        assert judge.precheck_wrong_inference(replayed, committed) == "the claimed result is the committed one"
        assert "result is not in the block" in (judge.precheck_wrong_inference(forged, committed) or "")
        assert counting.jobs == before, "the precheck ran a model"
        assert judge.is_valid_evidence(real)
        assert counting.jobs == before + 1
        # Once per piece of evidence: proposing with it again, or validating a block that carries it, runs
        # no model.
        assert judge.is_valid_evidence(real)
        assert counting.jobs == before + 1
    finally:
        net.close()
