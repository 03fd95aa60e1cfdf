"""Proof of inference: challenge, commitment, reveal two heights later, scoring, slashing, jailing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.hashing import ZERO_HASH, sha256
from core.tensor import DType, Tensor
from core.types import Address, PublicKeyBytes
from tests.vm.devnet import ABSENT, Devnet
from vm.poi import compute_challenge_inputs, compute_commitment, compute_seed, has_high_entropy
from vm.txs import TensorSpec, Unjail

pytestmark = pytest.mark.vm


def test_challenge_is_deterministic_and_bound_to_height_and_block() -> None:
    spec = (TensorSpec("challenge", DType.UINT8, (1, 64)),)
    seed = compute_seed("c", 5, ZERO_HASH)
    assert compute_challenge_inputs(seed, spec) == compute_challenge_inputs(compute_seed("c", 5, ZERO_HASH), spec)
    assert seed != compute_seed("c", 6, ZERO_HASH)
    assert seed != compute_seed("c", 5, sha256(b"other block"))
    assert seed != compute_seed("d", 5, ZERO_HASH)
    (tensor,) = compute_challenge_inputs(seed, spec)
    assert tensor.shape == (1, 64) and len(set(tensor.data)) > 20


def test_commitment_binds_the_signer() -> None:
    out = Tensor(DType.INT32, (1, 2), b"\x01" * 8)
    a, b = Address(b"\x01" * 20), Address(b"\x02" * 20)
    assert compute_commitment(out, a, 3) != compute_commitment(out, b, 3)
    assert compute_commitment(out, a, 3) != compute_commitment(out, a, 4)
    assert has_high_entropy(out) and not has_high_entropy(Tensor(DType.INT32, (1,), b"\0" * 4))


def test_nodes_agree_on_the_challenge_output(net: Devnet) -> None:
    net.step()
    outputs = [app.challenge_output(2) for app in net.apps]
    assert outputs[0] is not None and outputs[0] == outputs[1]
    assert has_high_entropy(outputs[0])


def _advance_to_scoring(net: Devnet) -> None:
    while net.height < 2:
        net.step()


def test_lazy_validators_are_scored_wrong_and_slashed_absent_ones_miss(net: Devnet) -> None:
    _advance_to_scoring(net)
    honest, copier, guesser, sleeper = (v.address for v in net.apps[0].validator_set(net.height + 1).entries)
    h = net.height + 1
    block_h = net.propose()
    assert all(v.is_valid for v in net.validate(block_h))
    copied = net.apps[0].poi_commitment(h, honest)
    net.commit(block_h, poi={copier: copied, guesser: sha256(b"a guess"), sleeper: ABSENT})
    net.step()  # block h+1 fixes the commitments of h in its last commit
    before = {a: net.apps[0].view().validator(a) for a in (honest, copier, guesser, sleeper)}
    supply_before = net.apps[0].view().supply()
    block = net.step()  # block h+2 reveals challenge h and scores them
    assert block.header.poi_reveal == net.apps[0].challenge_output(h)
    after = {a: net.apps[0].view().validator(a) for a in (honest, copier, guesser, sleeper)}
    bps = net.genesis.params.slashing.poi_wrong_slash_bps
    for lazy in (copier, guesser):
        assert after[lazy].poi_wrong == before[lazy].poi_wrong + 1  # type: ignore[union-attr]
        assert after[lazy].stake == before[lazy].stake - before[lazy].stake * bps // 10_000  # type: ignore[union-attr]
        assert after[lazy].miss_bits & 1  # type: ignore[union-attr]
    assert after[sleeper].poi_missed == before[sleeper].poi_missed + 1  # type: ignore[union-attr]
    assert after[sleeper].stake == before[sleeper].stake  # type: ignore[union-attr]  # absence never slashes
    assert after[honest].poi_correct == before[honest].poi_correct + 1  # type: ignore[union-attr]
    assert after[honest].rewards > before[honest].rewards  # type: ignore[union-attr]
    assert after[copier].rewards == before[copier].rewards  # type: ignore[union-attr]
    supply = net.apps[0].view().supply()
    assert supply.burned > supply_before.burned
    net.assert_supply_conserved()


def test_enough_misses_jail_and_unjail_restores(net: Devnet) -> None:
    _advance_to_scoring(net)
    sleeper = net.apps[0].validator_set(net.height + 1).entries[-1].address
    owner_index = next(i for i, v in enumerate(net.genesis.validators)
                       if Address(sha256(v.public_key)[:20]) == sleeper)
    max_misses = net.genesis.params.slashing.max_misses
    for _ in range(max_misses):
        net.step(poi={sleeper: None})  # precommits without an answer: a miss each
    net.step()
    net.step()
    record = net.apps[0].view().validator(sleeper)
    assert record is not None and record.jailed and record.poi_missed == max_misses
    jailed_at = net.height
    assert sleeper in net.apps[0].validator_set(jailed_at + 1)
    assert sleeper not in net.apps[0].validator_set(jailed_at + 2)
    while net.height < record.jailed_until:
        net.step()
    owner = net.account(owner_index)
    pk = PublicKeyBytes(net.genesis.validators[owner_index].public_key)
    block = net.step([net.tx(owner, Unjail(pk), gas_limit=10_000)])
    assert block.results[0].log == ""
    assert sleeper in net.apps[0].validator_set(net.height + 2)
    net.assert_supply_conserved()


def test_proposer_earns_a_bonus_per_included_signature(net: Devnet) -> None:
    net.step()
    block = net.propose()
    proposer = net.apps[0].view().validator(block.header.proposer)
    assert proposer is not None and block.last_commit is not None
    before = net.apps[0].view().account(proposer.owner).balance
    net.validate(block)
    net.commit(block)
    record = net.apps[0].view().validator(block.header.proposer)
    poi_reward = record.rewards - proposer.rewards  # type: ignore[union-attr]
    bonus = len(block.last_commit.precommits) * net.genesis.params.rewards.proposer_bonus_per_signature
    assert net.apps[0].view().account(proposer.owner).balance == before + bonus + poi_reward


def test_a_wrong_reveal_makes_the_block_invalid(net: Devnet) -> None:
    _advance_to_scoring(net)
    net.step()
    block = net.propose()
    assert block.header.poi_reveal is not None
    reveal = block.header.poi_reveal
    forged = replace(block, header=replace(block.header, poi_reveal=Tensor(reveal.dtype, reveal.shape,
                                                                            bytes(len(reveal.data)))))
    verdict = net.apps[1].validate_block(forged)
    assert verdict.kind.value == "invalid" and "reveal" in verdict.reason

