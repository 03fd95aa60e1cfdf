"""Benchmark: what each staking and delegation kind does (state records read and written) and what it costs
in time, beside the gas the schedule charges it, with a transfer as the baseline of the same run.

Each transaction runs through the VM's own `execute_tx` (fee, nonce and the kind's handler; signatures are
checked elsewhere) on a fresh `StateView` over committed state held in a dict: a chain of two validators
with published terms, where the sender already delegates to the source validator (so delegate, undelegate,
redelegate and withdraw-rewards settle pending rewards, their longest path). `reads` counts the records
fetched from committed state, `writes` the records the transaction changes (its fee and nonce included).
The gas schedule for the delegation kinds (docs/staking.md, "Gas") is priced from these counts; the time
column says whether that keeps them in line with a transfer's price for its time (`time ratio` and
`gas ratio` both against a transfer; gas / time ratio >= 1 means no cheaper per second than a transfer).

Run: python -m bench.delegation_gas [--quick]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from bench._util import rate
from core.address import address_from_public_key
from core.codec import Wire
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Amount, Height, Nonce, PublicKeyBytes, Timestamp
from tools.genesis import TOKEN, make_genesis
from vm.delegation import pay_rewards, process_delegate
from vm.execute import BlockContext, BlockModels, execute_tx
from vm.genesis import Genesis, genesis_state, parse_genesis
from vm.state import Account, StateView
from vm.txs import (
    Delegate,
    EditValidator,
    Redelegate,
    Stake,
    Transfer,
    Undelegate,
    Unstake,
    WithdrawRewards,
    build_tx,
)

ROUNDS = 5


class CountingReader:
    """Committed state at one version; counts the records fetched."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data
        self.reads = 0

    def get(self, key: bytes, version: int) -> bytes | None:
        self.reads += 1
        return self.data.get(key)


def build() -> tuple[Genesis, dict[bytes, bytes], PrivateKey, list[Address]]:
    """Committed state: two validators; `delegator` delegates to the first, which has earned rewards."""
    genesis = parse_genesis(make_genesis(2))
    view = genesis_state(genesis, lambda m: (1_000, 1_000))
    validators = sorted(e.address for e in genesis.validator_set().entries)
    delegator = PrivateKey.derive("bench-delegation-gas", "account", 0)
    view.set_account(delegator.address, Account(Amount(1_000 * TOKEN), Nonce(0)))
    view.set_account(PrivateKey.derive("bench-delegation-gas", "account", 1).address,
                     Account(Amount(1_000 * TOKEN), Nonce(0)))
    process_delegate(view, 1, genesis.params, delegator.address, Delegate(validators[0], Amount(100 * TOKEN)))
    record = view.validator(validators[0])
    assert record is not None
    pay_rewards(view, validators[0], record, 10 * TOKEN)
    data = {k: v for k, v in view.changes().items() if v is not None}
    return genesis, data, delegator, validators


def cases(genesis: Genesis, delegator: PrivateKey, validators: list[Address]) -> dict[str, tuple[PrivateKey, Wire]]:
    assert genesis.seed_phrase is not None
    accounts = [PrivateKey.derive(genesis.seed_phrase, "account", i) for i in range(len(genesis.validators))]
    owners, keys = {}, {}
    for entry in genesis.validators:
        address = address_from_public_key(entry.public_key)
        owners[address] = next(key for key in accounts if key.address == entry.owner)
        keys[address] = PublicKeyBytes(entry.public_key)
    a, b = validators
    stranger = PrivateKey.derive("bench-delegation-gas", "account", 1)
    return {
        "transfer": (delegator, Transfer(stranger.address, Amount(TOKEN))),
        "stake": (owners[a], Stake(keys[a], Amount(TOKEN))),
        "unstake": (owners[a], Unstake(keys[a], Amount(TOKEN))),
        "delegate": (delegator, Delegate(a, Amount(TOKEN))),
        "delegate (first)": (stranger, Delegate(a, Amount(TOKEN))),
        "undelegate": (delegator, Undelegate(a, Amount(TOKEN))),
        "undelegate (all)": (delegator, Undelegate(a, Amount(100 * TOKEN))),
        "redelegate": (delegator, Redelegate(a, b, Amount(TOKEN))),
        "withdraw-rewards (one)": (delegator, WithdrawRewards(a)),
        "edit-validator": (owners[b], EditValidator(keys[b], 0, 1_000, 100)),  # b: no delegators, terms free
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    args = parser.parse_args()
    seconds = 0.1 if args.quick else 0.3
    genesis, data, delegator, validators = build()
    params = genesis.params
    ctx = BlockContext(genesis.chain_id, Height(2), Timestamp(0), validators[0], params)
    txs: dict[str, tuple[Transaction, Wire]] = {}
    for name, (key, payload) in cases(genesis, delegator, validators).items():
        txs[name] = (build_tx(key, payload, chain_id=genesis.chain_id, nonce=0, gas_limit=1_000_000,
                              fee=1_000_000 * params.vm.min_gas_price), payload)
    counts = {}
    for name, (tx, _payload) in txs.items():
        reader = CountingReader(data)
        view = StateView(reader, 1)
        result = execute_tx(view, ctx, 0, tx, models=BlockModels(1)).result
        assert result.status == 0, f"{name}: {result.log}"
        counts[name] = (reader.reads, len(view.changes()), int(result.gas_used))

    def run_one(tx: Transaction) -> Callable[[], None]:
        def go() -> None:
            view = StateView(CountingReader(data), 1)
            execute_tx(view, ctx, 0, tx, models=BlockModels(1))
            view.changes()
        return go

    runs: dict[str, list[float]] = {name: [] for name in txs}
    for _ in range(ROUNDS):  # alternate the kinds, so load from other processes falls on all alike
        for name, (tx, _payload) in txs.items():
            runs[name].append(rate(run_one(tx), min_seconds=seconds, batch=50))
    micros = {name: 1e6 / statistics.median(r) for name, r in runs.items()}
    base_us, base_gas = micros["transfer"], counts["transfer"][2]
    print("per transaction through execute_tx (fee, nonce, handler), committed state in a dict")
    print(f"  {'kind':<24}{'reads':>6}{'writes':>7}{'us':>8}{'time ratio':>12}{'gas':>9}{'gas ratio':>11}"
          f"{'gas/time':>10}")
    for name in txs:
        reads, writes, gas = counts[name]
        t_ratio, g_ratio = micros[name] / base_us, gas / base_gas
        print(f"  {name:<24}{reads:>6}{writes:>7}{micros[name]:>8.1f}{t_ratio:>12.2f}{gas:>9,}{g_ratio:>11.2f}"
              f"{g_ratio / t_ratio:>10.2f}")


if __name__ == "__main__":
    main()
