"""Equivocation evidence: checked, included once, slashed and tombstoned."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.block import compute_evidence_hash
from core.evidence import DuplicateVote
from core.hashing import sha256
from core.types import Amount, Height, PublicKeyBytes, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Vote, VoteType
from tests.vm.devnet import Devnet
from vm.txs import Stake

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
