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
