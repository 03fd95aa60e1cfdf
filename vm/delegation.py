"""Delegation: any account bonds tokens to a validator, shares its rewards (less commission) and its slashes.

A validator's `stake` is all the tokens bonded to it; its `ValidatorPool` divides them into shares (the
owner's and its delegators'). Slashes cut `stake` and so every holder pro rata without touching their
records; rewards grow one per-share accumulator, and each delegator collects its due when it withdraws or
changes its delegation (lazy, F1-style accounting: a block's cost does not grow with the delegators).
Integer arithmetic only; the rounding rules are in docs/staking.md.
"""

from __future__ import annotations

from core.address import address_from_public_key
from core.codec import Wire
from core.types import U64_MAX, Address, Amount, Height
from vm.params import BPS, Params
from vm.queuecuts import process_cut_since
from vm.state import (
    ACC_BYTES,
    KEY_CANDIDATES,
    MAX_CANDIDATES,
    MAX_DELEGATIONS_PER_ACCOUNT,
    CandidateList,
    Delegation,
    DelegatorIndex,
    RedelegationEntry,
    RedelegationQueue,
    StateView,
    UnbondingEntry,
    UnbondingQueue,
    ValidatorPool,
    ValidatorRecord,
    delegation_key,
    delegator_index_key,
    pool_key,
    redelegation_key,
    unbonding_key,
)
from vm.txs import Delegate, EditValidator, Redelegate, Undelegate, WithdrawRewards

ACC_SCALE = 1 << 64  # reward per share is kept in units of 2^-64 token
ZERO_ACC = bytes(ACC_BYTES)


class Refused(Exception):
    """A delegation rule refused the transaction (one line, for the transaction's log)."""


# ------------------------------------------------------------------------------------------------ reads


def get_pool(view: StateView, address: Address, record: ValidatorRecord) -> ValidatorPool:
    """The validator's pool; absent, the owner holds its whole stake, one share per token, commission 0."""
    pool = view.get(pool_key(address), ValidatorPool)
    if pool is not None:
        return pool
    return ValidatorPool(record.stake, record.stake, 0, 0, 0, Height(0), Amount(0), ZERO_ACC)


def compute_value(shares: int, pool: ValidatorPool, stake: int) -> int:
    """Tokens `shares` of the pool are worth now (rounded down)."""
    return shares * stake // pool.total_shares if pool.total_shares else 0


def self_stake(view: StateView, address: Address) -> int:
    """The tokens the validator's owner has bonded to it (its share of `stake`)."""
    record = view.validator(address)
    if record is None:
        return 0
    pool = get_pool(view, address, record)
    return compute_value(pool.owner_shares, pool, record.stake)


def delegations_of(view: StateView, delegator: Address) -> list[tuple[Address, int]]:
    """(validator address, currently bonded amount in token units) for each validator `delegator` delegates
    to, sorted by validator address; at most MAX_DELEGATIONS_PER_ACCOUNT entries. An owner's stake in its
    own validator is not a delegation (see `self_stake`)."""
    out = []
    for validator in _index(view, delegator):
        record = view.validator(validator)
        d = view.get(delegation_key(validator, delegator), Delegation)
        if record is None or d is None:
            continue
        out.append((validator, compute_value(d.shares, get_pool(view, validator, record), record.stake)))
    return out


def pending_rewards(view: StateView, validator: Address, delegator: Address) -> int:
    """Rewards `delegator` may withdraw from `validator` now."""
    record = view.validator(validator)
    d = view.get(delegation_key(validator, delegator), Delegation)
    if record is None or d is None:
        return 0
    return _due(get_pool(view, validator, record), d)


def _index(view: StateView, delegator: Address) -> tuple[Address, ...]:
    index = view.get(delegator_index_key(delegator), DelegatorIndex)
    return () if index is None else index.validators


def _due(pool: ValidatorPool, d: Delegation) -> int:
    growth = int.from_bytes(pool.reward_acc, "big") - int.from_bytes(d.reward_base, "big")
    return d.shares * growth // ACC_SCALE


# ------------------------------------------------------------------------------------------------ rewards


def pay_rewards(view: StateView, address: Address, record: ValidatorRecord, amount: int) -> None:
    """Pay `amount` earned by the validator: commission first, the rest pro rata to shares; the owner's part
    is credited at once, the delegators' part goes to the pool (collected lazily). The accumulator grows by
    the delegators' part x ACC_SCALE // delegator shares, rounded down: the remainder stays in the pool."""
    if amount <= 0:
        return
    stored = view.get(pool_key(address), ValidatorPool)
    delegated = 0 if stored is None else stored.total_shares - stored.owner_shares
    if stored is None or delegated == 0:
        _credit(view, record.owner, amount)
        return
    commission = amount * stored.commission_bps // BPS
    rest = amount - commission
    owner_part = rest * stored.owner_shares // stored.total_shares
    to_pool = rest - owner_part
    _credit(view, record.owner, commission + owner_part)
    acc = int.from_bytes(stored.reward_acc, "big") + to_pool * ACC_SCALE // delegated
    view.put(pool_key(address), stored.replace(reward_pool=Amount(stored.reward_pool + to_pool),
                                               reward_acc=acc.to_bytes(ACC_BYTES, "big")))


def _settle(view: StateView, delegator: Address, pool: ValidatorPool, d: Delegation) -> tuple[ValidatorPool,
                                                                                            Delegation, int]:
    """Pay the delegator its due from the pool and restart its accrual; the caller writes both back."""
    due = _due(pool, d)
    if due:
        _credit(view, delegator, due)
    return (pool.replace(reward_pool=Amount(pool.reward_pool - due)),
            d.replace(reward_base=pool.reward_acc), due)


def _credit(view: StateView, address: Address, amount: int) -> None:
    account = view.account(address)
    view.set_account(address, account.replace(balance=Amount(account.balance + amount)))


# ------------------------------------------------------------------------------------------------ shares


def _mint_shares(pool: ValidatorPool, stake: int, amount: int) -> int:
    """Shares that `amount` new tokens buy at the pool's price (rounded down, in favour of the holders)."""
    if pool.total_shares == 0:
        shares = amount
    elif stake == 0:
        raise Refused("the validator has no bonded tokens left")
    else:
        shares = amount * pool.total_shares // stake
    if shares == 0:
        raise Refused("the amount buys no share of the validator")
    if pool.total_shares + shares > U64_MAX:
        raise Refused("the validator's share count would overflow")
    return shares


def _burn_shares(pool: ValidatorPool, stake: int, held: int, amount: int) -> tuple[int, int]:
    """(shares burned, tokens removed) for taking `amount` tokens out of a holding of `held` shares: shares
    round up (in favour of the remaining holders); the last shares of the pool take every token left."""
    value = compute_value(held, pool, stake)
    if not 0 < amount <= value:
        raise Refused(f"amount must be between 1 and the bonded {value:d}")
    burned = min(-(-amount * pool.total_shares // stake), held)
    return burned, (stake if burned == pool.total_shares else amount)


def bond_owner(view: StateView, address: Address, record: ValidatorRecord, amount: int) -> ValidatorRecord:
    """The owner bonds `amount` more (a `stake` transaction); the caller has checked its balance."""
    stored = view.get(pool_key(address), ValidatorPool)
    if stored is not None:
        shares = _mint_shares(stored, record.stake, amount)
        view.put(pool_key(address), stored.replace(total_shares=stored.total_shares + shares,
                                                   owner_shares=stored.owner_shares + shares))
    return record.replace(stake=Amount(record.stake + amount))


def unbond_owner(view: StateView, address: Address, record: ValidatorRecord,
                 amount: int) -> tuple[ValidatorRecord, int]:
    """The owner takes `amount` of its own stake out (an `unstake`): the new record and the tokens removed."""
    stored = view.get(pool_key(address), ValidatorPool)
    if stored is None:
        if not 0 < amount <= record.stake:
            raise Refused(f"unstake amount must be between 1 and the stake {record.stake:d}")
        return record.replace(stake=Amount(record.stake - amount)), amount
    burned, removed = _burn_shares(stored, record.stake, stored.owner_shares, amount)
    view.put(pool_key(address), stored.replace(total_shares=stored.total_shares - burned,
                                               owner_shares=stored.owner_shares - burned))
    return record.replace(stake=Amount(record.stake - removed)), removed


# ------------------------------------------------------------------------------------------------ transactions


def tx_gas(view: StateView, params: Params, sender: Address, payload: Wire) -> int:
    """Gas of the delegation kinds: each its own price (docs/staking.md, "Gas"); withdraw-rewards pays its
    price per delegation it settles (`withdraw_count`, read from state when the block runs it)."""
    vm = params.vm
    if isinstance(payload, Delegate):
        return int(vm.gas_delegate)
    if isinstance(payload, Undelegate):
        return int(vm.gas_undelegate)
    if isinstance(payload, Redelegate):
        return int(vm.gas_redelegate)
    if isinstance(payload, WithdrawRewards):
        return int(vm.gas_withdraw_rewards) * withdraw_count(view, sender, payload)
    assert isinstance(payload, EditValidator)
    return int(vm.gas_edit_validator)


def withdraw_count(view: StateView, sender: Address, payload: WithdrawRewards) -> int:
    """Delegations a withdraw-rewards pays gas for: one when it names a validator; else the sender's
    delegations in its index now (at most MAX_DELEGATIONS_PER_ACCOUNT), at least one."""
    return 1 if payload.validator is not None else max(1, len(_index(view, sender)))


def out_of_gas_log(view: StateView, sender: Address, payload: Wire, needed: int, limit: int) -> str:
    """The log of a delegation transaction whose gas limit is below its price: for a withdraw-all, the
    delegation count it was priced by (it may have grown since the sender's quote)."""
    if isinstance(payload, WithdrawRewards) and payload.validator is None:
        count = withdraw_count(view, sender, payload)
        return (f"out of gas: withdrawing from {count:d} delegation{'s' * (count != 1)} needs {needed:d} gas, "
                f"the limit is {limit:d}")
    return f"out of gas: needs {needed:d} gas, the limit is {limit:d}"


def process_tx(view: StateView, height: int, params: Params, sender: Address, payload: Wire) -> bytes:
    """Run one delegation transaction; Refused (before any write) if a rule forbids it. Returns the
    result's data: the completion height of an undelegation, the amount withdrawn, or nothing."""
    if isinstance(payload, Delegate):
        return process_delegate(view, height, params, sender, payload)
    if isinstance(payload, Undelegate):
        return process_undelegate(view, height, params, sender, payload)
    if isinstance(payload, Redelegate):
        return process_redelegate(view, height, params, sender, payload)
    if isinstance(payload, WithdrawRewards):
        return process_withdraw(view, sender, payload)
    assert isinstance(payload, EditValidator)
    return process_edit(view, height, params, sender, payload)


def _target(view: StateView, params: Params, sender: Address, address: Address, amount: int,
            frees_slot: bool = False) -> tuple[ValidatorRecord, ValidatorPool, Delegation | None]:
    """Checks for bonding `amount` into validator `address` as a delegator (`frees_slot`: the same
    transaction ends one of the sender's other delegations)."""
    record = view.validator(address)
    if record is None:
        raise Refused("no such validator")
    if record.tombstoned:
        raise Refused("the validator is tombstoned")
    if record.owner == sender:
        raise Refused("the owner bonds to its own validator with a stake transaction")
    if view.get(pool_key(address), ValidatorPool) is None:
        # Terms set by the owner before anyone can delegate: otherwise the first delegator of one token would
        # freeze the terms at their defaults (0 / 0) before the owner's edit-validator lands.
        raise Refused("the validator has not published commission terms (its owner sends edit-validator first)")
    existing = view.get(delegation_key(address, sender), Delegation)
    if existing is None and len(_index(view, sender)) - frees_slot >= MAX_DELEGATIONS_PER_ACCOUNT:
        raise Refused(f"an account may delegate to at most {MAX_DELEGATIONS_PER_ACCOUNT} validators")
    minimum = params.staking.min_validator_stake
    if record.stake < minimum <= record.stake + amount:
        listed = view.get(KEY_CANDIDATES, CandidateList)
        if listed is not None and len(listed.addresses) >= MAX_CANDIDATES:
            raise Refused("the validator candidate list is full")
    return record, get_pool(view, address, record), existing


def _bond(view: StateView, sender: Address, address: Address, record: ValidatorRecord, pool: ValidatorPool,
          existing: Delegation | None, amount: int, locked_until: int) -> None:
    shares = _mint_shares(pool, record.stake, amount)
    if existing is None:
        d = Delegation(0, pool.reward_acc, Height(0))
        view.put(delegator_index_key(sender), DelegatorIndex(tuple(sorted((*_index(view, sender), address)))))
    else:
        pool, d, _ = _settle(view, sender, pool, existing)
    view.put(pool_key(address), pool.replace(total_shares=pool.total_shares + shares))
    view.put(delegation_key(address, sender), d.replace(shares=d.shares + shares,
                                                        locked_until=Height(max(d.locked_until, locked_until))))
    view.set_validator(address, record.replace(stake=Amount(record.stake + amount)))


def _source(view: StateView, height: int, sender: Address, address: Address, amount: int,
            drop_worthless: bool = False) -> tuple[ValidatorRecord, ValidatorPool, Delegation, int, int]:
    """Checks for taking `amount` out of the sender's delegation to `address`: (record, pool, delegation,
    shares burned, tokens removed). With `drop_worthless`, a delegation worth nothing (its validator slashed
    to zero) is closed whatever `amount` says, so it frees its slot among the account's delegations."""
    record = view.validator(address)
    d = view.get(delegation_key(address, sender), Delegation)
    if record is None or d is None:
        raise Refused("no delegation to this validator")
    if height < d.locked_until:
        raise Refused(f"stake redelegated to this validator is locked until height {d.locked_until:d}")
    pool = get_pool(view, address, record)
    if drop_worthless and compute_value(d.shares, pool, record.stake) == 0:
        return record, pool, d, d.shares, 0
    burned, removed = _burn_shares(pool, record.stake, d.shares, amount)
    return record, pool, d, burned, removed


def _unbond(view: StateView, sender: Address, address: Address, record: ValidatorRecord, pool: ValidatorPool,
            d: Delegation, burned: int, removed: int) -> None:
    pool, d, _ = _settle(view, sender, pool, d)
    view.put(pool_key(address), pool.replace(total_shares=pool.total_shares - burned))
    if d.shares == burned:
        view.delete(delegation_key(address, sender))
        rest = tuple(v for v in _index(view, sender) if v != address)
        if rest:
            view.put(delegator_index_key(sender), DelegatorIndex(rest))
        else:
            view.delete(delegator_index_key(sender))
    else:
        view.put(delegation_key(address, sender), d.replace(shares=d.shares - burned))
    view.set_validator(address, record.replace(stake=Amount(record.stake - removed)))


def process_delegate(view: StateView, height: int, params: Params, sender: Address, p: Delegate) -> bytes:
    if p.amount == 0:
        raise Refused("delegation amount must be positive")
    record, pool, existing = _target(view, params, sender, p.validator, p.amount)
    account = view.account(sender)
    if p.amount > account.balance:
        raise Refused(f"balance {account.balance:d} is below the amount {p.amount:d}")
    _mint_shares(pool, record.stake, p.amount)  # refuses before any write
    view.set_account(sender, account.replace(balance=Amount(account.balance - p.amount)))
    _bond(view, sender, p.validator, record, pool, existing, p.amount, 0)
    return b""


def process_undelegate(view: StateView, height: int, params: Params, sender: Address, p: Undelegate) -> bytes:
    record, pool, d, burned, removed = _source(view, height, sender, p.validator, p.amount, drop_worthless=True)
    _unbond(view, sender, p.validator, record, pool, d, burned, removed)
    if removed == 0:  # a worthless delegation closed: nothing to unbond
        return height.to_bytes(8, "big")
    done_at = height + params.staking.unbonding_blocks
    key = unbonding_key(done_at)
    queue = view.get(key, UnbondingQueue) or UnbondingQueue(())
    view.put(key, UnbondingQueue((*queue.entries, UnbondingEntry(sender, p.validator, Amount(removed)))))
    return done_at.to_bytes(8, "big")


def process_redelegate(view: StateView, height: int, params: Params, sender: Address, p: Redelegate) -> bytes:
    """Move stake between validators at once; the moved stake is locked at the destination, and recorded
    for slashes of the source, until the redelegation matures (unbonding_blocks)."""
    if p.source == p.destination:
        raise Refused("source and destination are the same validator")
    src, src_pool, d, burned, removed = _source(view, height, sender, p.source, p.amount)
    dst, dst_pool, _ = _target(view, params, sender, p.destination, removed, frees_slot=d.shares == burned)
    _mint_shares(dst_pool, dst.stake, removed)  # refuses before any write
    _unbond(view, sender, p.source, src, src_pool, d, burned, removed)
    done_at = height + params.staking.unbonding_blocks
    # The source's side touched only the source's records and the sender's balance: `dst` is still current.
    _bond(view, sender, p.destination, dst, dst_pool, view.get(delegation_key(p.destination, sender), Delegation),
          removed, done_at)
    key = redelegation_key(done_at)
    queue = view.get(key, RedelegationQueue) or RedelegationQueue(())
    entry = RedelegationEntry(sender, p.source, p.destination, Amount(removed))
    view.put(key, RedelegationQueue((*queue.entries, entry)))
    return done_at.to_bytes(8, "big")


def process_withdraw(view: StateView, sender: Address, p: WithdrawRewards) -> bytes:
    validators = _index(view, sender) if p.validator is None else (p.validator,)
    total = 0
    for address in validators:
        record = view.validator(address)
        d = view.get(delegation_key(address, sender), Delegation)
        if record is None or d is None:
            raise Refused("no delegation to this validator")
        pool, d, due = _settle(view, sender, get_pool(view, address, record), d)
        if due:
            view.put(pool_key(address), pool)
        view.put(delegation_key(address, sender), d)
        total += due
    return total.to_bytes(8, "big")


def process_edit(view: StateView, height: int, params: Params, sender: Address, p: EditValidator) -> bytes:
    """Commission terms are free while no one else delegates; afterwards only the rate moves, within the
    terms, at most `max_change_bps` once per `commission_change_blocks`. The owner's self-stake floor
    (`min_self_stake`, 0: keep it) may only rise, and not above the owner's own stake."""
    address = Address(address_from_public_key(p.validator))
    record = view.validator(address)
    if record is None:
        raise Refused("no such validator")
    if record.owner != sender:
        raise Refused("the validator is owned by another account")
    if not p.commission_bps <= p.max_commission_bps <= BPS or p.max_change_bps > BPS:
        raise Refused("need commission <= max commission <= 10000 and max change <= 10000 (basis points)")
    pool = get_pool(view, address, record)
    floor = _raised_floor(pool, record, p.min_self_stake)
    delegated = pool.total_shares != pool.owner_shares
    changed_at = pool.commission_changed_at
    if not delegated or p.commission_bps != pool.commission_bps:
        changed_at = Height(height)
    if delegated:
        if (p.max_commission_bps, p.max_change_bps) != (pool.max_commission_bps, pool.max_change_bps):
            raise Refused("the commission terms are fixed once others delegate")
        if abs(p.commission_bps - pool.commission_bps) > pool.max_change_bps:
            raise Refused(f"the commission may move at most {pool.max_change_bps:d} basis points at a time")
        next_change = pool.commission_changed_at + params.staking.commission_change_blocks
        if p.commission_bps != pool.commission_bps and height < next_change:
            raise Refused(f"the commission may change again at height {next_change:d}")
    view.put(pool_key(address), pool.replace(commission_bps=p.commission_bps,
                                             max_commission_bps=p.max_commission_bps,
                                             max_change_bps=p.max_change_bps, commission_changed_at=changed_at,
                                             min_self_stake=Amount(floor)))
    return b""


def _raised_floor(pool: ValidatorPool, record: ValidatorRecord, asked: int) -> int:
    """The validator's self-stake floor after an edit asking for `asked` (0: unchanged). Never lowered:
    delegators chose the validator on that promise. Never raised above the owner's own stake: the edit
    would jail the validator at once."""
    if asked == 0 or asked == pool.min_self_stake:
        return int(pool.min_self_stake)
    if asked < pool.min_self_stake:
        raise Refused(f"the self-stake floor can only be raised: it is {pool.min_self_stake:d}, not {asked:d}")
    own = compute_value(pool.owner_shares, pool, record.stake)
    if asked > own:
        raise Refused(f"the self-stake floor {asked:d} is above the owner's own stake {own:d}")
    return asked


# ------------------------------------------------------------------------------------------------ block rules


def self_stake_floor(pool: ValidatorPool, params: Params) -> int:
    """The owner's own stake below which its validator is jailed: the chain-wide `staking.min_self_stake`,
    or the higher floor the owner promised (`ValidatorPool.min_self_stake`, set by edit-validator)."""
    return max(int(params.staking.min_self_stake), int(pool.min_self_stake))


def is_self_stake_short(view: StateView, address: Address, record: ValidatorRecord, params: Params) -> bool:
    """Whether the owner's own bonded tokens are below its validator's floor (`self_stake_floor`)."""
    pool = get_pool(view, address, record)
    return compute_value(pool.owner_shares, pool, record.stake) < self_stake_floor(pool, params)


def process_self_stake_floor(view: StateView, params: Params, height: int) -> list[Address]:
    """Jail every validator touched in this block (by its owner's unstake, a slash, anything) whose owner's
    own stake is now below its floor (`staking.min_self_stake`, or the owner's own higher one): an owner with nothing bonded would lose nothing to its
    validator's slashes (Cosmos x/staking jails on its `MinSelfDelegation` the same way). It stays jailed
    until its owner stakes back and unjails, which it may do from the next block (`jailed_until` is this
    height, unless an earlier jail ends later). Runs before the block's validator set is computed; returns
    the validators it jailed."""
    jailed = []
    for key in list(view.touched(b"V")):
        record = view.get(key, ValidatorRecord)
        assert record is not None
        address = Address(key[1:])
        if record.jailed or record.tombstoned or not is_self_stake_short(view, address, record, params):
            continue
        view.set_validator(address, record.replace(jailed=True, jailed_until=Height(max(record.jailed_until, height))))
        jailed.append(address)
    return jailed


def release_redelegations(view: StateView, height: int) -> None:
    """Redelegations maturing at `height` stop being slashable for their source (their locks end too)."""
    key = redelegation_key(height)
    if view.get_raw(key) is not None:
        view.delete(key)


def slash_redelegations(view: StateView, address: Address, offence_height: int, height: int, bps: int,
                        unbonding_blocks: int) -> int:
    """Slash `bps` of every redelegation out of `address` begun at or after the offence height, from the
    delegation at its destination (locked, so still there, though the destination's own slashes may have
    shrunk it: then as far as it goes). Returns the tokens taken, which the caller burns."""
    cuts = process_cut_since(view, RedelegationQueue, address, range(offence_height, height), unbonding_blocks, bps)
    return sum(_take_from_delegation(view, e.destination, e.delegator, cut) for e, cut in cuts)


def _take_from_delegation(view: StateView, address: Address, delegator: Address, amount: int) -> int:
    record = view.validator(address)
    d = view.get(delegation_key(address, delegator), Delegation)
    if record is None or d is None or amount == 0:
        return 0
    pool = get_pool(view, address, record)
    take = min(amount, compute_value(d.shares, pool, record.stake))
    if take == 0:
        return 0
    burned, removed = _burn_shares(pool, record.stake, d.shares, take)
    _unbond(view, delegator, address, record, pool, d, burned, removed)
    return removed
