"""Mempool: entry checks, proposal order (fee per gas, then nonce), limits and eviction, re-check after a
block, and the disagreement back-off of docs/design.md §2.6."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Amount, Gas, Nonce
from node.config import MempoolSection
from node.mempool import (
    FULL_RECHECK_HEIGHTS,
    MEMPOOL_FULL,
    REJECTED_DISAGREED,
    Mempool,
    RemovalReason,
    is_retryable,
)
from node.sigcache import SigCache
from tools.genesis import make_genesis
from vm.execute import account_inclusion_error, admission_error
from vm.genesis import parse_params
from vm.state import Account
from vm.txs import Transfer, TxKind, build_tx

pytestmark = pytest.mark.node

CHAIN = "mempool-test"
KEYS = [PrivateKey.derive("mempool tests", "account", i) for i in range(8)]
SINK = Address(b"\x42" * 20)
VM_PARAMS = parse_params(make_genesis(1, chain_id=CHAIN)).vm.replace(min_gas_price=Amount(1),
                                                                        max_tx_gas=Gas(1_000_000))


@dataclass
class _Account:
    balance: int
    nonce: int


class Accounts:
    """The committed state the mempool reads, as a table, and the VM's real admission rule over the default
    genesis parameters (the mempool only sees both through MempoolState)."""

    def __init__(self, balance: int = 10**9) -> None:
        self.table: dict[bytes, _Account] = {bytes(k.address): _Account(balance, 0) for k in KEYS}
        self.params = VM_PARAMS
        self.checks = 0
        self.inclusions = 0

    def account(self, address: Address) -> _Account:
        return self.table.get(bytes(address), _Account(0, 0))

    def check_tx(self, tx: Transaction, account: Account) -> str | None:
        self.checks += 1
        return admission_error(tx, CHAIN, self.params, account)

    def inclusion_error(self, tx: Transaction, account: Account) -> str | None:
        self.inclusions += 1
        return account_inclusion_error(tx, CHAIN, self.params, account)


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
    assert mp.add(tx(2, 0, fee=1200)).reason == MEMPOOL_FULL  # not better than any tail
    better = tx(2, 0, fee=1500)
    assert mp.add(better).added
    assert removed == [(bytes(cheap.hash), RemovalReason.EVICTED)]
    assert cheap.hash not in mp and len(mp) == 3
    # a0 pays least, but evicting it would strand a1 behind a nonce gap: only tails are evicted.
    assert mp.add(tx(3, 0, fee=2000)).added
    assert better.hash not in mp and a0.hash in mp and a1.hash in mp
    assert mp.add(tx(4, 0, fee=1900)).reason == MEMPOOL_FULL


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
    raced = tx(1, 0)  # the block holds another transaction of sender 1 with this nonce (another node's)
    spends, unpaid = tx(2, 0), tx(2, 1)  # the block's transaction of sender 2 leaves it too little for the next
    for t in [*committed, waiting, raced, spends, unpaid]:
        assert mp.add(t).added
    block = [*committed, tx(1, 0, fee=1100), spends]
    mp.update(1, block)
    assert [t.nonce for t in reap(mp) if t.sender == KEYS[0].public_key] == [2]
    a = accounts.table
    a[bytes(KEYS[0].address)].nonce = 2
    a[bytes(KEYS[1].address)].nonce = 1
    a[bytes(KEYS[2].address)].nonce, a[bytes(KEYS[2].address)].balance = 1, 10
    await mp.recheck()
    assert reasons[bytes(committed[0].hash)] is RemovalReason.COMMITTED
    assert reasons[bytes(raced.hash)] is RemovalReason.STALE_NONCE
    assert reasons[bytes(unpaid.hash)] is RemovalReason.INSUFFICIENT_BALANCE
    assert list(mp.txs()) == [waiting]
    mp.update(10, [])
    await mp.recheck()
    assert reasons[bytes(waiting.hash)] is RemovalReason.EXPIRED and len(mp) == 0


@pytest.mark.trio
async def test_a_recheck_reads_only_the_blocks_senders_until_a_full_one_is_due() -> None:
    # Only a transaction's sender loses balance or nonce by it; every FULL_RECHECK_HEIGHTS heights every
    # sender is read again (what a block changes for all, such as the chain's parameters).
    accounts = Accounts()
    mp = pool(accounts)
    for k in range(4):
        assert mp.add(tx(k, 0)).added and mp.add(tx(k, 1)).added
    mp.update(1, [tx(0, 0)])
    accounts.table[bytes(KEYS[0].address)].nonce = 1
    await mp.recheck()
    assert mp.rechecked == 1 and len(mp) == 7
    # A parameter change makes every pending transfer too cheap: seen at the next full recheck, not before.
    accounts.params = VM_PARAMS.replace(min_gas_price=Amount(10))
    mp.update(FULL_RECHECK_HEIGHTS - 1, [])
    await mp.recheck()
    assert mp.rechecked == 1 and len(mp) == 7
    mp.update(FULL_RECHECK_HEIGHTS + 1, [])
    await mp.recheck()
    assert mp.rechecked == 5 and len(mp) == 0


@pytest.mark.trio
async def test_a_recheck_asks_the_vm_about_a_blocks_sender_head_only_while_its_balance_pays_the_rest() -> None:
    # Between full rechecks only the balance can change a later transaction's verdict (the fees add up along
    # the run): the head is checked against the VM's rule, the rest against the balance; a balance that pays
    # only part of the run drops its tail, in nonce order, as checking each one would.
    accounts = Accounts(balance=10_000)
    mp = pool(accounts)
    reasons: list[tuple[int, int, RemovalReason]] = []
    mp.on_removed(lambda h, t, r: reasons.append((KEYS.index(next(k for k in KEYS if k.public_key == t.sender)),
                                                  t.nonce, r)))
    for k in range(2):
        for n in range(6):
            assert mp.add(tx(k, n)).added
    mp.update(1, [tx(0, 0), tx(1, 0)])
    for k, balance in ((0, 9000), (1, 2500)):  # sender 1 also paid 6,500 for something else
        accounts.table[bytes(KEYS[k].address)].nonce = 1
        accounts.table[bytes(KEYS[k].address)].balance = balance
    before = accounts.inclusions
    await mp.recheck()
    assert mp.rechecked == 2
    # Sender 0: one check (its head); sender 1: every pending one (its balance pays two of five).
    assert accounts.inclusions - before == 1 + 5
    assert reasons[2:] == [(1, n, RemovalReason.INSUFFICIENT_BALANCE) for n in (3, 4, 5)]
    assert len(mp) == 5 + 2 and [t.nonce for t in reap(mp) if t.sender == KEYS[1].public_key] == [1, 2]


@pytest.mark.trio
async def test_the_recheck_leaves_the_eviction_index_to_its_reader_while_the_pool_is_far_from_full() -> None:
    mp = pool(max_txs=40)
    for k in range(4):
        assert mp.add(tx(k, 0)).added and mp.add(tx(k, 1)).added
    mp.update(1, [tx(0, 0)])
    await mp.recheck()
    assert mp._evict.marked == 4 and mp._ready.marked == 0  # 8 of 40: no add near to evicting
    for k in range(4, 8):
        assert mp.add(tx(k, 0)).added and mp.add(tx(k, 1)).added
    mp.update(2, [tx(1, 0)])
    await mp.recheck()
    assert mp._evict.marked == 0  # 15 of 40: a client's add past its share (20) would look for victims soon
    assert mp._evict.consistent() and mp._ready.consistent()


@pytest.mark.trio
async def test_a_recheck_reads_every_sender_once_a_transaction_may_have_expired() -> None:
    mp = pool(ttl_heights=100, gapped_ttl_heights=3)
    reasons: dict[bytes, RemovalReason] = {}
    mp.on_removed(lambda h, t, r: reasons.__setitem__(bytes(h), r))
    gapped = tx(1, 2)
    assert mp.add(tx(0, 0)).added and mp.add(gapped).added
    mp.update(3, [])
    await mp.recheck()
    assert mp.rechecked == 0 and gapped.hash in mp  # age 3: not expired yet, nothing read
    mp.update(4, [])
    await mp.recheck()
    assert mp.rechecked == 2 and reasons == {bytes(gapped.hash): RemovalReason.EXPIRED}


@pytest.mark.trio
async def test_a_sender_whose_balance_grew_is_read_again_before_its_transaction_is_refused() -> None:
    # Sender 0 can pay one fee; a block's transfer to it (not its own transaction, so the recheck after that
    # block does not read it) pays more.
    accounts = Accounts(balance=1000)
    mp = pool(accounts)
    assert mp.add(tx(0, 0)).added
    assert not mp.add(tx(0, 1)).accepted  # its balance pays the first fee only
    accounts.table[bytes(KEYS[0].address)].balance = 5000
    mp.update(1, [tx(1, 0)])
    await mp.recheck()
    assert mp.add(tx(0, 1)).added


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
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            mp.add(tx(0, 0))
            await woke.wait()


# ------------------------------------------------------------------------------------------------ the VM's rules


def test_the_entry_check_is_the_vms_rule_not_a_copy() -> None:
    accounts = Accounts()
    mp = pool(accounts)
    assert mp.add(tx(0, 0, fee=1000, gas=1000)).added
    # Raise the VM's minimum gas price: the mempool refuses with the VM's verdict, having no rule of its own.
    accounts.params = accounts.params.replace(min_gas_price=Amount(2))
    checks = accounts.checks
    refused = mp.add(tx(1, 0, fee=1000, gas=1000))
    assert accounts.checks == checks + 1
    assert refused.reason == admission_error(tx(1, 0, fee=1000, gas=1000), CHAIN, accounts.params,
                                             Account(Amount(10**9), Nonce(0)))
    assert "below gas_limit x min_gas_price" in refused.reason
    # What the VM would only fail (unknown kind, a payload that does not decode) is refused at the door.
    unknown = Transaction.create(KEYS[2], chain_id=CHAIN, nonce=0, gas_limit=1000, fee=2000, kind=99,
                                 payload=b"")
    assert mp.add(unknown).reason == "unknown transaction kind 99"
    garbled = Transaction.create(KEYS[2], chain_id=CHAIN, nonce=0, gas_limit=1000, fee=2000,
                                 kind=int(TxKind.TRANSFER), payload=b"\x01\x02")
    assert mp.add(garbled).reason.startswith("malformed payload")


def test_a_node_mempool_asks_the_vm_application(tmp_path: Path) -> None:
    """The node wires the mempool to VMApplication.check_tx over real LevelDB state."""
    from tests.node.helpers import account, genesis_doc, local_node, make_home, transfer

    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        key, sink = account(1), account(2)
        params = node.genesis.params.vm
        ok = transfer(node.chain_id, key, sink, 5, 0)
        assert node.mempool.add(ok).added
        assert node.app.check_tx(ok) is None
        cheap = build_tx(key, Transfer(sink.address, Amount(1)), chain_id=node.chain_id, nonce=1,
                         gas_limit=1000, fee=1000 * int(params.min_gas_price) - 1)
        assert node.mempool.add(cheap).reason == node.app.check_tx(cheap, account=Account(
            Amount(10**18), Nonce(cheap.nonce)))
        assert "below gas_limit x min_gas_price" in node.mempool.add(cheap).reason
        elsewhere = transfer("another-chain", key, sink, 5, 1)
        assert node.mempool.add(elsewhere).reason == "wrong chain id 'another-chain'"
    finally:
        node.app.close()
        node.db.close()


# ------------------------------------------------------------------------------------------------ nonce gaps


def test_gapped_transactions_are_bounded_per_sender() -> None:
    mp = pool(max_gapped_per_sender=2)
    assert mp.add(tx(0, 2)).added and mp.add(tx(0, 3)).added
    assert "behind a nonce gap" in mp.add(tx(0, 4)).reason
    assert mp.gapped_count() == 2 and reap(mp) == []
    assert mp.add(tx(0, 0)).added  # ready itself; 2 and 3 still wait for 1
    assert mp.add(tx(0, 1)).added and mp.gapped_count() == 0
    assert [t.nonce for t in reap(mp)] == [0, 1, 2, 3]
    assert mp.add(tx(0, 6)).added and mp.add(tx(0, 7)).added  # a new gap, a fresh allowance
    assert "behind a nonce gap" in mp.add(tx(0, 9)).reason


def test_gapped_transactions_are_evicted_first_and_never_evict_ready_ones() -> None:
    mp = pool(max_txs=3)
    removed: list[bytes] = []
    mp.on_removed(lambda h, t, r: removed.append(bytes(h)))
    gapped = tx(0, 5, fee=90_000)  # pays the most, but cannot go into a block
    assert mp.add(gapped).added and mp.add(tx(1, 0, fee=1000)).added and mp.add(tx(2, 0, fee=1000)).added
    # A gapped newcomer cannot push out a ready transaction, though it pays 85 times more ...
    assert mp.add(tx(3, 7, fee=85_000)).reason == MEMPOOL_FULL
    # ... but it may push out a cheaper gapped one.
    richer_gap = tx(4, 1, fee=95_000)
    assert mp.add(richer_gap).added and removed == [bytes(gapped.hash)]
    # A ready newcomer evicts the gapped one first, even though the ready ones pay less than it.
    assert mp.add(tx(5, 0, fee=1001)).added
    assert removed == [bytes(gapped.hash), bytes(richer_gap.hash)]
    assert mp.gapped_count() == 0 and len(mp) == 3


def test_client_transactions_leave_room_for_the_transactions_peers_gossip() -> None:
    """This node's clients fill half of the mempool at most: a peer's transactions, which its proposal will
    name, still find room when our own clients send faster than blocks commit."""
    mp = pool(max_txs=8)
    assert all(mp.add(tx(k, 0), from_client=True).added for k in range(4))
    refused = mp.add(tx(4, 0), from_client=True)
    assert refused.reason == MEMPOOL_FULL and is_retryable(refused.reason)
    assert all(mp.add(tx(k, 0)).added for k in range(4, 8))  # from peers: the other half
    assert len(mp) == 8 and mp.add(tx(0, 1)).reason == MEMPOOL_FULL
    # Past its share a client's better offer still takes the place of one cheaper tail, as from a peer.
    removed: list[bytes] = []
    mp.on_removed(lambda h, t, r: removed.append(bytes(h)))
    assert mp.add(tx(0, 1, fee=5000), from_client=True).added and len(mp) == 8 and len(removed) == 1


def test_attack_gapped_spam_cannot_keep_honest_senders_out_of_a_full_mempool() -> None:
    """Attack: spammers queue far-ahead nonces (which can never go into a block while the gap stays open) at
    a high fee until the mempool is full. Defence: gapped transactions are bounded per sender and are evicted
    first by any ready newcomer, so honest senders at the minimum fee still get in and into the proposal."""
    spammers = [PrivateKey.derive("mempool tests", "gap spammer", i) for i in range(6)]
    honest = [PrivateKey.derive("mempool tests", "honest", i) for i in range(4)]
    accounts = Accounts()
    for k in (*spammers, *honest):
        accounts.table[bytes(k.address)] = _Account(10**9, 0)
    mp = pool(accounts, max_txs=24, max_gapped_per_sender=4)
    spam = [build_tx(k, Transfer(SINK, Amount(1)), chain_id=CHAIN, nonce=n, gas_limit=1000, fee=50_000)
            for k in spammers for n in range(1, 9)]  # nonce 0 never sent: all of it stays gapped
    admitted = [mp.add(t) for t in spam]
    assert sum(r.added for r in admitted) == 24 and len(mp) == 24  # 4 per spammer; the mempool is full
    assert all(is_retryable(r.reason) for r in admitted if not r.accepted)
    honest_txs = [build_tx(k, Transfer(SINK, Amount(1)), chain_id=CHAIN, nonce=n, gas_limit=1000, fee=1000)
                  for k in honest for n in range(5)]
    assert all(mp.add(t).added for t in honest_txs)
    assert {bytes(t.hash) for t in reap(mp)} == {bytes(t.hash) for t in honest_txs}
    # A gapped newcomer that pays less than the gapped ones left cannot evict a ready one: a reason to retry.
    late = build_tx(KEYS[0], Transfer(SINK, Amount(1)), chain_id=CHAIN, nonce=3, gas_limit=1000, fee=1000)
    assert mp.add(late).reason == MEMPOOL_FULL and is_retryable(MEMPOOL_FULL)


@pytest.mark.trio
async def test_gapped_transactions_expire_sooner() -> None:
    mp = pool(ttl_heights=50, gapped_ttl_heights=5)
    reasons: dict[bytes, RemovalReason] = {}
    mp.on_removed(lambda h, t, r: reasons.__setitem__(bytes(h), r))
    ready, gapped = tx(0, 0), tx(1, 3)
    assert mp.add(ready).added and mp.add(gapped).added
    mp.update(6, [])
    await mp.recheck()
    assert reasons == {bytes(gapped.hash): RemovalReason.EXPIRED} and ready.hash in mp


@pytest.mark.trio
async def test_a_gossiped_batch_lets_the_event_loop_run() -> None:
    """A batch of thousands is added in slices: other tasks run while it is added."""
    keys = [PrivateKey.derive("mempool tests", "batch", i) for i in range(40)]
    accounts = Accounts()
    for k in keys:
        accounts.table[bytes(k.address)] = _Account(10**9, 0)
    batch = [build_tx(k, Transfer(SINK, Amount(1)), chain_id=CHAIN, nonce=n, gas_limit=1000, fee=1000)
             for n in range(50) for k in keys]
    mp = pool(accounts, max_txs=100_000, max_nonce_gap=100, max_txs_per_sender=100)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        before = ticks
        results = await mp.add_many(batch, signature_checked=True)
        during = ticks - before
        done = True
    assert all(r.added for r in results) and len(mp) == len(batch)
    assert during >= len(batch) // 64 - 1


# ------------------------------------------------------------------------------------------------ the indexes


def _brute_reap(mp: Mempool) -> list[Transaction]:
    """The proposal order by its definition, over every sender."""
    chains = []
    for sender in mp._senders.values():
        run = []
        n = sender.nonce
        while n in sender.txs and not mp.is_backed_off(sender.txs[n].tx_hash):
            run.append(sender.txs[n])
            n += 1
        if run:
            chains.append(run)
    out = []
    while chains:
        best = min(chains, key=lambda c: (-c[0].price, c[0].seq))
        out.append(best.pop(0).tx)
        if not best:
            chains.remove(best)
    return out


def _check_indexes(mp: Mempool) -> None:
    evict, ready = [], []
    for key, s in mp._senders.items():
        assert s.txs, "a sender without transactions is forgotten"
        end = s.nonce
        while end in s.txs:
            end += 1
        assert s.ready_end == end
        assert s.ready_fees == sum(s.txs[n].tx.fee for n in range(s.nonce, end))  # what an add's balance rule uses
        tail = s.txs[max(s.txs)]
        evict.append((1 if s.nonce <= tail.tx.nonce < end else 0, tail.price, -tail.seq, key))
        head = s.txs.get(s.nonce)
        if head is not None:
            ready.append((-head.price, head.seq, key))
    assert sorted(evict) == mp._evict.ordered() and sorted(ready) == mp._ready.ordered()
    assert mp._evict.consistent() and mp._ready.consistent()
    assert len(mp) == sum(len(s.txs) for s in mp._senders.values())
    assert mp.size_bytes == sum(e.size for s in mp._senders.values() for e in s.txs.values())
    # What an add into a full pool reads before the eviction index: the prices pending, their lowest, and
    # the senders whose pending nonces are not exactly their ready run.
    prices = Counter(e.price for s in mp._senders.values() for e in s.txs.values())
    assert mp._prices == prices
    assert mp._lowest_price() == (min(prices) if prices else math.inf)
    assert mp._irregular == {key for key, s in mp._senders.items() if len(s.txs) != s.ready_end - s.nonce}


@pytest.mark.parametrize("seed", range(6))
def test_the_indexes_agree_with_the_definitions_under_random_traffic(seed: int) -> None:
    """Odd seeds give senders a balance that pays only a few fees, so the balance rule over pending
    predecessors' fees (the kept ready-run fees) decides many adds."""
    rng = random.Random(seed)
    accounts = Accounts(balance=12_000 if seed % 2 else 10**9)
    mp = pool(accounts, max_txs=25, max_txs_per_sender=6, max_nonce_gap=8, max_gapped_per_sender=3)
    for step in range(400):
        k = rng.randrange(len(KEYS))
        acct = accounts.table[bytes(KEYS[k].address)]
        mp.add(tx(k, acct.nonce + rng.randrange(8), fee=rng.randrange(1000, 5000)), signature_checked=True)
        if step % 37 == 36:  # a block commits a reaped prefix
            block = reap(mp, rng.randrange(1, 10))
            for t in block:
                accounts.table[bytes(t.sender_address)].nonce = t.nonce + 1
            mp.update(mp.height + 1, block)
            trio.run(mp.recheck)
        if step % 53 == 52:
            victim = next(iter(mp.txs()), None)
            if victim is not None:
                mp.report_disagreement(victim.hash, bytes([step % 7]) * 20, mp.height)
        _check_indexes(mp)
        assert len(mp) <= 25
        assert [t.hash for t in reap(mp)] == [t.hash for t in _brute_reap(mp)]
