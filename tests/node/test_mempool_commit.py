"""The mempool after a block (`Mempool.update`): the block's transactions leave, each sender's indexes and kept
ready run agree with their definitions right after it (before any recheck), whatever the block held: a
reaped prefix of ready runs, transactions the pool never had, a sender's whole run."""

from __future__ import annotations

import random

import pytest
import trio

from core.tx import Transaction
from node.mempool import Mempool, RemovalReason
from tests.node.test_mempool import KEYS, Accounts, _brute_reap, _check_indexes, pool, reap, tx

pytestmark = pytest.mark.node


def _commit(mp: Mempool, accounts: Accounts, block: list[Transaction]) -> None:
    for t in block:
        acct = accounts.table[bytes(t.sender_address)]
        acct.nonce = max(acct.nonce, t.nonce + 1)
        acct.balance -= t.fee
    mp.update(mp.height + 1, block)


@pytest.mark.parametrize("seed", range(8))
def test_indexes_agree_with_their_definitions_right_after_each_block(seed: int) -> None:
    rng = random.Random(seed)
    accounts = Accounts(balance=10**9)
    mp = pool(accounts, max_txs=60, max_txs_per_sender=12, max_nonce_gap=16, max_gapped_per_sender=4)
    removed: list[tuple[bytes, RemovalReason]] = []
    mp.on_removed(lambda h, _t, reason: removed.append((bytes(h), reason)))
    for step in range(500):
        k = rng.randrange(len(KEYS))
        acct = accounts.table[bytes(KEYS[k].address)]
        mp.add(tx(k, acct.nonce + rng.randrange(10), fee=rng.randrange(1000, 5000)), signature_checked=True)
        if step % 23 != 22:
            continue
        block = reap(mp, rng.randrange(1, 40))  # ready runs' prefixes, several per sender
        if rng.random() < 0.4:  # another proposer's block: a transaction this pool never had
            other = rng.randrange(len(KEYS))
            nonce = accounts.table[bytes(KEYS[other].address)].nonce
            if all(t.sender_address != KEYS[other].address for t in block):
                block.append(tx(other, nonce, fee=7777))
        pending = {bytes(t.hash) for t in mp.txs()}
        committed_here = [bytes(t.hash) for t in block if bytes(t.hash) in pending]
        removed.clear()
        _commit(mp, accounts, block)
        _check_indexes(mp)  # before the recheck: update alone keeps them right
        assert removed == [(h, RemovalReason.COMMITTED) for h in committed_here]
        assert all(bytes(t.hash) not in {bytes(p.hash) for p in mp.txs()} for t in block)
        assert [t.hash for t in reap(mp)] == [t.hash for t in _brute_reap(mp)]
        trio.run(mp.recheck)
        _check_indexes(mp)


def test_a_block_that_commits_a_senders_whole_run_forgets_the_sender() -> None:
    accounts = Accounts()
    mp = pool(accounts)
    run = [tx(0, n) for n in range(6)]
    for t in [*run, tx(1, 0), tx(1, 1)]:
        assert mp.add(t, signature_checked=True).added
    _commit(mp, accounts, [*run, tx(1, 0)])
    _check_indexes(mp)
    assert bytes(KEYS[0].address) not in mp._senders
    assert [t.hash for t in mp.txs()] == [tx(1, 1).hash]
    assert mp.add(tx(0, 6), signature_checked=True).added  # the sender comes back at its committed nonce
    assert not mp.add(tx(0, 5, fee=2000), signature_checked=True).accepted
