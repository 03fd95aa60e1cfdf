"""A transaction's sign-bytes are cut from its kept encoding (core.tx.Transaction.sign_bytes): the same bytes
as the generic rule (core.signing.sign_bytes), for every shape of field a transaction can hold."""

from __future__ import annotations

from typing import Any

import pytest

from core import tx as core_tx
from core.keys import PrivateKey
from core.signing import DOMAIN_TX, sign_bytes
from core.tx import Transaction

pytestmark = pytest.mark.core


def _txs() -> list[Transaction]:
    key = PrivateKey.derive("test", "signbytes", 0)
    out = []
    for chain_id in ("c", "inferchain-devnet-1", "x" * 40):
        for payload in (b"", b"\x01" * 31, b"\x02" * 300, b"\x03" * 70_000):
            for nonce, gas, fee, kind in ((0, 1, 0, 1), (127, 1000, 1000, 6), (2**32, 2**40, 2**63, 65535)):
                out.append(Transaction.create(key, chain_id=chain_id, nonce=nonce, gas_limit=gas, fee=fee,
                                              kind=kind, payload=payload))
    return out


def test_sign_bytes_match_the_generic_rule_fresh_and_decoded() -> None:
    for tx in _txs():
        expected = sign_bytes(DOMAIN_TX, tx)
        assert tx.sign_bytes() == expected
        decoded = Transaction.decode(tx.encode())
        assert decoded.sign_bytes() == expected and decoded.verify_signature()
        assert not tx.replace(nonce=tx.nonce + 1).verify_signature()


def test_sign_bytes_do_not_pack_the_fields_again(monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("the generic sign-bytes rule ran")

    txs = _txs()
    monkeypatch.setattr(core_tx, "sign_bytes", refuse)
    for tx in txs:
        assert tx.verify_signature()
