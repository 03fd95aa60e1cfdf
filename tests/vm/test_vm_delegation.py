"""Delegation on the real VM (issue 15): signed transactions in blocks applied by two nodes on real LevelDB.

Voting power counts delegations; rewards are shared with commission and withdrawn lazily; a slash hits
delegators pro rata, including stake they undelegated or redelegated after the offence (the attacks); the
commission moves only within the terms fixed at creation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.hashing import sha256
from core.header import TxStatus
from core.keys import PrivateKey
from core.types import Address, Amount, Height, PublicKeyBytes
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_slashing import double_vote
from tools.genesis import TOKEN, make_genesis
from vm.delegation import delegations_of, pending_rewards, self_stake, tx_gas
from vm.genesis import Genesis, parse_genesis
from vm.gov.params_change import apply_param_changes
from vm.gov.types import ParamChange
from vm.params import BPS
from vm.state import MAX_DELEGATIONS_PER_ACCOUNT, UnbondingQueue, unbonding_key
from vm.txs import Delegate, EditValidator, Redelegate, Stake, Transfer, Undelegate, Unstake, WithdrawRewards

pytestmark = pytest.mark.vm

UNBONDING = 6
MAX_AGE = 5
CHANGE_BLOCKS = 3


@pytest.fixture(scope="module")
def delegation_genesis() -> Genesis:
    return devnet_genesis(4, staking={"unbonding_blocks": UNBONDING, "commission_change_blocks": CHANGE_BLOCKS},
                          slashing={"max_evidence_age": MAX_AGE, "jail_blocks": 2})


@pytest.fixture
def net(tmp_path: Path, delegation_genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, delegation_genesis, nodes=2)  # genesis publishes every validator's terms
    yield devnet
    devnet.close()


def test_no_one_delegates_before_the_owner_publishes_terms(tmp_path: Path) -> None:
    """The attack: a first delegation of one unit would fix the terms at their defaults before the owner's
    edit-validator lands. Delegations (and redelegations) wait for the owner's terms."""
    net = Devnet.start(tmp_path, parse_genesis(make_genesis(4, commission=None)), nodes=2)
    try:
        v = validators(net)[0]
        status, log = run(net, delegator(net), Delegate(v, Amount(1)))
        assert status != 0 and "commission terms" in log
        assert run(net, owner_of(net, v), EditValidator(pubkey(net, v), 500, 2_000, 100))[0] == 0
        assert run(net, delegator(net), Delegate(v, Amount(1)))[0] == 0
        net.assert_supply_conserved()
    finally:
        net.close()


def run(net: Devnet, key: PrivateKey, payload: object, *, evidence: tuple[object, ...] = ()) -> tuple[int, str]:
    block = net.step([net.tx(key, payload, gas_limit=100_000)], evidence=evidence)  # type: ignore[arg-type]
    result = block.results[0]
    return int(result.status), result.log


def owner_of(net: Devnet, validator: Address) -> PrivateKey:
    record = net.apps[0].view().validator(validator)
    assert record is not None
    return next(net.account(i) for i in range(8) if net.account(i).address == record.owner)


def pubkey(net: Devnet, validator: Address) -> PublicKeyBytes:
    return PublicKeyBytes(net.keys[validator].public_key)


def validators(net: Devnet) -> list[Address]:
    return sorted(net.keys)


def delegator(net: Devnet, i: int = 0) -> PrivateKey:
    return net.account(4 + i)  # accounts 4.. own no validator


def unbonding_to(net: Devnet, owner: Address) -> int:
    view = net.apps[0].view()
    total = 0
    for h in range(net.height + 1, net.height + UNBONDING + 2):
        queue = view.get(unbonding_key(h), UnbondingQueue)
        total += 0 if queue is None else sum(e.amount for e in queue.entries if e.owner == owner)
    return total


def test_delegation_adds_voting_power_two_heights_later(net: Devnet) -> None:
    v = validators(net)[0]
    alice = delegator(net)
    power = net.apps[0].validator_set(Height(1)).get(v).power  # type: ignore[union-attr]
    status, log = run(net, alice, Delegate(v, Amount(5_000 * TOKEN)))
    assert status == 0, log
    h = net.height
    assert net.apps[0].validator_set(Height(h + 1)).get(v).power == power  # type: ignore[union-attr]
    assert net.apps[0].validator_set(Height(h + 2)).get(v).power == power + 5_000  # type: ignore[union-attr]
    view = net.apps[0].view()
    assert delegations_of(view, alice.address) == [(v, 5_000 * TOKEN)]
    assert self_stake(view, v) == 10_000 * TOKEN
    net.assert_supply_conserved()


def test_rewards_are_shared_with_commission_and_withdrawn(net: Devnet) -> None:
    """Commission 10%, a delegator with a third of the stake: of every reward after commission it is owed a
    third, collected by withdraw-rewards; the owner's part is paid at once."""
    v = validators(net)[1]
    owner, alice = owner_of(net, v), delegator(net)
    assert run(net, owner, EditValidator(pubkey(net, v), 1_000, 2_000, 500))[0] == 0
    assert run(net, alice, Delegate(v, Amount(5_000 * TOKEN)))[0] == 0
    for _ in range(6):  # blocks with PoI rewards, proposer bonuses and fees
        net.step()
    view = net.apps[0].view()
    due = pending_rewards(view, v, alice.address)
    assert due > 0
    record = view.validator(v)
    assert record is not None
    balance = view.account(alice.address).balance
    gas = tx_gas(view, net.genesis.params, alice.address, WithdrawRewards(None))  # one delegation: one price
    assert gas == net.genesis.params.vm.gas_withdraw_rewards
    block = net.step([net.tx(alice, WithdrawRewards(None), gas_limit=gas)])
    assert block.results[0].status == 0, block.results[0].log
    paid = int.from_bytes(block.results[0].data, "big")
    assert paid >= due  # the withdrawing block may add rewards of its own
    fee = gas * net.genesis.params.vm.min_gas_price
    assert net.apps[0].view().account(alice.address).balance == balance - fee + paid
    assert pending_rewards(net.apps[0].view(), v, alice.address) < due  # only the fees shared after it
    net.assert_supply_conserved()


def test_commission_moves_only_within_its_terms(net: Devnet) -> None:
    v = validators(net)[2]
    owner, alice = owner_of(net, v), delegator(net)
    pk = pubkey(net, v)
    assert run(net, owner, EditValidator(pk, 500, 2_000, 300))[0] == 0
    assert run(net, owner, EditValidator(pk, 600, 2_500, 300))[0] == 0  # no delegators yet: free
    assert run(net, alice, Delegate(v, Amount(100 * TOKEN)))[0] == 0
    status, log = run(net, owner, EditValidator(pk, 700, 3_000, 300))
    assert status != 0 and "terms are fixed" in log
    status, log = run(net, owner, EditValidator(pk, 1_000, 2_500, 300))
    assert status != 0 and "at most 300" in log
    while net.height < 2 + CHANGE_BLOCKS - 1:
        net.step()
    assert run(net, owner, EditValidator(pk, 900, 2_500, 300))[0] == 0
    status, log = run(net, owner, EditValidator(pk, 1_000, 2_500, 300))
    assert status != 0 and "change again" in log
    status, log = run(net, alice, EditValidator(pk, 0, 2_500, 300))
    assert status != 0 and "owned by another" in log


def test_undelegating_after_an_offence_does_not_escape_the_slash(net: Devnet) -> None:
    """The attack: the validator equivocates at h=1; its delegator undelegates everything in block 2, before
    the evidence lands in block 3. The delegator's unbonding entry still loses the slash fraction, and the
    owner's own stake loses only its own fraction."""
    net.step()
    v = next(a for a in validators(net) if a not in (net.proposer_for(2), net.proposer_for(3)))
    alice = delegator(net)
    # Delegated at genesis-equivalent time: bond in block 1's place by delegating before the offence.
    net2_height = net.height
    assert net2_height == 1
    status, log = run(net, alice, Delegate(v, Amount(4_000 * TOKEN)))  # block 2
    assert status == 0, log
    while net.height < 4:
        net.step()
    offence = net.height  # 4: the delegation counts in the set of height 4
    assert net.apps[0].validator_set(Height(offence)).get(v).power == 14_000  # type: ignore[union-attr]
    evidence = double_vote(net, v, offence)
    assert run(net, alice, Undelegate(v, Amount(4_000 * TOKEN)))[0] == 0  # block 5: flee
    assert unbonding_to(net, alice.address) == 4_000 * TOKEN
    net.step(evidence=[evidence])  # block 6
    bps = net.genesis.params.slashing.double_sign_slash_bps
    assert unbonding_to(net, alice.address) == 4_000 * TOKEN * (BPS - bps) // BPS
    assert self_stake(net.apps[0].view(), v) == 10_000 * TOKEN * (BPS - bps) // BPS
    record = net.apps[0].view().validator(v)
    assert record is not None and record.tombstoned and record.slashed == 14_000 * TOKEN * bps // BPS
    net.assert_supply_conserved()


def test_redelegating_after_an_offence_does_not_escape_the_slash(net: Devnet) -> None:
    """The hop: delegate to A, A equivocates, redelegate A -> B before the evidence lands, then try to run
    from B. The move is locked at B until it matures, and A's slash reaches it there; B's other holders
    lose nothing."""
    vs = validators(net)
    net.step()
    a, b = vs[0], vs[1]
    alice = delegator(net)
    assert run(net, alice, Delegate(a, Amount(4_000 * TOKEN)))[0] == 0  # block 2
    while net.height < 4:
        net.step()
    evidence = double_vote(net, a, net.height)  # offence at 4, delegation bonded
    status, log = run(net, alice, Redelegate(a, b, Amount(4_000 * TOKEN)))  # block 5
    assert status == 0, log
    assert delegations_of(net.apps[0].view(), alice.address) == [(b, 4_000 * TOKEN)]
    status, log = run(net, alice, Undelegate(b, Amount(1)))  # block 6: run again
    assert status != 0 and "locked until" in log
    status, log = run(net, alice, Redelegate(b, a, Amount(1)))  # block 7: or hop on
    assert status != 0 and "locked until" in log
    b_owner_before = self_stake(net.apps[0].view(), b)
    net.step(evidence=[evidence])  # block 8
    bps = net.genesis.params.slashing.double_sign_slash_bps
    assert delegations_of(net.apps[0].view(), alice.address) == [(b, 4_000 * TOKEN * (BPS - bps) // BPS)]
    assert self_stake(net.apps[0].view(), b) == b_owner_before
    net.assert_supply_conserved()
    # The lock ends when the redelegation matures.
    while net.height < 5 + UNBONDING - 1:
        net.step()
    assert run(net, alice, Undelegate(b, Amount(1)))[0] == 0
    net.assert_supply_conserved()


def test_owner_unstakes_only_its_own_part(net: Devnet) -> None:
    v = validators(net)[3]
    owner, alice = owner_of(net, v), delegator(net)
    assert run(net, alice, Delegate(v, Amount(2_000 * TOKEN)))[0] == 0
    status, log = run(net, owner, Unstake(pubkey(net, v), Amount(10_000 * TOKEN + 1)))
    assert status != 0 and "bonded" in log
    assert run(net, owner, Unstake(pubkey(net, v), Amount(10_000 * TOKEN)))[0] == 0
    record = net.apps[0].view().validator(v)
    assert record is not None and record.stake == 2_000 * TOKEN
    assert run(net, owner, Stake(pubkey(net, v), Amount(1_000 * TOKEN)))[0] == 0
    assert self_stake(net.apps[0].view(), v) == 1_000 * TOKEN
    status, log = run(net, owner, Delegate(v, Amount(1)))
    assert status != 0 and "stake transaction" in log
    net.assert_supply_conserved()


def test_an_account_delegates_to_a_bounded_number_of_validators(net: Devnet) -> None:
    """The cap keeps delegations_of (read by governance's tally) and withdraw-rewards bounded."""
    alice = delegator(net)
    funder = delegator(net, 1)
    owners = [net.account(8 + i) for i in range(MAX_DELEGATIONS_PER_ACCOUNT + 1)]
    txs = [net.tx(funder, Transfer(o.address, Amount(2_000 * TOKEN))) for o in owners]
    net.step(txs)
    keys = [PrivateKey.derive("delegation-cap", "validator", i) for i in range(len(owners))]
    net.step([tx for o, k in zip(owners, keys, strict=True)
              for tx in (net.tx(o, Stake(PublicKeyBytes(k.public_key), Amount(1_000 * TOKEN))),
                         net.tx(o, EditValidator(PublicKeyBytes(k.public_key), 0, 1_000, 100)))])
    targets = [k.address for k in keys]
    block = net.step([net.tx(alice, Delegate(t, Amount(TOKEN))) for t in targets])
    statuses = [r.status for r in block.results]
    assert statuses[:MAX_DELEGATIONS_PER_ACCOUNT] == [0] * MAX_DELEGATIONS_PER_ACCOUNT
    assert statuses[-1] != 0 and "at most 16" in block.results[-1].log
    assert len(delegations_of(net.apps[0].view(), alice.address)) == MAX_DELEGATIONS_PER_ACCOUNT
    net.assert_supply_conserved()


def test_a_wrong_poi_answer_and_jailing_hit_delegators_pro_rata(net: Devnet) -> None:
    """The validator answers a PoI challenge wrongly: its owner and its delegator lose the same fraction;
    it is jailed with its delegated power; the delegator can still leave."""
    v = validators(net)[2]
    alice = delegator(net)
    assert run(net, alice, Delegate(v, Amount(5_000 * TOKEN)))[0] == 0
    while net.height < 3:
        net.step()
    view = net.apps[0].view()
    owner_before, alice_before = self_stake(view, v), dict(delegations_of(view, alice.address))[v]
    block_h = net.propose()
    net.commit(block_h, poi={v: sha256(b"a guess")})
    net.step()
    net.step()  # scores the wrong answer
    view = net.apps[0].view()
    record = view.validator(v)
    assert record is not None and record.poi_wrong == 1
    bps = net.genesis.params.slashing.poi_wrong_slash_bps
    total = owner_before + alice_before
    slashed = total * bps // BPS
    assert record.stake == total - slashed
    owner_after, alice_after = self_stake(view, v), dict(delegations_of(view, alice.address))[v]
    # Each loses bps of its part, to within the one token unit the share rounding may leave.
    assert abs(owner_after - owner_before * (BPS - bps) // BPS) <= 1
    assert abs(alice_after - alice_before * (BPS - bps) // BPS) <= 1
    net.assert_supply_conserved()
    # Jailed (misses), the validator leaves the set two heights later with all its delegated power.
    for _ in range(net.genesis.params.slashing.max_misses):
        block_h = net.propose()
        net.commit(block_h, poi={v: None})
    net.step()
    net.step()
    jailed = net.apps[0].view().validator(v)
    assert jailed is not None and jailed.jailed
    assert v not in net.apps[0].validator_set(Height(net.height + 2))
    assert run(net, alice, Undelegate(v, Amount(alice_after)))[0] == 0
    assert delegations_of(net.apps[0].view(), alice.address) == []
    net.assert_supply_conserved()


def test_a_delegation_worth_nothing_can_be_closed_to_free_its_slot(tmp_path: Path) -> None:
    """A validator slashed to zero leaves its delegators' records worth nothing; undelegating closes such a
    record (any amount), so it stops using one of the account's MAX_DELEGATIONS_PER_ACCOUNT slots."""
    genesis = devnet_genesis(4, staking={"unbonding_blocks": UNBONDING}, slashing={
        "max_evidence_age": MAX_AGE, "jail_blocks": 2, "double_sign_slash_bps": BPS})
    net = Devnet.start(tmp_path, genesis, nodes=2)
    try:
        net.step()
        v = next(a for a in validators(net) if a not in (net.proposer_for(2), net.proposer_for(3)))
        alice = delegator(net)
        assert run(net, alice, Delegate(v, Amount(1_000 * TOKEN)))[0] == 0
        while net.height < 4:
            net.step()
        net.step(evidence=[double_vote(net, v, net.height)])
        view = net.apps[0].view()
        assert view.validator(v).stake == 0  # type: ignore[union-attr]
        assert delegations_of(view, alice.address) == [(v, 0)]
        status, log = run(net, alice, Undelegate(v, Amount(1)))
        assert status == 0, log
        assert delegations_of(net.apps[0].view(), alice.address) == []
        assert unbonding_to(net, alice.address) == 0
        net.assert_supply_conserved()
    finally:
        net.close()


def test_each_delegation_kind_pays_its_own_gas(net: Devnet) -> None:
    """The delegation kinds have their own schedule entries (docs/staking.md, "Gas"), not the staking
    kinds' prices; governance may change them within max_tx_gas."""
    vm = net.genesis.params.vm
    a, b = validators(net)[0], validators(net)[1]
    alice = delegator(net)
    prices = {"gas_stake": vm.gas_stake, "gas_unstake": vm.gas_unstake, "gas_unjail": vm.gas_unjail}
    sent = [(Delegate(a, Amount(10 * TOKEN)), vm.gas_delegate),
            (Undelegate(a, Amount(TOKEN)), vm.gas_undelegate),
            (Redelegate(a, b, Amount(TOKEN)), vm.gas_redelegate),
            (WithdrawRewards(a), vm.gas_withdraw_rewards),
            (WithdrawRewards(None), vm.gas_withdraw_rewards * 2)]  # delegations to a and b: two prices
    for payload, price in sent:
        assert price not in prices.values() or isinstance(payload, WithdrawRewards)
        gas = tx_gas(net.apps[0].view(), net.genesis.params, alice.address, payload)
        block = net.step([net.tx(alice, payload, gas_limit=200_000)])
        assert block.results[0].status == 0, block.results[0].log
        assert block.results[0].gas_used == price == gas
    block = net.step([net.tx(owner_of(net, b), EditValidator(pubkey(net, b), 500, 2_000, 100), gas_limit=200_000)])
    assert block.results[0].status == 0, block.results[0].log
    assert block.results[0].gas_used == vm.gas_edit_validator
    changed = apply_param_changes(net.genesis.params, [ParamChange("vm.gas_delegate", 20_000)])
    assert tx_gas(net.apps[0].view(), changed, alice.address, Delegate(a, Amount(1))) == 20_000
    with pytest.raises(ValueError, match="delegation kinds' gas"):
        apply_param_changes(net.genesis.params, [ParamChange("vm.gas_withdraw_rewards", vm.max_tx_gas // 8)])


def test_withdrawing_from_all_pays_for_the_delegations_held(net: Devnet) -> None:
    """withdraw-rewards with no validator costs its price per delegation the account holds when the block
    runs it (here 2, not MAX_DELEGATIONS_PER_ACCOUNT), at least one; the fee follows the quote. A count that
    grew between the quote and the block fails the transaction out of gas, with a log naming the count, and
    withdraws nothing."""
    vm = net.genesis.params.vm
    a, b, c = validators(net)[:3]
    alice = delegator(net)
    params = net.genesis.params
    assert tx_gas(net.apps[0].view(), params, alice.address, WithdrawRewards(None)) == vm.gas_withdraw_rewards
    assert run(net, alice, Delegate(a, Amount(10 * TOKEN)))[0] == 0
    assert run(net, alice, Delegate(b, Amount(10 * TOKEN)))[0] == 0
    quote = tx_gas(net.apps[0].view(), params, alice.address, WithdrawRewards(None))
    assert quote == 2 * vm.gas_withdraw_rewards < vm.gas_withdraw_rewards * MAX_DELEGATIONS_PER_ACCOUNT
    balance = net.apps[0].view().account(alice.address).balance
    block = net.step([net.tx(alice, WithdrawRewards(None), gas_limit=quote)])
    assert block.results[0].status == 0, block.results[0].log
    assert block.results[0].gas_used == quote
    paid = int.from_bytes(block.results[0].data, "big")
    assert net.apps[0].view().account(alice.address).balance == balance - quote * vm.min_gas_price + paid

    # The quote by 2, then a third delegation lands first in the same block.
    stale = tx_gas(net.apps[0].view(), params, alice.address, WithdrawRewards(None))
    block = net.step([net.tx(alice, Delegate(c, Amount(10 * TOKEN)), gas_limit=100_000),
                      net.tx(alice, WithdrawRewards(None), gas_limit=stale)])
    assert block.results[0].status == 0, block.results[0].log
    failed = block.results[1]
    assert failed.status == TxStatus.OUT_OF_GAS and failed.gas_used == stale
    assert failed.log == f"out of gas: withdrawing from 3 delegations needs {3 * vm.gas_withdraw_rewards} gas, " \
                         f"the limit is {stale}"
    assert failed.data == b""
    net.assert_supply_conserved()
