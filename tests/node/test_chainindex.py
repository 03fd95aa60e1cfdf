"""The explorer's index (node/chainindex.py) on a real LevelDB: every transaction of an account, newest first,
paged; a restart continues from the indexed height; a lost index is rebuilt from the blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import DecodeError
from core.header import TxResult, TxStatus
from core.store import MemoryStore
from core.tx import Transaction
from core.types import Amount, Gas, Hash32
from node.chainindex import ChainIndex
from node.leveldb import LevelDBStore
from tests.node.simchain import CHAIN_ID, SimChain
from vm.txs import Transfer, TxKind

pytestmark = pytest.mark.node


def open_index(path: Path, chain: SimChain) -> ChainIndex:
    return ChainIndex(LevelDBStore(path), lambda h: chain.blocks[h - 1] if 1 <= h <= chain.height() else None,
                      chain.height, lambda h: [(e.address, int(e.power)) for e in chain.vset])


def send(chain: SimChain, sender: int, to: int, amount: int) -> bytes:
    tx = chain.transfer(sender, chain.account_keys[to].address, amount)
    chain.pending.append(tx)
    return bytes(tx.hash)


def test_account_txs_are_newest_first_paged_and_survive_a_restart(tmp_path: Path) -> None:
    chain = SimChain()
    a, b, c = (k.address for k in chain.account_keys)
    sent = []
    for i in range(5):
        sent.append(send(chain, 0, 1, 10 + i))
        if i % 2:
            sent.append(send(chain, 2, 0, 1))
        chain.produce()
    index = open_index(tmp_path / "index", chain)
    assert index.catch_up(limit=2) == 2 and index.indexed_height() == 2
    assert index.catch_up() == 3 and index.indexed_height() == 5 and index.catch_up() == 0

    mine = index.account_txs(a, 100)
    assert [bytes(e.tx_hash) for e in mine] == list(reversed(sent))  # sent and received, newest first
    assert [(e.height, e.index) for e in mine] == sorted(((e.height, e.index) for e in mine), reverse=True)
    first = index.account_txs(a, 3)
    rest = index.account_txs(a, 100, before=(first[-1].height, first[-1].index))
    assert first + rest == mine
    assert len(index.account_txs(b, 100)) == 5  # every transfer to b
    assert len(index.account_txs(c, 100)) == 2  # the two c sent
    index.db.close()

    # A restart: blocks committed meanwhile are indexed from the height the index had reached, once.
    later = send(chain, 1, 2, 3)
    chain.produce()
    index = open_index(tmp_path / "index", chain)
    assert index.indexed_height() == 5 and index.catch_up() == 1
    assert bytes(index.account_txs(c, 1)[0].tx_hash) == later
    assert len(index.account_txs(c, 100)) == 3
    index.db.close()


def test_a_lost_index_is_rebuilt_from_the_blocks_alone(tmp_path: Path) -> None:
    chain = SimChain()
    for i in range(3):
        send(chain, 0, 1, 5 + i)
        chain.produce()
    first = open_index(tmp_path / "one", chain)
    first.catch_up()
    again = ChainIndex(MemoryStore(), first._blocks, chain.height, lambda h: None)
    again.catch_up()
    a = chain.account_keys[0].address
    assert again.account_txs(a, 100) == first.account_txs(a, 100)
    first.db.close()


def test_inferences_that_ran_are_counted_per_model(tmp_path: Path) -> None:
    chain = SimChain()
    for values in ([1.0], [2.0, 3.0]):
        chain.pending.append(chain.infer(0, values))
        chain.produce()
    index = open_index(tmp_path / "index", chain)
    index.catch_up()
    assert index.model_calls(Hash32(b"\x07" * 32)) == 2 and index.model_calls(Hash32(b"\x08" * 32)) == 0
    index.db.close()


def test_an_index_of_another_chain_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    """A home whose data/ was reset keeps index/: the index must not show the old chain's transactions."""
    old = SimChain(balance=10**12)
    for _ in range(4):
        send(old, 0, 1, 7)
        old.produce()
    index = open_index(tmp_path / "index", old)
    index.catch_up()
    index.db.close()
    new = SimChain(balance=10**11)  # other genesis balances: other state roots, other block ids
    fresh = send(new, 0, 1, 9)
    new.produce()
    new.produce()
    index = open_index(tmp_path / "index", new)
    assert index.catch_up() == 2 and index.indexed_height() == 2
    assert [bytes(e.tx_hash) for e in index.account_txs(new.account_keys[0].address, 100)] == [fresh]
    index.db.close()


def test_recipients_are_indexed_as_their_payloads_decode(tmp_path: Path) -> None:
    """The index takes a transfer that ran's recipient straight from its payload: every amount's encoding, a
    transfer to oneself, and transfers that did not run (one whose payload decodes, one whose payload has a
    transfer's head but does not decode) give the recipients that decoding the payload gives."""
    chain = SimChain(n_accounts=4)
    a, b, c, d = (k.address for k in chain.account_keys)
    for i, amount in enumerate((1, 127, 128, 255, 256, 65_536, 2**32, 10**11)):
        chain.pending.append(chain.transfer(0, (b, c)[i % 2], amount, nonce=i))
    chain.pending.append(chain.transfer(0, a, 3, nonce=8))  # to oneself: indexed once
    block = chain.produce()
    key = chain.account_keys[3]
    undecodable = Transaction.create(key, chain_id=CHAIN_ID, nonce=0, gas_limit=1000, fee=1000,
                                     kind=TxKind.TRANSFER, payload=Transfer(b, Amount(5)).encode() + b"\x00")
    refused = Transaction.create(key, chain_id=CHAIN_ID, nonce=1, gas_limit=1000, fee=1000,
                                 kind=TxKind.TRANSFER, payload=Transfer(c, Amount(10**15)).encode())
    failed = TxResult(TxStatus.FAILED, Gas(1000), (), b"", "balance")
    block = block.replace(txs=(*block.txs, undecodable, refused), results=(*block.results, failed, failed))
    index = ChainIndex(LevelDBStore(tmp_path / "index"), lambda h: block if h == 1 else None, lambda: 1,
                       lambda h: None)
    assert index.catch_up() == 1

    expected: dict[bytes, list[tuple[int, int]]] = {bytes(x): [] for x in (a, b, c, d)}
    for i, tx in enumerate(block.txs):
        expected[bytes(tx.sender_address)].append((1, i))
        try:
            to = Transfer.decode(tx.payload).to
        except DecodeError:
            continue
        if to != tx.sender_address:
            expected[bytes(to)].append((1, i))
    assert expected[bytes(c)][-1] == (1, 10) and expected[bytes(b)][-1] == (1, 6)  # not the undecodable one's
    for address in (a, b, c, d):
        got = index.account_txs(address, 100)
        assert [(e.height, e.index) for e in reversed(got)] == expected[bytes(address)]
        assert all(bytes(e.tx_hash) == bytes(block.txs[e.index].hash) for e in got)
    index.db.close()
