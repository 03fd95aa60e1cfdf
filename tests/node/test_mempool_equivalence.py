"""The mempool's indexes against their definitions: a reference pool whose eviction victims and proposal order
are computed by brute force over every sender (no index) and the real pool are driven through the same
seeded random traffic (adds from peers and clients, replacements, gapped nonces, evictions by count and by
bytes, blocks that commit reaped prefixes and foreign transactions, rechecks with balances that shrink,
expiry, disagreements, reaps under small budgets and a proposer's hold) and must answer every call the same
way and tell their listeners the same removals in the same order."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import trio

from core.tx import Transaction
from core.types import Address
from node.mempool import (
    _REAP_MISSES,
    FULL_RECHECK_HEIGHTS,
    Mempool,
    RemovalReason,
    _Entry,
    _EvictKey,
    _projected,
)
from tests.node.test_mempool import KEYS, Accounts, pool, tx

pytestmark = pytest.mark.node


class ReferencePool(Mempool):
    """The same pool with `_victims`, `reap` and `recheck` as their definitions, over every sender (every
    pending transaction of each sender rechecked) each time."""

    async def recheck(self) -> None:
        height = self._height
        full = height - self._full_at >= FULL_RECHECK_HEIGHTS or height >= self._expiry_due
        keys = list(self._senders) if full else [k for k in self._touched if k in self._senders]
        self._touched = set()
        if full:
            self._full_at, self._expiry_due = height, math.inf
        ttl, gapped_ttl = self.config.ttl_heights, self.config.gapped_ttl_heights
        for key in keys:
            sender = self._senders.get(key)
            if sender is None:
                continue
            account = self._state.account(Address(key))
            sender.nonce, sender.balance = int(account.nonce), int(account.balance)
            self._touch(key, sender)
            fees = 0
            for nonce, entry in sorted(sender.txs.items()):
                if nonce < sender.nonce:
                    self._remove(entry, RemovalReason.STALE_NONCE)
                    continue
                projected = _projected(sender.balance - fees, nonce)
                fees += entry.tx.fee
                age = height - entry.added_height
                if self._state.inclusion_error(entry.tx, projected) is not None:
                    self._remove(entry, RemovalReason.INSUFFICIENT_BALANCE)
                elif age > ttl or (age > gapped_ttl and nonce > sender.ready_end):
                    self._remove(entry, RemovalReason.EXPIRED)
                elif full:
                    self._expiry_due = min(self._expiry_due, entry.added_height + self._ttl() + 1)

    def _victims(self, entry: _Entry, ready: bool, *, count: int, size: int, max_txs: int,
                 max_bytes: int) -> list[_Entry] | None:
        need_count = len(self._by_hash) + count - max_txs
        need_bytes = self._bytes + size - max_bytes
        bound = (1 if ready else 0, entry.price)
        left = {key: sorted(s.txs) for key, s in self._senders.items() if key != bytes(entry.sender)}
        victims: list[_Entry] = []
        while need_count > 0 or need_bytes > 0:
            # Every other sender's tail now (its last nonce not taken yet), ready as the sender stands.
            tails: list[tuple[_EvictKey, _Entry]] = []
            for key, nonces in left.items():
                if nonces:
                    s = self._senders[key]
                    tail = s.txs[nonces[-1]]
                    tails.append(((1 if s.is_ready(tail.tx.nonce) else 0, tail.price, -tail.seq, key), tail))
            below = [t for t in tails if t[0] < bound]
            if not below:
                return None
            key_, victim = min(below, key=lambda t: t[0])
            left[key_[3]].pop()
            victims.append(victim)
            need_count -= 1
            need_bytes -= victim.size
        return victims

    def reap(self, *, max_txs: int, max_bytes: int, max_gas: int,
             may_propose: Callable[[bytes], bool] | None = None) -> list[Transaction]:
        chains = {key: s.nonce for key, s in self._senders.items() if s.nonce in s.txs}
        out: list[Transaction] = []
        size = gas = misses = 0
        while chains and len(out) < max_txs and misses < _REAP_MISSES:
            key = min(chains, key=lambda k: (-self._senders[k].txs[chains[k]].price,
                                             self._senders[k].txs[chains[k]].seq))
            entry = self._senders[key].txs[chains.pop(key)]
            held = may_propose is not None and not may_propose(entry.tx_hash)
            if held or self.is_backed_off(entry.tx_hash):
                continue  # the sender's later nonces wait behind it
            fits = size + entry.size <= max_bytes and gas + entry.tx.gas_limit <= max_gas
            misses = 0 if fits else misses + 1
            if fits:
                out.append(entry.tx)
                size, gas = size + entry.size, gas + entry.tx.gas_limit
                if entry.tx.nonce + 1 in self._senders[key].txs:
                    chains[key] = entry.tx.nonce + 1
        return out


def _drive(seed: int, make: Callable[..., Mempool], txs: dict[tuple[int, int, int, int], Transaction]) -> list[object]:
    """Run the seed's traffic on a pool made by `make`; every answer and removal in order."""
    rng = random.Random(seed)
    accounts = Accounts(balance=rng.choice([12_000, 40_000, 10**9]))
    log: list[object] = []
    config = dict(max_txs=rng.randrange(6, 20), max_txs_per_sender=rng.randrange(3, 9),
                  max_nonce_gap=rng.randrange(4, 10), max_gapped_per_sender=rng.randrange(1, 4),
                  ttl_heights=rng.randrange(6, 30), gapped_ttl_heights=rng.randrange(2, 6))
    if seed % 2:  # long TTLs: most rechecks read only the blocks' senders (none may have expired)
        config.update(ttl_heights=rng.randrange(200, 400), gapped_ttl_heights=rng.randrange(100, 200))
    if seed % 3 == 0:
        config["max_bytes"] = 20 * len(tx(0, 0).encode())
    mp = make(accounts, **config)
    mp.on_removed(lambda h, t, r: log.append(("removed", bytes(h), r)))

    def get(key: int, nonce: int, fee: int) -> Transaction:
        gas = rng.choice([1000, 1000, 2000])
        if (key, nonce, fee, gas) not in txs:
            txs[key, nonce, fee, gas] = tx(key, nonce, fee=fee, gas=gas)
        return txs[key, nonce, fee, gas]

    for step in range(300):
        op = rng.random()
        if op < 0.75:
            k = rng.randrange(len(KEYS))
            nonce = accounts.table[bytes(KEYS[k].address)].nonce + rng.choice([0, 0, 1, 1, 2, 3, rng.randrange(9)])
            result = mp.add(get(k, nonce, rng.choice([1000, 1500, 2000, 2600, 4000])), signature_checked=True,
                            from_client=rng.random() < 0.3)
            log.append(("add", result))
        elif op < 0.87:
            budget = rng.choice([(1000, 10**9), (rng.randrange(1, 12), 10**9), (50, 3 * 400)])
            hold = {bytes(t.hash) for t in mp.txs() if rng.random() < 0.1}
            block = mp.reap(max_txs=budget[0], max_bytes=budget[1], max_gas=rng.choice([10**12, 9000]),
                            may_propose=lambda h, hold=hold: bytes(h) not in hold)
            log.append(("reap", [bytes(t.hash) for t in block]))
            if rng.random() < 0.7:  # the block commits, with a foreign transaction now and then
                committed = block[:rng.randrange(len(block) + 1)]
                if rng.random() < 0.3:
                    k = rng.randrange(len(KEYS))
                    committed.append(get(k, accounts.table[bytes(KEYS[k].address)].nonce, 1111))
                for t in committed:
                    acct = accounts.table[bytes(t.sender_address)]
                    if t.nonce == acct.nonce:
                        acct.nonce += 1
                        acct.balance = max(0, acct.balance - t.fee - rng.choice([0, 1, 3000]))
                mp.update(mp.height + rng.choice([1, 1, 2, 5]), committed)
                trio.run(mp.recheck)
                log.append(("after block", len(mp), mp.size_bytes))
        elif op < 0.94:
            pending = list(mp.txs())
            if pending:
                victim = rng.choice(pending)
                log.append(("disagree", mp.report_disagreement(victim.hash, bytes([step % 5]) * 20, mp.height)))
        else:
            log.append(("reap all", [bytes(t.hash) for t in mp.reap(max_txs=1000, max_bytes=10**9,
                                                                      max_gas=10**12)]))
        log.append(("state", sorted(bytes(t.hash) for t in mp.txs()), mp.gapped_count()))
    return log


@pytest.mark.parametrize("seed", range(24))
def test_the_pool_answers_as_the_definitions_of_its_indexes_do(seed: int) -> None:
    txs: dict[tuple[int, int, int, int], Transaction] = {}  # signed once, shared by both runs
    reference = _drive(seed, lambda accounts, **config: ReferencePool(
        "mempool-test", accounts, pool(accounts, **config).config), txs)
    real = _drive(seed, pool, txs)
    assert real == reference
    kinds = {entry[0] for entry in reference if isinstance(entry, tuple)}
    reasons = {entry[2] for entry in reference if isinstance(entry, tuple) and entry[0] == "removed"}
    assert {"add", "reap", "after block", "disagree", "reap all"} <= kinds
    assert RemovalReason.EVICTED in reasons and RemovalReason.COMMITTED in reasons, reasons
