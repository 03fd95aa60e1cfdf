"""Mempool bench: the cost of an add into a full pool (each one evicts), of filling it, of reaping a
block and of the recheck after committing it (the block's senders only, and every sender as every
FULL_RECHECK_HEIGHTS heights), at 100,000 transactions from 20,000 senders; and of the commit's `update`
when few senders run far ahead of the blocks (256 senders, 64 pending each: a block takes ~20 of each);
against the floor of an indexed add (one insert and one removal in a sorted list of 20,000 keys, measured in
the same run). Then the devnet's steady state (`--blocks` rounds): 256 senders ~64 deep, one fee, arriving
round-robin (a block takes a few of each sender's, oldest first); each round reaps a block of `--block` transactions, commits it (`update`, then `recheck` of its senders against a state that
follows the commits) and adds as many new transactions at the senders' next nonces: CPU per add, per reap,
and per committed transaction for the update and the recheck.

    python -m bench.mempool [--senders 20000] [--per-sender 5] [--evicting 2000] [--deep-senders 256]
                            [--deep-per-sender 64] [--blocks 20] [--block 2000]

Every figure is process CPU time (`time.process_time`), so a loaded machine inflates it less than wall time.
The garbage collector runs with the node's thresholds (node.gctune; `INFERCHAIN_GC=python` for the
interpreter's): with the interpreter's, where its collections land moves an add's figure by ~2x.

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
from dataclasses import dataclass, field

import trio
from sortedcontainers import SortedList

from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Address, Amount, Gas, Hash32, Nonce, PublicKeyBytes
from core.votes import ZERO_SIGNATURE
from node import gctune
from node.config import MempoolSection
from node.mempool import FULL_RECHECK_HEIGHTS, MEMPOOL_FULL, Mempool
from tools.genesis import make_genesis
from vm.execute import account_inclusion_error, admission_error
from vm.genesis import parse_params
from vm.state import Account
from vm.txs import KIND_OF, Infer, Transfer, decoded_payload

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


@dataclass
class TableState(RichState):
    """Every account rich, its nonce as the committed blocks left it."""

    nonces: dict[bytes, int] = field(default_factory=dict)

    def account(self, address: Address) -> _Account:
        return _Account(10**15, self.nonces.get(bytes(address), 0))


_PAYLOAD = Transfer(Address(b"\x42" * 20), Amount(1)).encode()
# A tiny exact-class inference as the inference devnet sends it (digits_int8: uint8[1,64] in).
_INFER = Infer(Hash32(b"\x07" * 32), (Tensor(DType.UINT8, (1, 64), bytes(range(64))),), Amount(0)).encode()
INFER_GAS = 261_365  # the devnet's safe quote for digits_int8


def make_tx(sender: int, nonce: int, fee: int, *, infer: bool = False) -> Transaction:
    public_key = PublicKeyBytes(hashlib.sha256(b"sender %d" % sender).digest())
    kind, payload, gas = (KIND_OF[Infer], _INFER, INFER_GAS) if infer else (KIND_OF[Transfer], _PAYLOAD, 1000)
    tx = Transaction(CHAIN, public_key, Nonce(nonce), Gas(gas), Amount(fee * gas // 1000), kind, payload,
                     ZERO_SIGNATURE)
    tx = Transaction.decode(tx.encode())  # as a node holds it: decoded, its encoding kept
    tx.hash  # noqa: B018 - computed once, outside the timed part
    return tx


def sorted_floor(n: int, rounds: int) -> float:
    """Seconds per insert+remove in a SortedList of `n` tuple keys like the mempool's."""
    rng = random.Random(2)
    keys = SortedList((1, rng.randrange(10**6), -i, b"%d" % i) for i in range(n))
    start = time.process_time()
    for i in range(rounds):
        key = (1, rng.randrange(10**6), -n - i, b"x%d" % i)
        keys.add(key)
        keys.remove(key)
    return (time.process_time() - start) / rounds


def steady(senders: int, depth: int, blocks: int, block: int, *, infer: bool = False) -> dict[str, float]:
    """The devnet's shape: CPU seconds per add, per reap, and per committed transaction for update and
    recheck, over `blocks` rounds of reap, commit, recheck and refill (`infer`: tiny inferences, else
    transfers)."""
    state = TableState()
    mp = Mempool(CHAIN, state, MempoolSection(max_txs=4 * senders * depth, max_txs_per_sender=4 * depth))
    next_nonce = [0] * senders
    address = [make_tx(s, 0, 5000).sender_address for s in range(senders)]
    index = {bytes(a): s for s, a in enumerate(address)}

    def refill(who: list[int]) -> list[Transaction]:
        """One transaction at the next nonce of each sender in `who`."""
        out = []
        for s in who:
            out.append(make_tx(s, next_nonce[s], 5000, infer=infer))  # one fee, as the devnet's driver sends
            next_nonce[s] += 1
        return out

    for tx in refill([s for _ in range(depth) for s in range(senders)]):
        mp.add(tx, signature_checked=True)
    add_s = reap_s = update_s = recheck_s = 0.0
    adds = committed = 0
    for height in range(1, blocks + 1):
        start = time.process_time()
        txs = mp.reap(max_txs=block, max_bytes=8 << 20, max_gas=10**12)
        reap_s += time.process_time() - start
        for tx in txs:
            state.nonces[bytes(tx.sender_address)] = tx.nonce + 1
        start = time.process_time()
        mp.update(height, txs)
        update_s += time.process_time() - start
        start = time.process_time()
        trio.run(mp.recheck)
        recheck_s += time.process_time() - start
        committed += len(txs)
        new = refill([index[bytes(tx.sender_address)] for tx in txs])
        start = time.process_time()
        for tx in new:
            mp.add(tx, signature_checked=True)
        add_s += time.process_time() - start
        adds += len(new)
    assert committed == blocks * block and len(mp) == senders * depth, (committed, len(mp))
    assert all(bytes(a) in mp._senders for a in address)
    return {"add": add_s / adds, "reap": reap_s / blocks, "update": update_s / committed,
            "recheck": recheck_s / committed}


def refused(senders: int, depth: int, rounds: int) -> float:
    """The inference devnet's pool past its client share: one fee everywhere, every tail ready, so a client's
    add finds nothing to evict and is refused (`mempool full, retry later`; the client sends it again). Each
    round takes three gossiped transactions (the pool is under its count) and refuses one client's: CPU
    seconds per refused add, payloads decoded beforehand (the mempool's own work)."""
    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=2 * senders * depth, max_txs_per_sender=4 * depth))
    for n in range(depth):
        for s in range(senders):
            mp.add(make_tx(s, n, 5000, infer=True), signature_checked=True)
    gossip = [make_tx(s % senders, depth + s // senders, 5000, infer=True) for s in range(3 * rounds)]
    client = [make_tx(senders + i, 0, 5000, infer=True) for i in range(rounds)]
    for tx in (*gossip, *client):
        decoded_payload(tx)
    spent = 0.0
    for i in range(rounds):
        for tx in gossip[3 * i:3 * i + 3]:
            assert mp.add(tx, signature_checked=True).added
        start = time.process_time()
        result = mp.add(client[i], signature_checked=True, from_client=True)
        spent += time.process_time() - start
        assert result.reason == MEMPOOL_FULL, result
    return spent / rounds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=20_000)
    parser.add_argument("--per-sender", type=int, default=5)
    parser.add_argument("--evicting", type=int, default=2_000)
    parser.add_argument("--deep-senders", type=int, default=256)
    parser.add_argument("--deep-per-sender", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block", type=int, default=2000)
    parser.add_argument("--only-steady", action="store_true", help="the steady-state runs alone")
    args = parser.parse_args()
    gctune.apply(gctune.get_setting())  # the node's collector thresholds: its young collections are rarer
    if not args.only_steady:
        pools(args)
    print(f"refused client add, pool past its client share (4,000 senders ~5 deep, one fee, 3 gossiped adds "
          f"between): {refused(4000, 5, 2000) * 1e6:6.2f} us (CPU)")
    for name, senders, depth, block, infer in (
            (f"{args.deep_senders} senders ~{args.deep_per_sender} deep, transfers", args.deep_senders,
             args.deep_per_sender, args.block, False),
            ("the inference devnet's: 4,000 senders ~5 deep, tiny inferences", 4000, 5, 2700, True),
            ("the transfer devnet's: 4,000 senders ~2 deep, transfers", 4000, 2, 600, False)):
        fig = steady(senders, depth, args.blocks, block, infer=infer)
        print(f"steady state, {name}, {args.blocks} blocks of {block:,} (CPU)")
        print(f"  add {fig['add'] * 1e6:6.2f} us   reap {fig['reap'] * 1e3:6.2f} ms per block   "
              f"update {fig['update'] * 1e6:6.2f} us and recheck {fig['recheck'] * 1e6:6.2f} us per committed tx   "
              f"sum per tx {(fig['add'] + fig['update'] + fig['recheck']) * 1e6 + fig['reap'] * 1e6 / block:6.2f} us")


def pools(args: argparse.Namespace) -> None:
    """The pool figures: filling, evicting adds, reap and recheck at `--senders`, the deep commit."""
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
    start = time.process_time()
    for tx in fill:
        mp.add(tx, signature_checked=True)
    fill_s = (time.process_time() - start) / len(fill)
    assert len(mp) == len(fill)
    # The first add into the full pool apart: an index kept current on every add (a sorted list) costs the
    # same as any other; one brought up to date when read (node.lazyindex) computes every sender's key then.
    start = time.process_time()
    assert mp.add(better[0], signature_checked=True).added
    first_s = time.process_time() - start
    start = time.process_time()
    for tx in better[1:]:
        assert mp.add(tx, signature_checked=True).added
    evict_s = (time.process_time() - start) / (len(better) - 1)
    start = time.process_time()
    block = mp.reap(max_txs=5000, max_bytes=8 << 20, max_gas=10**12)
    reap_s = time.process_time() - start
    # The block commits: each of its senders' first nonces is used (the table state keeps nonce 0, so the
    # recheck keeps the rest pending); the recheck after it, then a full one.
    mp.update(1, block)
    start = time.process_time()
    trio.run(mp.recheck)
    recheck_block_s, block_senders = time.process_time() - start, mp.rechecked
    mp.update(FULL_RECHECK_HEIGHTS, [])
    start = time.process_time()
    trio.run(mp.recheck)
    recheck_full_s, all_senders = time.process_time() - start, mp.rechecked - block_senders
    # The next proposal, as a node reaps it: after the commit and its recheck.
    start = time.process_time()
    block2 = mp.reap(max_txs=5000, max_bytes=8 << 20, max_gas=10**12)
    reap2_s = time.process_time() - start

    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=len(fill_gapped)))
    for tx in fill_gapped:
        mp.add(tx, signature_checked=True)
    assert len(mp) == len(fill_gapped) and mp.gapped_count() == len(fill_gapped) // 5
    start = time.process_time()
    assert mp.add(gapped[0], signature_checked=True).added
    first_gapped_s = time.process_time() - start
    start = time.process_time()
    for tx in gapped[1:]:
        assert mp.add(tx, signature_checked=True).added
    gapped_s = (time.process_time() - start) / (len(gapped) - 1)
    floor = sorted_floor(args.senders, 20_000)

    # The devnet's shape: few senders far ahead of the blocks (bench/devnet.py: 256 senders, 16-64 pending
    # each), so a block commits a run prefix of each: the commit's `update`, per committed transaction.
    deep = [make_tx(s, n, 5000) for s in range(args.deep_senders) for n in range(args.deep_per_sender)]
    mp = Mempool(CHAIN, RichState(), MempoolSection(max_txs=len(deep), max_txs_per_sender=args.deep_per_sender))
    for tx in deep:
        mp.add(tx, signature_checked=True)
    deep_block = mp.reap(max_txs=5000, max_bytes=8 << 20, max_gas=10**12)
    start = time.process_time()
    mp.update(1, deep_block)
    update_s = (time.process_time() - start) / len(deep_block)
    assert len(mp) == len(deep) - len(deep_block)

    print(f"mempool bench: {len(fill):,} transactions from {args.senders:,} senders, full pool")
    print(f"  fill: add                      {fill_s * 1e6:10.1f} us/add")
    print(f"  full: add evicting a tail      {evict_s * 1e6:10.1f} us/add   (the first one {first_s * 1e3:.1f} ms)")
    print(f"  full, 20% gapped: gapped add   {gapped_s * 1e6:10.1f} us/add   (the first one {first_gapped_s * 1e3:.1f} ms)")
    print(f"  reap a block of {len(block):,} txs       {reap_s * 1e3:10.1f} ms   (the next one, after the commit "
          f"and its recheck: {len(block2):,} txs {reap2_s * 1e3:.1f} ms)")
    print(f"  recheck after it: its {block_senders:,} senders {recheck_block_s * 1e3:8.1f} ms   "
          f"every sender ({all_senders:,}) {recheck_full_s * 1e3:8.1f} ms   ratio {recheck_full_s / recheck_block_s:5.1f}")
    print(f"  commit of a {len(deep_block):,}-tx block, {args.deep_senders} senders {args.deep_per_sender} deep: "
          f"update {update_s * 1e6:6.1f} us per committed tx   ratio update / floor {update_s / floor:6.1f}")
    print(f"  floor: SortedList add+remove   {floor * 1e6:10.1f} us     ratio evicting add / floor "
          f"{evict_s / floor:6.1f}")


if __name__ == "__main__":
    main()
