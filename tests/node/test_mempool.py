"""Mempool: entry checks, proposal order (fee per gas, then nonce), limits and eviction, re-check after a
block, and the disagreement back-off of docs/design.md §2.6."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Amount
from node.config import MempoolSection
from node.mempool import REJECTED_DISAGREED, Mempool, RemovalReason
from node.sigcache import SigCache
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.node

CHAIN = "mempool-test"
KEYS = [PrivateKey.derive("mempool tests", "account", i) for i in range(8)]
SINK = Address(b"\x42" * 20)


@dataclass
class _Account:
    balance: int
    nonce: int


class Accounts:
    """The committed state the mempool reads, as a table (the mempool only sees it through MempoolState)."""

    def __init__(self, balance: int = 10**9) -> None:
        self.table: dict[bytes, _Account] = {bytes(k.address): _Account(balance, 0) for k in KEYS}
        self.gas_price = 1
        self.tx_gas = 1_000_000

    def account(self, address: Address) -> _Account:
        return self.table.get(bytes(address), _Account(0, 0))

    def min_gas_price(self) -> int:
        return self.gas_price

    def max_tx_gas(self) -> int:
        return self.tx_gas


def tx(key: int, nonce: int, *, fee: int = 1000, gas: int = 1000, chain: str = CHAIN) -> Transaction:
    return build_tx(KEYS[key], Transfer(SINK, Amount(1)), chain_id=chain, nonce=nonce, gas_limit=gas, fee=fee)


def pool(accounts: Accounts | None = None, **config: int) -> Mempool:
    return Mempool(CHAIN, accounts or Accounts(), MempoolSection(**config))


def reap(mp: Mempool, n: int = 1000) -> list[Transaction]:
    return mp.reap(max_txs=n, max_bytes=10**9, max_gas=10**12)


def test_accepts_a_valid_transaction_once_and_refuses_what_cannot_be_included() -> None:
    accounts = Accounts()
    mp = pool(accounts)
    good = tx(0, 0)
    assert mp.add(good).added
    again = mp.add(good)
    assert again.accepted and not again.added
    assert not mp.add(tx(0, 0, chain="other")).accepted
    assert "below" in mp.add(tx(1, 0, fee=999, gas=1000)).reason
    assert "maximum" in mp.add(tx(1, 0, fee=10**7, gas=2_000_000)).reason
    bad_sig = tx(2, 0).replace(signature=tx(3, 0).signature)
    assert mp.add(bad_sig).reason == "invalid signature"
    accounts.table[bytes(KEYS[4].address)].nonce = 5
    assert "already used" in mp.add(tx(4, 4)).reason
    assert "too far ahead" in mp.add(tx(4, 5 + 65)).reason
    accounts.table[bytes(KEYS[5].address)].balance = 2500
    assert mp.add(tx(5, 0)).added and mp.add(tx(5, 1)).added
    assert "cannot pay" in mp.add(tx(5, 2)).reason
    assert len(mp) == 3


def test_each_signature_is_verified_once_and_gossip_checked_ones_never() -> None:
    cache = SigCache()
    mp = Mempool(CHAIN, Accounts(), MempoolSection(), cache)
    first = tx(0, 0)
    mp.add(first)
    assert cache.verifications == 1
    assert cache.verify(first)  # block validation asks again: a hit, not a verification
    assert cache.verifications == 1 and cache.hits == 1
    gossiped = tx(1, 0)
    assert mp.add(gossiped, signature_checked=True).added
    assert cache.verifications == 1 and gossiped.hash in cache


def test_proposal_order_is_fee_per_gas_then_each_senders_nonce_order() -> None:
    mp = pool()
    # sender 0: nonce 0 cheap, nonce 1 expensive: 1 must wait for 0.
    mp.add(tx(0, 1, fee=9000))
    mp.add(tx(0, 0, fee=1000))
    mp.add(tx(1, 0, fee=5000))
    mp.add(tx(2, 0, fee=3000, gas=1000))
    mp.add(tx(3, 0, fee=3000, gas=500))  # 6 per gas
    mp.add(tx(4, 3, fee=9999))  # nonce gap: not executable
    order = [(KEYS.index(next(k for k in KEYS if k.public_key == t.sender)), t.nonce) for t in reap(mp)]
    assert order == [(3, 0), (1, 0), (2, 0), (0, 0), (0, 1)]
    assert [t.nonce for t in mp.reap(max_txs=2, max_bytes=10**9, max_gas=10**9)] == [0, 0]


def test_reap_respects_gas_and_bytes_budgets_without_opening_nonce_gaps() -> None:
    mp = pool()
    mp.add(tx(0, 0, fee=50_000, gas=5000))
    mp.add(tx(0, 1, fee=50_000, gas=5000))
    mp.add(tx(1, 0, fee=2000, gas=1000))
    got = mp.reap(max_txs=100, max_bytes=10**9, max_gas=7000)
    assert [(t.sender, t.nonce) for t in got] == [(KEYS[0].public_key, 0), (KEYS[1].public_key, 0)]
    one = len(tx(0, 0).encode())
    assert len(mp.reap(max_txs=100, max_bytes=one, max_gas=10**9)) == 1


def test_count_and_sender_limits_and_eviction_of_the_cheapest_tail() -> None:
    mp = pool(max_txs=3, max_txs_per_sender=2)
    removed: list[tuple[bytes, RemovalReason]] = []
    mp.on_removed(lambda h, t, r: removed.append((bytes(h), r)))
    a0, a1 = tx(0, 0, fee=1000), tx(0, 1, fee=3000)
    assert mp.add(a0).added and mp.add(a1).added
    assert "limit" in mp.add(tx(0, 2, fee=3000)).reason
    cheap = tx(1, 0, fee=1200)
    assert mp.add(cheap).added
    assert mp.add(tx(2, 0, fee=1200)).reason == "mempool is full"  # not better than any tail
    better = tx(2, 0, fee=1500)
    assert mp.add(better).added
    assert removed == [(bytes(cheap.hash), RemovalReason.EVICTED)]
    assert cheap.hash not in mp and len(mp) == 3
    # a0 pays least, but evicting it would strand a1 behind a nonce gap: only tails are evicted.
    assert mp.add(tx(3, 0, fee=2000)).added
    assert better.hash not in mp and a0.hash in mp and a1.hash in mp
    assert mp.add(tx(4, 0, fee=1900)).reason == "mempool is full"


def test_byte_limit_and_replacement_needs_a_fee_bump() -> None:
    one = len(tx(0, 0).encode())
    mp = pool(max_bytes=2 * one + 10, replace_bump_percent=10)
    assert mp.add(tx(0, 0, fee=1000)).added
    assert "raise the fee" in mp.add(tx(0, 0, fee=1050)).reason
    replacement = tx(0, 0, fee=1100)
    assert mp.add(replacement).added and len(mp) == 1 and mp.size_bytes == one
    assert mp.add(tx(1, 0, fee=1000)).added
    assert mp.add(tx(2, 0, fee=900_000, gas=1000)).added  # evicts sender 1 (cheapest) by bytes
    assert len(mp) == 2 and mp.size_bytes <= 2 * one + 10


@pytest.mark.trio
async def test_update_and_recheck_after_a_block() -> None:
    accounts = Accounts()
    mp = pool(accounts, ttl_heights=5)
    reasons: dict[bytes, RemovalReason] = {}
    mp.on_removed(lambda h, t, r: reasons.__setitem__(bytes(h), r))
    committed = [tx(0, 0), tx(0, 1)]
    waiting = tx(0, 2)
    for t in [*committed, waiting, tx(1, 0), tx(2, 0)]:
        assert mp.add(t).added
    # The block commits sender 0's first two; sender 1's nonce moved elsewhere; sender 2 lost its balance.
    mp.update(1, committed)
    assert [t.nonce for t in reap(mp) if t.sender == KEYS[0].public_key] == [2]
    a = accounts.table
    a[bytes(KEYS[0].address)].nonce = 2
    a[bytes(KEYS[1].address)].nonce = 1
    a[bytes(KEYS[2].address)].balance = 10
    await mp.recheck()
    assert reasons[bytes(committed[0].hash)] is RemovalReason.COMMITTED
    assert reasons[bytes(tx(1, 0).hash)] is RemovalReason.STALE_NONCE
    assert reasons[bytes(tx(2, 0).hash)] is RemovalReason.INSUFFICIENT_BALANCE
    assert list(mp.txs()) == [waiting]
    mp.update(10, [])
    await mp.recheck()
    assert reasons[bytes(waiting.hash)] is RemovalReason.EXPIRED and len(mp) == 0


def test_disagreement_backs_off_then_evicts_after_three_distinct_proposers() -> None:
    mp = pool()
    reasons: dict[bytes, str] = {}
    mp.on_removed(lambda h, t, r: reasons.__setitem__(bytes(h), r.value))
    contested, other = tx(0, 0), tx(1, 0)
    mp.add(contested)
    mp.add(other)
    p1, p2, p3 = (bytes([i]) * 20 for i in (1, 2, 3))
    assert not mp.report_disagreement(contested.hash, p1, height=10)
    mp.update(10, [])
    assert mp.is_backed_off(contested.hash)
    assert [t.hash for t in reap(mp)] == [other.hash]
    # The same proposer failing again does not count twice.
    assert not mp.report_disagreement(contested.hash, p1, height=11)
    assert mp.disagreement_count(contested.hash) == 1
    mp.update(20, [])
    assert not mp.is_backed_off(contested.hash)
    assert contested.hash in [t.hash for t in reap(mp)]
    assert not mp.report_disagreement(contested.hash, p2, height=20)
    assert mp.report_disagreement(contested.hash, p3, height=21)
    assert reasons[bytes(contested.hash)] == REJECTED_DISAGREED
    assert contested.hash not in mp
    assert mp.add(contested).reason == REJECTED_DISAGREED


@pytest.mark.trio
async def test_wait_for_txs_wakes_on_the_first_transaction() -> None:
    mp = pool()
    woke = trio.Event()

    async def waiter() -> None:
        await mp.wait_for_txs()
        woke.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.01)
            assert not woke.is_set()
            mp.add(tx(0, 0))
            await woke.wait()
