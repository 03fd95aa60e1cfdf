"""The minimum self-stake (docs/staking.md, "Minimum self-stake") on the real VM: two nodes on real LevelDB
apply signed transactions in blocks.

The attack: an owner bonds the minimum, lets delegators carry its validator, takes its own stake out and
then misbehaves: its slashes would fall on the delegators alone. The floor jails such a validator in the
block of the unstake (or of the slash that takes its owner below the floor), so it signs with no power
until its owner stakes back and unjails; its delegators may leave meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Address, Amount, Height, PublicKeyBytes
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_slashing import double_vote
from tools.genesis import TOKEN, make_genesis
from vm.delegation import delegations_of, self_stake
from vm.genesis import Genesis, parse_genesis
from vm.gov.params_change import apply_param_changes
from vm.gov.store import get_next_proposal_id, get_proposal
from vm.gov.types import (
    ParamChange,
    ParameterChangeProposal,
    ProposalStatus,
    SubmitProposal,
    Vote,
    VoteOption,
)
from vm.state import ValidatorPool, pool_key
from vm.txs import Delegate, EditValidator, Stake, Undelegate, Unjail, Unstake

pytestmark = pytest.mark.vm

UNBONDING = 6
MIN_SELF = 100 * TOKEN


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return devnet_genesis(4, staking={"unbonding_blocks": UNBONDING, "min_self_stake": MIN_SELF},
                          slashing={"max_evidence_age": 5, "jail_blocks": 2})


@pytest.fixture
def net(tmp_path: Path, genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, genesis, nodes=2)
    yield devnet
    devnet.close()


def run(net: Devnet, key: PrivateKey, payload: object) -> tuple[int, str]:
    block = net.step([net.tx(key, payload, gas_limit=100_000)])
    result = block.results[0]
    return int(result.status), result.log


def in_set(net: Devnet, validator: Address, height: int) -> bool:
    return all(validator in app.validator_set(Height(height)) for app in net.apps)


def new_validator(net: Devnet, owner: PrivateKey, amount: int) -> tuple[Address, PublicKeyBytes]:
    """A validator created by `owner` with `amount` of its own, terms published (delegations open)."""
    key = PrivateKey.derive("self-stake", "validator", owner.address[0])
    pk = PublicKeyBytes(key.public_key)
    net.keys[key.address] = key
    assert run(net, owner, Stake(pk, Amount(amount))) == (0, "")
    assert run(net, owner, EditValidator(pk, 500, 2_000, 100)) == (0, "")
    return key.address, pk


def test_an_owner_who_unstakes_everything_leaves_the_set_at_the_unstake(net: Devnet) -> None:
    """The attack: the owner bonds the minimum, a delegator makes its validator a member, the owner unstakes
    all its own and then double-signs. Without the floor the validator keeps the delegator's power and the
    owner has nothing left to lose. With it, the validator is jailed in the unstake's block and out of the
    set two heights later: its votes carry no power and its double-sign is no offence of a member."""
    owner, alice = net.account(6), net.account(4)
    v, pk = new_validator(net, owner, MIN_SELF)
    assert run(net, alice, Delegate(v, Amount(5_000 * TOKEN))) == (0, "")
    net.step()
    net.step()
    assert in_set(net, v, net.height + 1)  # a member, on the delegator's stake
    assert self_stake(net.apps[0].view(), v) == MIN_SELF

    assert run(net, owner, Unstake(pk, Amount(MIN_SELF))) == (0, "")
    unstaked_at = net.height
    assert not in_set(net, v, unstaked_at + 2)  # without the floor: still a member, with 5,000 of power
    record = net.apps[0].view().validator(v)
    assert record is not None and record.jailed and record.stake == 5_000 * TOKEN
    while net.height < unstaked_at + 2:
        net.step()
    # The double-sign at a height where it has left the set: no power behind the votes, nothing to punish.
    assert not in_set(net, v, net.height)
    evidence = double_vote(net, v, net.height)
    net.step()
    assert net.propose(evidence=[evidence]).evidence == ()

    # It stays out until the owner stakes back and unjails; the delegator may leave meanwhile.
    status, log = run(net, owner, Unjail(pk))
    assert status != 0 and "min_self_stake" in log
    assert run(net, owner, Stake(pk, Amount(MIN_SELF - 1))) == (0, "")
    status, log = run(net, owner, Unjail(pk))
    assert status != 0 and "min_self_stake" in log
    assert not in_set(net, v, net.height + 2)
    assert run(net, owner, Stake(pk, Amount(1))) == (0, "")
    assert run(net, owner, Unjail(pk)) == (0, "")
    assert in_set(net, v, net.height + 2)
    assert run(net, alice, Undelegate(v, Amount(5_000 * TOKEN))) == (0, "")
    assert delegations_of(net.apps[0].view(), alice.address) == []
    net.assert_supply_conserved()


def test_a_slash_that_takes_the_owner_below_the_floor_jails_the_validator(net: Devnet) -> None:
    """A wrong PoI answer slashes owner and delegator alike; an owner left below the floor by it is jailed
    in the scoring block, and comes back by staking the difference and unjailing."""
    v = sorted(net.keys)[1]
    record = net.apps[0].view().validator(v)
    assert record is not None
    owner = next(net.account(i) for i in range(4) if net.account(i).address == record.owner)
    pk = PublicKeyBytes(net.keys[v].public_key)
    alice = net.account(4)
    assert run(net, alice, Delegate(v, Amount(5_000 * TOKEN))) == (0, "")
    assert run(net, owner, Unstake(pk, Amount(record.stake - MIN_SELF))) == (0, "")
    assert self_stake(net.apps[0].view(), v) == MIN_SELF
    assert not net.apps[0].view().validator(v).jailed  # type: ignore[union-attr]  # at the floor: allowed
    net.step()
    net.step()
    block = net.propose()
    net.commit(block, poi={v: sha256(b"a guess")})
    net.step()
    net.step()  # scores the wrong answer
    record = net.apps[0].view().validator(v)
    assert record is not None and record.poi_wrong == 1 and record.jailed
    assert self_stake(net.apps[0].view(), v) < MIN_SELF
    assert not in_set(net, v, net.height + 2)
    short = MIN_SELF - self_stake(net.apps[0].view(), v)
    while net.height < record.jailed_until:
        net.step()
    status, log = run(net, owner, Unjail(pk))
    assert status != 0 and "min_self_stake" in log
    assert run(net, owner, Stake(pk, Amount(short + 1))) == (0, "")
    assert run(net, owner, Unjail(pk)) == (0, "")
    assert in_set(net, v, net.height + 2)
    net.assert_supply_conserved()


def test_a_new_validator_starts_with_at_least_the_floor(net: Devnet) -> None:
    owner = net.account(7)
    key = PrivateKey.derive("self-stake", "validator", 99)
    net.keys[key.address] = key
    pk = PublicKeyBytes(key.public_key)
    status, log = run(net, owner, Stake(pk, Amount(MIN_SELF - 1)))
    assert status != 0 and "min_self_stake" in log
    assert net.apps[0].view().validator(key.address) is None
    assert run(net, owner, Stake(pk, Amount(MIN_SELF))) == (0, "")
    net.assert_supply_conserved()


@pytest.mark.parametrize("value", [0, 1_000 * TOKEN + 1])
def test_genesis_refuses_a_floor_of_zero_or_above_the_candidacy_minimum(value: int) -> None:
    doc = make_genesis(4, overrides={"staking": {"min_self_stake": value}})
    with pytest.raises(ConfigError, match="min_self_stake must be between 1 and"):
        parse_genesis(doc)


def test_a_governance_raise_of_the_floor_jails_an_owner_below_it(tmp_path: Path) -> None:
    """The floor is governable; a raise reaches a member at once (PoI scoring writes its record every
    block), so an owner who kept only the old floor is jailed; the others are untouched."""
    genesis = devnet_genesis(4, staking={"unbonding_blocks": UNBONDING, "min_self_stake": MIN_SELF},
                             slashing={"max_evidence_age": 5},
                             gov={"voting_blocks": 3, "max_deposit_blocks": 3, "min_deposit": 1_000})
    net = Devnet.start(tmp_path, genesis, nodes=2)
    try:
        v = sorted(net.keys)[2]
        record = net.apps[0].view().validator(v)
        assert record is not None
        owner = next(net.account(i) for i in range(4) if net.account(i).address == record.owner)
        pk = PublicKeyBytes(net.keys[v].public_key)
        assert run(net, net.account(4), Delegate(v, Amount(5_000 * TOKEN))) == (0, "")
        assert run(net, owner, Unstake(pk, Amount(record.stake - 2 * MIN_SELF))) == (0, "")
        raised = 1_000 * TOKEN  # the most the floor may be: min_validator_stake
        pid = get_next_proposal_id(net.apps[0].view())
        change = ParameterChangeProposal((ParamChange("staking.min_self_stake", raised),))
        assert run(net, net.account(5), SubmitProposal("raise", "why", change, Amount(1_000))) == (0, "")
        voters = [i for i in range(4) if net.account(i).address != owner.address]
        block = net.step([net.tx(net.account(i), Vote(pid, VoteOption.YES)) for i in voters])
        assert all(r.status == 0 for r in block.results), [r.log for r in block.results]
        found = get_proposal(net.apps[0].view(), pid)
        assert found is not None
        while net.height < found.voting_end + 2:
            net.step()
        passed = get_proposal(net.apps[0].view(), pid)
        assert passed is not None and passed.status is ProposalStatus.PASSED, passed
        view = net.apps[0].view()
        assert view.params().staking.min_self_stake == raised
        assert view.validator(v).jailed  # type: ignore[union-attr]
        assert not in_set(net, v, net.height + 2)
        assert not any(view.validator(o).jailed for o in net.keys if o != v)  # type: ignore[union-attr]
        net.assert_supply_conserved()
    finally:
        net.close()


def test_governance_may_change_the_floor_within_its_bounds(genesis: Genesis) -> None:
    changed = apply_param_changes(genesis.params, [ParamChange("staking.min_self_stake", 500 * TOKEN)])
    assert changed.staking.min_self_stake == 500 * TOKEN
    with pytest.raises(ValueError, match="min_self_stake"):
        apply_param_changes(genesis.params, [ParamChange("staking.min_self_stake", 0)])


def test_an_owner_may_raise_its_own_floor_never_lower_it_and_is_jailed_below_it(net: Devnet) -> None:
    """The per-validator floor (edit-validator's `min_self_stake`): raised above the chain-wide one, never
    lowered (delegators chose the validator on that promise), never above the owner's own stake. An owner
    who unstakes below it, though still above the chain-wide floor, is jailed as by that floor, and unjail
    needs it met."""
    owner, alice = net.account(6), net.account(4)
    v, pk = new_validator(net, owner, 3 * MIN_SELF)
    promised = 2 * MIN_SELF
    assert run(net, owner, EditValidator(pk, 500, 2_000, 100, Amount(promised))) == (0, "")
    assert run(net, alice, Delegate(v, Amount(5_000 * TOKEN))) == (0, "")
    status, log = run(net, owner, EditValidator(pk, 500, 2_000, 100, Amount(promised - 1)))
    assert status != 0 and log == f"the self-stake floor can only be raised: it is {promised}, not {promised - 1}"
    status, log = run(net, owner, EditValidator(pk, 500, 2_000, 100, Amount(3 * MIN_SELF + 1)))
    assert status != 0 and "above the owner's own stake" in log
    assert run(net, owner, EditValidator(pk, 500, 2_000, 100)) == (0, "")  # 0 keeps it; same rate: no wait
    assert net.apps[0].view().get(pool_key(v), ValidatorPool).min_self_stake == promised  # type: ignore[union-attr]

    assert run(net, owner, Unstake(pk, Amount(MIN_SELF + 1))) == (0, "")  # own: 2 x MIN_SELF - 1
    record = net.apps[0].view().validator(v)
    assert record is not None and record.jailed
    assert self_stake(net.apps[0].view(), v) == promised - 1 > MIN_SELF  # above the chain-wide floor
    assert not in_set(net, v, net.height + 2)
    status, log = run(net, owner, Unjail(pk))
    assert status != 0 and "below its floor" in log
    assert run(net, owner, Stake(pk, Amount(1))) == (0, "")
    assert run(net, owner, Unjail(pk)) == (0, "")
    assert in_set(net, v, net.height + 2)
    net.assert_supply_conserved()
