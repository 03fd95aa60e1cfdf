"""Mempool bench: the cost of an add into a full pool (each one evicts), of filling it, of reaping a
block and of the recheck after committing it (the block's senders only, and every sender as every
FULL_RECHECK_HEIGHTS heights), at 100,000 transactions from 20,000 senders; and of the commit's `update`
when few senders run far ahead of the blocks (256 senders, 64 pending each: a block takes ~20 of each);
against the floor of an indexed add (one insert and one removal in a sorted list of 20,000 keys, measured in
the same run).

    python -m bench.mempool [--senders 20000] [--per-sender 5] [--evicting 2000] [--deep-senders 256]
                            [--deep-per-sender 64]

The state is a table (every account rich, nonce 0) behind the VM's real admission rule; signatures are
marked checked (a gossiped batch's case), so the figures are the mempool's own work. Before the indexes
(a full sort of every sender's tail per evicting add) this machine measured 29 ms per evicting add at
20,000 senders (284 ms under heavy load) and 674 ms to reap a block.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from dataclasses import dataclass

import trio
from sortedcontainers import SortedList

from core.tx import Transaction
from core.types import Address, Amount, Gas, Nonce
from core.votes import ZERO_SIGNATURE
from node.config import MempoolSection
from node.mempool import FULL_RECHECK_HEIGHTS, Mempool
from tools.genesis import make_genesis
from vm.execute import account_inclusion_error, admission_error
from vm.genesis import parse_params
from vm.state import Account
from vm.txs import KIND_OF, Transfer

CHAIN = "bench-mempool"
VM_PARAMS = parse_params(make_genesis(1, chain_id=CHAIN)).vm.replace(min_gas_price=Amount(1))


@dataclass
class _Account:
    balance: int
    nonce: int


class RichState:
    def account(self, address: Address) -> _Account:
        return _Account(10**15, 0)

    def check_tx(self, tx: Transaction, account: Account) -> str | None:
        return admission_error(tx, CHAIN, VM_PARAMS, account)

    def inclusion_error(self, tx: Transaction, account: Account) -> str | None:
        return account_inclusion_error(tx, CHAIN, VM_PARAMS, account)


_PAYLOAD = Transfer(Address(b"\x42" * 20), Amount(1)).encode()


def make_tx(sender: int, nonce: int, fee: int) -> Transaction:
    public_key = hashlib.sha256(b"sender %d" % sender).digest()
    tx = Transaction(CHAIN, public_key, Nonce(nonce), Gas(1000), Amount(fee), KIND_OF[Transfer], _PAYLOAD,
                     ZERO_SIGNATURE)
    tx.hash  # noqa: B018 - computed once, outside the timed part
    return tx


def sorted_floor(n: int, rounds: int) -> float:
    """Seconds per insert+remove in a SortedList of `n` tuple keys like the mempool's."""
    rng = random.Random(2)
    keys = SortedList((1, rng.randrange(10**6), -i, b"%d" % i) for i in range(n))
    start = time.perf_counter()
    for i in range(rounds):
        key = (1, rng.randrange(10**6), -n - i, b"x%d" % i)
        keys.add(key)
        keys.remove(key)
    return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=20_000)
    parser.add_argument("--per-sender", type=int, default=5)
    parser.add_argument("--evicting", type=int, default=2_000)
    parser.add_argument("--deep-senders", type=int, default=256)
    parser.add_argument("--deep-per-sender", type=int, default=64)
    args = parser.parse_args()
    rng = random.Random(1)
    fill = [make_tx(s, n, rng.randrange(1000, 100_000)) for s in range(args.senders)
            for n in range(args.per_sender)]
    # Newcomers that pay more than anything in the pool: each add evicts one tail.
    better = [make_tx(args.senders + i, 0, 200_000 + i) for i in range(args.evicting)]
    # A second pool where every fifth sender's transactions wait behind a nonce gap, and gapped newcomers
    # paying the most: each evicts the cheapest gapped one.
    fill_gapped = [make_tx(s, n + (3 if s % 5 == 0 else 0), rng.randrange(1000, 100_000))
                   for s in range(args.senders) for n in range(args.per_sender)]
    gapped = [make_tx(args.senders + args.evicting + i, 3, 10**6 + i) for i in range(args.evicting)]

    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=len(fill)))
    start = time.perf_counter()
    for tx in fill:
        mp.add(tx, signature_checked=True)
    fill_s = (time.perf_counter() - start) / len(fill)
    assert len(mp) == len(fill)
    start = time.perf_counter()
    for tx in better:
        assert mp.add(tx, signature_checked=True).added
    evict_s = (time.perf_counter() - start) / len(better)
    start = time.perf_counter()
    block = mp.reap(max_txs=5000, max_bytes=8 << 20, max_gas=10**12)
    reap_s = time.perf_counter() - start
    # The block commits: each of its senders' first nonces is used (the table state keeps nonce 0, so the
    # recheck keeps the rest pending); the recheck after it, then a full one.
    mp.update(1, block)
    start = time.perf_counter()
    trio.run(mp.recheck)
    recheck_block_s, block_senders = time.perf_counter() - start, mp.rechecked
    mp.update(FULL_RECHECK_HEIGHTS, [])
    start = time.perf_counter()
    trio.run(mp.recheck)
    recheck_full_s, all_senders = time.perf_counter() - start, mp.rechecked - block_senders

    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=len(fill_gapped)))
    for tx in fill_gapped:
        mp.add(tx, signature_checked=True)
    assert len(mp) == len(fill_gapped) and mp.gapped_count() == len(fill_gapped) // 5
    start = time.perf_counter()
    for tx in gapped:
        assert mp.add(tx, signature_checked=True).added
    gapped_s = (time.perf_counter() - start) / len(gapped)
    floor = sorted_floor(args.senders, 20_000)

    # The devnet's shape: few senders far ahead of the blocks (bench/devnet.py: 256 senders, 16-64 pending
    # each), so a block commits a run prefix of each: the commit's `update`, per committed transaction.
    deep = [make_tx(s, n, 5000) for s in range(args.deep_senders) for n in range(args.deep_per_sender)]
    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=len(deep), max_txs_per_sender=args.deep_per_sender))
    for tx in deep:
        mp.add(tx, signature_checked=True)
    deep_block = mp.reap(max_txs=5000, max_bytes=8 << 20, max_gas=10**12)
    start = time.perf_counter()
    mp.update(1, deep_block)
    update_s = (time.perf_counter() - start) / len(deep_block)
    assert len(mp) == len(deep) - len(deep_block)

    print(f"mempool bench: {len(fill):,} transactions from {args.senders:,} senders, full pool")
    print(f"  fill: add                      {fill_s * 1e6:10.1f} us/add")
    print(f"  full: add evicting a tail      {evict_s * 1e6:10.1f} us/add")
    print(f"  full, 20% gapped: gapped add   {gapped_s * 1e6:10.1f} us/add")
    print(f"  reap a block of {len(block):,} txs       {reap_s * 1e3:10.1f} ms")
    print(f"  recheck after it: its {block_senders:,} senders {recheck_block_s * 1e3:8.1f} ms   "
          f"every sender ({all_senders:,}) {recheck_full_s * 1e3:8.1f} ms   ratio {recheck_full_s / recheck_block_s:5.1f}")
    print(f"  commit of a {len(deep_block):,}-tx block, {args.deep_senders} senders {args.deep_per_sender} deep: "
          f"update {update_s * 1e6:6.1f} us per committed tx   ratio update / floor {update_s / floor:6.1f}")
    print(f"  floor: SortedList add+remove   {floor * 1e6:10.1f} us     ratio evicting add / floor "
          f"{evict_s / floor:6.1f}")


if __name__ == "__main__":
    main()
