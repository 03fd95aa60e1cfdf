"""StateView's account reads over a real state map: fresh views of the same committed state share one decoded
account per stored value (the decode memo), and still read what each version holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.state import AuthenticatedMap
from core.types import Address, Amount, Nonce
from node.leveldb import LevelDBStore
from vm.state import EMPTY_ACCOUNT, Account, StateView, account_key

pytestmark = pytest.mark.vm


def test_fresh_views_share_decoded_accounts_and_read_each_version(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    try:
        smap = AuthenticatedMap(store)
        alice, bob, carol = Address(b"\x01" * 20), Address(b"\x02" * 20), Address(b"\x03" * 20)
        smap.commit(1, {account_key(alice): Account(Amount(10), Nonce(0)).encode(),
                        account_key(bob): Account(Amount(7), Nonce(3)).encode()})
        first, second = StateView(smap, 1), StateView(smap, 1)
        assert first.account(alice) == Account(Amount(10), Nonce(0))
        assert second.account(alice) is first.account(alice)  # decoded once, whatever the view
        assert first.account(carol) is EMPTY_ACCOUNT and second.account(carol) is EMPTY_ACCOUNT
        first.set_account(alice, Account(Amount(4), Nonce(1)))  # a view's own write is its own
        assert first.account(alice) == Account(Amount(4), Nonce(1))
        assert second.account(alice) == Account(Amount(10), Nonce(0))
        smap.commit(2, first.changes())
        assert StateView(smap, 2).account(alice) == Account(Amount(4), Nonce(1))
        assert StateView(smap, 1).account(alice) == Account(Amount(10), Nonce(0))
        assert StateView(smap, 2).account(bob) is StateView(smap, 1).account(bob)  # unchanged: one object
        raw = StateView(smap, 2)
        raw.put_raw(account_key(carol), Account(Amount(1), Nonce(2)).encode())
        assert raw.account(carol) == Account(Amount(1), Nonce(2))
    finally:
        store.close()


def test_changes_and_touched_hold_accounts_written_either_way(tmp_path: Path) -> None:
    """`set_account` keeps its keys apart from the other written keys (so `touched` of another prefix skips
    them): `changes` and `touched` still list every key written, by `set_account`, `put` or `delete`."""
    store = LevelDBStore(str(tmp_path / "db"))
    try:
        smap = AuthenticatedMap(store)
        alice, bob, carol = Address(b"\x01" * 20), Address(b"\x02" * 20), Address(b"\x03" * 20)
        smap.commit(1, {account_key(carol): Account(Amount(5), Nonce(0)).encode()})
        view = StateView(smap, 1)
        view.set_account(alice, Account(Amount(4), Nonce(1)))
        view.put(account_key(bob), Account(Amount(9), Nonce(0)))
        view.delete(account_key(carol))
        view.put_raw(b"V" + bytes(20), b"\x01")
        keys = [account_key(alice), account_key(bob), account_key(carol)]
        assert list(view.touched(b"A")) == keys
        assert list(view.touched()) == [*keys, b"V" + bytes(20)]
        assert list(view.touched(b"V")) == [b"V" + bytes(20)]
        assert view.changes() == {account_key(alice): Account(Amount(4), Nonce(1)).encode(),
                                  account_key(bob): Account(Amount(9), Nonce(0)).encode(),
                                  account_key(carol): None, b"V" + bytes(20): b"\x01"}
        smap.commit(2, view.changes())
        assert StateView(smap, 2).account(alice) == Account(Amount(4), Nonce(1))
        assert StateView(smap, 2).account(carol) is EMPTY_ACCOUNT
    finally:
        store.close()
