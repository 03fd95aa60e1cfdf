"""Randomized staking and governance sequences on the VM's own paths (issue 15): signed transactions through `execute_tx`,
block boundaries through `close_block` and `release_unbonding`, slashes through `slash_offence`, `slash`
and `jail`, rewards through the ledger, all on one `StateView` started from a parsed genesis.

After every step: supply = genesis + minted - burned, and balances + bonded + unbonding + reward pools +
deposits (the escrow account) sum to it; the escrow holds exactly the deposits of open proposals; nothing is negative; shares add up; the reward pools can pay every delegator's due; and a slash for
an offence burns the whole fraction of the stake bonded at the offence (unless nothing is left to take),
wherever that stake has gone since (unbonding, redelegated).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.keys import PrivateKey
from core.types import Address, Amount, Hash32, Height, Timestamp
from tests.vm.devnet import devnet_genesis
from tools.genesis import TOKEN, account_key
from vm.delegation import delegations_of, pending_rewards, self_stake
from vm.execute import BlockContext, BlockModels, execute_tx
from vm.genesis import genesis_state
from vm.gov.store import ESCROW, deposits_key, get_next_proposal_id, get_proposal
from vm.gov.types import Deposit as GovDeposit
from vm.gov.types import DepositList, ProposalStatus, SubmitProposal, TextProposal, VoteOption
from vm.gov.types import Vote as GovVote
from vm.params import BPS
from vm.process import Ledger, close_block, jail, offender_at, release_unbonding, slash, slash_offence
from vm.state import (
    Delegation,
    StateView,
    UnbondingQueue,
    ValidatorPool,
    delegation_key,
    pool_key,
    unbonding_key,
)
from vm.txs import Delegate, EditValidator, Redelegate, Stake, Undelegate, Unstake, WithdrawRewards, build_tx

pytestmark = pytest.mark.vm

N_VALIDATORS = 3
N_ACCOUNTS = N_VALIDATORS + 4  # accounts 0..2 own the validators; 3..6 only delegate
UNBONDING = 4
MAX_AGE = 3

GENESIS = devnet_genesis(N_VALIDATORS, staking={"unbonding_blocks": UNBONDING, "commission_change_blocks": 2},
                         slashing={"max_evidence_age": MAX_AGE, "jail_blocks": 2},
                         gov={"voting_blocks": 3, "max_deposit_blocks": 4, "min_deposit": 100 * TOKEN})
PARAMS = GENESIS.params
SEED = GENESIS.seed_phrase or ""
KEYS = [account_key(SEED, i) for i in range(N_ACCOUNTS)]
VALIDATORS = [v.address for v in GENESIS.validator_set().entries]
PUBKEYS = {v.address: v.public_key for v in GENESIS.validator_set().entries}
OWNER = {v.address: next(k for k in KEYS if k.address == g.owner)
         for v in GENESIS.validator_set().entries for g in GENESIS.validators if g.public_key == v.public_key}
_GENESIS_CHANGES = genesis_state(GENESIS, lambda m: (1_000, 1_000)).changes()  # model prices do not matter here

amounts = st.one_of(st.integers(1, 20), st.integers(1, 3_000).map(lambda t: t * TOKEN))
accounts = st.integers(0, N_ACCOUNTS - 1)
validators = st.sampled_from(VALIDATORS)


class StakingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.view = StateView(None, None)
        for key, value in _GENESIS_CHANGES.items():
            assert value is not None
            self.view.put_raw(key, value)
        self.height = 1
        self.ctx = self._context()
        self.ledger = Ledger()
        self.nonces = [0] * N_ACCOUNTS
        self.ok = 0
        # Stake moved out of a validator: [height, source, amount still slashable, destination or None].
        self.moved: list[list[Any]] = []
        self.slashed_at: dict[Address, list[int]] = {v: [] for v in VALIDATORS}

    def _context(self) -> BlockContext:
        proposer = VALIDATORS[self.height % N_VALIDATORS]
        return BlockContext(GENESIS.chain_id, Height(self.height), Timestamp(self.height * 1000), proposer, PARAMS)

    def _send(self, key: PrivateKey, payload: Any) -> bool:
        i = KEYS.index(key)
        tx = build_tx(key, payload, chain_id=GENESIS.chain_id, nonce=self.nonces[i], gas_limit=200_000,
                      fee=200_000 * PARAMS.vm.min_gas_price)
        if self.view.account(key.address).balance < tx.fee:
            return False
        self.nonces[i] += 1
        outcome = execute_tx(self.view, self.ctx, 0, tx, models=BlockModels(PARAMS.vm.max_block_models))
        self.ledger.fees += outcome.fee
        self.ok += outcome.result.status == 0
        return outcome.result.status == 0

    # ------------------------------------------------------------------------------------------ rules

    @rule(who=accounts, validator=validators, amount=amounts)
    def delegate(self, who: int, validator: Address, amount: int) -> None:
        self._send(KEYS[who], Delegate(validator, amount))

    def _pick(self, pick: int, percent: int) -> tuple[PrivateKey, Address, int] | None:
        """One existing delegation (by `pick`) and `percent` of its value (0: more than it holds)."""
        held = self._delegations()
        if not held:
            return None
        validator, delegator, _ = held[pick % len(held)]
        value = dict(delegations_of(self.view, delegator))[validator]
        amount = value + 1 if percent == 0 else max(1, value * percent // 100)
        return next(k for k in KEYS if k.address == delegator), validator, amount

    @rule(pick=st.integers(0, 99), percent=st.integers(0, 100))
    def undelegate(self, pick: int, percent: int) -> None:
        chosen = self._pick(pick, percent)
        if chosen is not None and self._send(chosen[0], Undelegate(chosen[1], chosen[2])):
            self.moved.append([self.height, chosen[1], chosen[2], None])

    @rule(pick=st.integers(0, 99), percent=st.integers(0, 100), destination=validators)
    def redelegate(self, pick: int, percent: int, destination: Address) -> None:
        chosen = self._pick(pick, percent)
        if chosen is not None and self._send(chosen[0], Redelegate(chosen[1], destination, chosen[2])):
            self.moved.append([self.height, chosen[1], chosen[2], destination])

    @rule(who=accounts, validator=st.one_of(st.none(), validators))
    def withdraw(self, who: int, validator: Address | None) -> None:
        self._send(KEYS[who], WithdrawRewards(validator))

    @rule(validator=validators, amount=amounts, bond=st.booleans())
    def owner_stake(self, validator: Address, amount: int, bond: bool) -> None:
        payload = Stake if bond else Unstake
        if self._send(OWNER[validator], payload(PUBKEYS[validator], amount)) and not bond:
            self.moved.append([self.height, validator, amount, None])

    @rule(validator=validators, rate=st.integers(0, 3_000), cap=st.integers(0, 5_000), step=st.integers(0, 1_000))
    def edit_commission(self, validator: Address, rate: int, cap: int, step: int) -> None:
        self._send(OWNER[validator], EditValidator(PUBKEYS[validator], rate, cap, step))

    @rule(validator=validators, amount=st.integers(1, 50 * TOKEN))
    def reward(self, validator: Address, amount: int) -> None:
        record = self.view.validator(validator)
        assert record is not None
        self.ledger.mint_to_validator(self.view, validator, record, amount)

    @precondition(lambda self: self.height < 40)
    @rule(validator=validators, back=st.integers(0, MAX_AGE - 1), jailing=st.booleans(), chase=st.booleans())
    def slash_for_offence(self, validator: Address, back: int, jailing: bool, chase: bool) -> None:
        """Evidence lands at the start of a block, before its transactions (as in `BlockExecutor.begin`);
        `chase` aims it at the source of the latest move of stake, the case a defence must cover."""
        if chase and self.moved:
            validator = self.moved[-1][1]
        self.next_block()
        offence = max(1, self.height - 1 - back)
        entry = offender_at(self.view, offence, PUBKEYS[validator])
        record = self.view.validator(validator)
        assert record is not None
        if entry is None or record.tombstoned:
            return
        bps = PARAMS.slashing.wrong_inference_slash_bps
        target = int(entry.power) * PARAMS.staking.power_unit * bps // BPS
        before, stake_before = self.ledger.burned, record.stake
        record = slash_offence(self.view, self.ctx, validator, record, int(entry.power), offence, bps, self.ledger)
        burned = self.ledger.burned - before
        # No stake bonded at the offence escapes: the whole fraction burns, unless nothing is left to take ...
        assert burned >= target or record.stake == 0, (burned, target)
        # ... and stake moved out since pays its own part, where it went: the validator's remaining holders
        # do not pay for it (a destination slashed since may hold less than its part).
        chased = burned - (stake_before - record.stake)
        due = 0
        for entry_ in self.moved:
            height, source, amount, destination = entry_
            if source != validator or height < offence:
                continue
            if destination is None or not any(h >= height for h in self.slashed_at[destination]):
                due += amount * bps // BPS
            entry_[2] = amount - amount * bps // BPS
        assert chased >= due, (chased, due)
        self.slashed_at[validator].append(self.height)
        self.view.set_validator(validator, jail(record, self.ctx) if jailing else record)

    @rule(validator=validators)
    def wrong_poi_answer(self, validator: Address) -> None:
        record = self.view.validator(validator)
        assert record is not None
        self.view.set_validator(validator, slash(record, PARAMS.slashing.poi_wrong_slash_bps, self.ledger))
        self.slashed_at[validator].append(self.height)

    @rule(who=accounts, amount=st.integers(1, 150).map(lambda t: t * TOKEN))
    def propose(self, who: int, amount: int) -> None:
        """A text proposal (its deposit may be under the minimum: then it waits for deposits or lapses)."""
        self._send(KEYS[who], SubmitProposal("supply machine", "", TextProposal(), Amount(amount)))

    @rule(who=accounts, proposal=st.integers(1, 6), amount=st.integers(1, 120).map(lambda t: t * TOKEN))
    def deposit(self, who: int, proposal: int, amount: int) -> None:
        self._send(KEYS[who], GovDeposit(proposal, Amount(amount)))

    @rule(who=accounts, proposal=st.integers(1, 6), option=st.sampled_from(list(VoteOption)))
    def vote(self, who: int, proposal: int, option: VoteOption) -> None:
        self._send(KEYS[who], GovVote(proposal, option))

    @precondition(lambda self: self.height < 40)
    @rule()
    def next_block(self) -> None:
        close_block(self.view, self.ctx, Hash32(bytes(32)), self.ledger)
        self.height += 1
        self.ctx = self._context()
        self.ledger = Ledger()
        release_unbonding(self.view, self.ctx)

    # ------------------------------------------------------------------------------------------ invariants

    def _delegations(self) -> list[tuple[Address, Address, Delegation]]:
        out = []
        for v in VALIDATORS:
            for k in KEYS:
                d = self.view.get(delegation_key(v, k.address), Delegation)
                if d is not None:
                    out.append((v, k.address, d))
        return out

    @invariant()
    def supply_is_conserved(self) -> None:
        view = self.view
        supply = view.supply()
        expected = supply.genesis + supply.issued + self.ledger.issued - supply.burned - self.ledger.burned
        balances = [view.account(k.address).balance for k in KEYS] + [view.account(ESCROW).balance]
        records = [view.validator(v) for v in VALIDATORS]
        pools = [view.get(pool_key(v), ValidatorPool) for v in VALIDATORS]
        unbonding = 0
        for h in range(self.height, self.height + UNBONDING + 1):
            queue = view.get(unbonding_key(h), UnbondingQueue)
            for e in () if queue is None else queue.entries:
                assert e.amount >= 0
                unbonding += e.amount
        assert all(b >= 0 for b in balances)
        assert all(r is not None and r.stake >= 0 for r in records)
        bonded = sum(r.stake for r in records if r is not None)
        reward_pools = sum(p.reward_pool for p in pools if p is not None)
        # Fees paid in the open block are held by the ledger until close_block shares or burns them; deposits
        # are the escrow account's balance (among `balances`) until refunded or burned.
        assert sum(balances) + bonded + unbonding + reward_pools + self.ledger.fees == expected

    @invariant()
    def escrow_holds_exactly_the_open_deposits(self) -> None:
        """Every token in escrow belongs to a proposal still in its deposit or voting period; closed ones
        have been refunded or burned in full."""
        held = 0
        for proposal_id in range(1, get_next_proposal_id(self.view)):
            proposal = get_proposal(self.view, proposal_id)
            assert proposal is not None
            listed = self.view.get(deposits_key(proposal_id), DepositList)
            total = 0 if listed is None else sum(e.amount for e in listed.entries)
            if proposal.status in (ProposalStatus.DEPOSIT_PERIOD, ProposalStatus.VOTING_PERIOD):
                assert total == proposal.total_deposit
                held += total
        assert self.view.account(ESCROW).balance == held

    @invariant()
    def shares_add_up_and_pools_can_pay(self) -> None:
        delegations = self._delegations()
        for v in VALIDATORS:
            record = self.view.validator(v)
            pool = self.view.get(pool_key(v), ValidatorPool)
            assert record is not None
            if pool is None:
                assert not any(dv == v for dv, _, _ in delegations)
                continue
            mine = [(a, d) for dv, a, d in delegations if dv == v]
            assert pool.owner_shares + sum(d.shares for _, d in mine) == pool.total_shares
            assert sum(pending_rewards(self.view, v, a) for a, _ in mine) <= pool.reward_pool
            assert pool.total_shares > 0 or record.stake == 0
            assert self_stake(self.view, v) <= record.stake


StakingMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestStakingMachine = StakingMachine.TestCase


def test_machine_runs_transactions_that_succeed() -> None:
    """The machine's rules are not all refusals: one fixed sequence lands every kind."""
    m = StakingMachine()
    v0, v1 = VALIDATORS[0], VALIDATORS[1]
    m.edit_commission(v0, 1_000, 2_000, 500)
    m.delegate(4, v0, 500 * TOKEN)
    m.reward(v0, 10 * TOKEN)
    m.next_block()
    m.redelegate(0, 20, v1)
    m.undelegate(0, 50)
    m.withdraw(4, None)
    m.propose(5, 150 * TOKEN)
    m.vote(0, 1, VoteOption.YES)
    m.vote(1, 1, VoteOption.YES)
    m.propose(6, 10 * TOKEN)
    m.deposit(5, 2, 5 * TOKEN)
    assert m.ok == 10
    for _ in range(5):
        m.next_block()
        m.escrow_holds_exactly_the_open_deposits()
    assert get_proposal(m.view, 1).status is ProposalStatus.PASSED  # type: ignore[union-attr]
    assert get_proposal(m.view, 2).status is ProposalStatus.REJECTED  # type: ignore[union-attr]
    m.supply_is_conserved()
    m.shares_add_up_and_pools_can_pay()
