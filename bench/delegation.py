"""Benchmark: a block's reward distribution does not grow with the number of delegators (lazy accounting).

For validators with 1 (the baseline), 100, 1,000 and 10,000 delegators (and 0: the owner holds everything,
the shorter path of a validator without a pool), each
delegation made by the VM's own `process_delegate` and committed to a state reader, it times one block's
reward work on a fresh `StateView`: a PoI reward, the proposer's bonus and the fee share paid to the
validator (`delegation.pay_rewards`, as `vm.process` calls it). Printed per size: blocks per second, and the
ratio against the baseline measured in the same run (1.00 = no growth); rates are medians of rounds that
alternate between the sizes, so load from other processes falls on all of them alike. For contrast, the same payments made
eagerly (crediting every delegator's account in the block) are timed on the same states.
Also printed: one delegator's withdraw-rewards, which is what the lazy scheme defers to.

Run: python -m bench.delegation [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench._util import rate
from core.keys import PrivateKey
from core.types import Address, Amount, Nonce
from tools.genesis import make_genesis
from vm.delegation import delegations_of, pay_rewards, process_delegate, process_withdraw
from vm.genesis import genesis_state, parse_genesis
from vm.state import Account, StateView
from vm.txs import Delegate, WithdrawRewards

TOKEN = 1_000_000
SIZES = (0, 1, 100, 1_000, 10_000)
ROUNDS = 5


class DictReader:
    """Committed state at one version, for the timed views to read through."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes, version: int) -> bytes | None:
        return self.data.get(key)


def build(n: int) -> tuple[DictReader, Address, list[Address]]:
    genesis = parse_genesis(make_genesis(1))
    view = genesis_state(genesis, lambda m: (1_000, 1_000))
    validator = genesis.validator_set().entries[0].address
    delegators = []
    for i in range(n):
        address = PrivateKey.derive("bench-delegation", "account", i).address
        view.set_account(address, Account(Amount(10 * TOKEN), Nonce(0)))
        process_delegate(view, 1, genesis.params, address, Delegate(validator, Amount(TOKEN + i)))
        delegators.append(address)
    data = {k: v for k, v in view.changes().items() if v is not None}
    return DictReader(data), validator, delegators


def lazy_block(reader: DictReader, validator: Address) -> None:
    view = StateView(reader, 1)
    record = view.validator(validator)
    assert record is not None
    for amount in (10 * TOKEN, 3 * TOKEN // 10, 12_345):  # PoI reward, proposer bonus, fee share
        pay_rewards(view, validator, record, amount)
    view.changes()


def eager_block(reader: DictReader, validator: Address, delegators: list[Address]) -> None:
    """What a block would cost if every delegator were credited in it (not the chain's rule)."""
    view = StateView(reader, 1)
    record = view.validator(validator)
    assert record is not None
    holdings = [(a, v) for a in delegators for _, v in delegations_of(view, a)]
    total = record.stake
    for amount in (10 * TOKEN, 3 * TOKEN // 10, 12_345):
        for address, value in holdings:
            account = view.account(address)
            view.set_account(address, account.replace(balance=Amount(account.balance + amount * value // total)))
    view.changes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter timings, sizes up to 1,000")
    args = parser.parse_args()
    sizes = SIZES[:4] if args.quick else SIZES
    seconds = 0.1 if args.quick else 0.3
    states = {n: build(n) for n in sizes}
    runs: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(ROUNDS):
        for n in sizes:
            reader, validator, _d = states[n]
            runs[n].append(rate(lambda r=reader, v=validator: lazy_block(r, v),  # type: ignore[misc]
                                min_seconds=seconds, batch=20))
    lazy_rates = {n: statistics.median(r) for n, r in runs.items()}
    baseline = lazy_rates[1]
    print("reward distribution per block (3 payments to one validator), lazy: the chain's rule")
    for n in sizes:
        reader, validator, delegators = states[n]
        lazy = lazy_rates[n]
        line = f"  {n:>6} delegators   lazy {lazy:>10,.0f} blocks/s   ratio to 1 delegator {lazy / baseline:5.2f}"
        if 1 < n <= 1_000:
            eager = rate(lambda r=reader, v=validator, d=delegators: eager_block(r, v, d),  # type: ignore[misc]
                         min_seconds=seconds, batch=1)
            line += f"   eager {eager:>8,.1f} blocks/s (ratio {eager / baseline:7.4f})"
        print(line)
    reader, validator, delegators = states[sizes[-1]]
    genesis_reader = reader

    def withdraw() -> None:
        view = StateView(genesis_reader, 1)
        process_withdraw(view, delegators[0], WithdrawRewards(validator))

    print(f"withdraw-rewards of one delegator ({sizes[-1]:,} delegators): {rate(withdraw, min_seconds=seconds):,.0f}/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
