"""Slashing on the real VM (issue 9.6): stake bonded at the offence height stays slashable while it
unbonds, evidence never outlives the unbonding period, and a validator that left the set is still
punished for an offence committed while it was in it (Cosmos x/slashing semantics)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.block import compute_evidence_hash
from core.errors import ConfigError
from core.evidence import DuplicateVote
from core.hashing import sha256
from core.types import Address, Amount, Height, PublicKeyBytes, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Vote, VoteType
from tests.vm.devnet import Devnet, devnet_genesis
from vm.genesis import Genesis
from vm.params import BPS
from vm.state import UnbondingQueue, unbonding_key
from vm.txs import Stake, Unstake

pytestmark = pytest.mark.vm

UNBONDING = 6
MAX_AGE = 5


@pytest.fixture(scope="module")
def slashing_genesis() -> Genesis:
    return devnet_genesis(4, staking={"unbonding_blocks": UNBONDING},
                          slashing={"max_evidence_age": MAX_AGE, "jail_blocks": 2})


@pytest.fixture
def chain(tmp_path: Path, slashing_genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, slashing_genesis, nodes=2)
    yield devnet
    devnet.close()


def double_vote(net: Devnet, address: Address, height: int) -> DuplicateVote:
    key = net.keys[address]
    votes = sorted((Vote(VoteType.PREVOTE, Height(height), Round(0), sha256(bytes([i])), Timestamp(1),
                         key.public_key, None, ZERO_SIGNATURE).signed(key, net.genesis.chain_id) for i in (1, 2)),
                   key=lambda v: v.encode())
    return DuplicateVote(votes[0], votes[1])


def owner_index(net: Devnet, address: Address) -> int:
    return next(i for i, v in enumerate(net.genesis.validators) if net.keys[address].public_key == v.public_key)


def unbonding_of(net: Devnet, address: Address) -> int:
    view = net.apps[0].view()
    total = 0
    for h in range(net.height + 1, net.height + UNBONDING + 2):
        queue = view.get(unbonding_key(h), UnbondingQueue)
        total += 0 if queue is None else sum(e.amount for e in queue.entries if e.validator == address)
    return total


def test_unstaking_after_equivocating_does_not_escape_the_slash(chain: Devnet) -> None:
    """Equivocate at h=1, unstake everything in block 2, evidence lands in block 3: the full fraction of
    the stake bonded at h is slashed, taken from the unbonding entry; the owner gets back only the rest."""
    net = chain
    net.step()  # block 1: the offence height
    offender = next(a for a in net.keys if a not in (net.proposer_for(2), net.proposer_for(3)))
    stake = net.apps[0].view().validator(offender).stake  # type: ignore[union-attr]
    evidence = double_vote(net, offender, 1)
    owner = net.account(owner_index(net, offender))
    unstake = net.tx(owner, Unstake(PublicKeyBytes(net.keys[offender].public_key), Amount(stake)),
                     gas_limit=10_000)
    block2 = net.step([unstake])
    assert block2.results[0].status == 0, block2.results[0].log
    assert net.apps[0].view().validator(offender).stake == 0  # type: ignore[union-attr]
    assert unbonding_of(net, offender) == stake
    block3 = net.step(evidence=[evidence])
    assert block3.evidence == (evidence,)
    expected = stake * net.genesis.params.slashing.double_sign_slash_bps // BPS
    record = net.apps[0].view().validator(offender)
    assert record is not None and record.tombstoned
    print(f"slashed {record.slashed} of a stake of {stake} (expected {expected})")
    assert record.slashed == expected == 500_000_000
    assert unbonding_of(net, offender) == stake - expected
    net.assert_supply_conserved()
    # Unbonding finishes in block 2 + UNBONDING: the owner gets back the stake less the slash.
    while net.height < 1 + UNBONDING:
        net.step()
    balance = net.apps[0].view().account(owner.address).balance
    net.step()
    assert net.apps[0].view().account(owner.address).balance == balance + stake - expected
    net.assert_supply_conserved()


def test_a_validator_that_left_the_set_is_still_slashed(chain: Devnet) -> None:
    """It unbonds everything right after equivocating and is out of the set when its evidence lands, at the
    very end of the window: still slashed, the owner's unbonding entry pays."""
    net = chain
    net.step()
    offender = next(a for a in net.keys if a != net.proposer_for(2))
    stake = net.apps[0].view().validator(offender).stake  # type: ignore[union-attr]
    owner = net.account(owner_index(net, offender))
    net.step([net.tx(owner, Unstake(PublicKeyBytes(net.keys[offender].public_key), Amount(stake)),
                     gas_limit=10_000)])
    while net.height < 1 + MAX_AGE - 1:
        net.step()
    landing = net.height + 1
    assert landing - 1 == MAX_AGE
    assert offender not in net.apps[0].validator_set(Height(landing))
    evidence = double_vote(net, offender, 1)
    block = net.step(evidence=[evidence])
    assert block.evidence == (evidence,)
    record = net.apps[0].view().validator(offender)
    expected = stake * net.genesis.params.slashing.double_sign_slash_bps // BPS
    assert record is not None and record.tombstoned and record.slashed == expected
    assert unbonding_of(net, offender) == stake - expected
    net.assert_supply_conserved()


def test_stake_bonded_after_the_offence_is_not_slashed(chain: Devnet) -> None:
    """The slash is a fraction of the stake bonded at the offence height (its power then), however much the
    owner bonds afterwards."""
    net = chain
    net.step()
    offender = next(a for a in net.keys if a != net.proposer_for(2))
    stake = net.apps[0].view().validator(offender).stake  # type: ignore[union-attr]
    owner = net.account(owner_index(net, offender))
    net.step([net.tx(owner, Stake(PublicKeyBytes(net.keys[offender].public_key), Amount(stake)), gas_limit=10_000)])
    assert net.apps[0].view().validator(offender).stake == 2 * stake  # type: ignore[union-attr]
    net.step(evidence=[double_vote(net, offender, 1)])
    record = net.apps[0].view().validator(offender)
    expected = stake * net.genesis.params.slashing.double_sign_slash_bps // BPS
    assert record is not None and record.slashed == expected and record.stake == 2 * stake - expected
    net.assert_supply_conserved()


def test_evidence_older_than_the_window_is_refused_and_the_window_fits_the_unbonding_period(
        chain: Devnet) -> None:
    net = chain
    net.step()
    offender = next(a for a in net.keys if a != net.proposer_for(2))
    evidence = double_vote(net, offender, 1)
    while net.height < 1 + MAX_AGE:
        net.step()
    assert net.propose(evidence=[evidence]).evidence == ()  # the proposer's filter
    block = net.propose()
    forged = replace(block, evidence=(evidence,),
                     header=replace(block.header, evidence_hash=compute_evidence_hash((evidence,))))
    verdict = net.apps[1].validate_block(forged)  # block validation: the same rule
    assert verdict.kind.value == "invalid" and "outside the window" in verdict.reason
    with pytest.raises(ConfigError, match=r"max_evidence_age must be between 1 and staking\.unbonding_blocks"):
        devnet_genesis(4, staking={"unbonding_blocks": UNBONDING},
                       slashing={"max_evidence_age": UNBONDING + 1})


def test_evidence_of_height_zero_is_refused(chain: Devnet) -> None:
    """No validator set signs height 0: a pair of height-0 votes is no offence, and a block carrying one
    is invalid (it used to reach the state's validator-set ring at an unwritten slot)."""
    net = chain
    net.step()
    offender = next(a for a in net.keys if a != net.proposer_for(2))
    evidence = double_vote(net, offender, 0)
    assert net.propose(evidence=[evidence]).evidence == ()
    block = net.propose()
    forged = replace(block, evidence=(evidence,),
                     header=replace(block.header, evidence_hash=compute_evidence_hash((evidence,))))
    verdict = net.apps[1].validate_block(forged)
    assert verdict.kind.value == "invalid" and "outside the window" in verdict.reason
