"""A transfer's outcomes, each one written out: the fee and the nonce bump first, then the gas, then the amount
(execution folds them into one write of the sender's account; these are the outcomes it must keep)."""

from __future__ import annotations

import pytest

from core.header import TxStatus
from core.keys import PrivateKey
from core.types import Address, Amount, Height, Nonce, Timestamp
from tests.vm.devnet import devnet_genesis
from tools.genesis import account_key
from vm.execute import BlockContext, BlockModels, execute_tx
from vm.state import Account, StateView
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.vm

GENESIS = devnet_genesis(1)
PARAMS = GENESIS.params
KEY = account_key(GENESIS.seed_phrase or "", 0)
OTHER = Address(b"\x07" * 20)
GAS = int(PARAMS.vm.gas_transfer)
PRICE = int(PARAMS.vm.min_gas_price)


def _run(key: PrivateKey, to: Address, amount: int, gas_limit: int, balance: int, dst: Account | None = None
         ) -> tuple[TxStatus, int, str, int, StateView]:
    view = StateView(None, None)
    view.set_account(key.address, Account(Amount(balance), Nonce(4)))
    if dst is not None:
        view.set_account(to, dst)
    tx = build_tx(key, Transfer(to, Amount(amount)), chain_id=GENESIS.chain_id, nonce=4, gas_limit=gas_limit,
                  fee=gas_limit * PRICE)
    ctx = BlockContext(GENESIS.chain_id, Height(1), Timestamp(1000), OTHER, PARAMS)
    outcome = execute_tx(view, ctx, 0, tx, models=BlockModels(PARAMS.vm.max_block_models))
    assert outcome.work is None and outcome.fee == tx.fee
    return outcome.result.status, int(outcome.result.gas_used), outcome.result.log, tx.fee, view


def test_a_transfer_moves_the_amount_and_pays_the_fee() -> None:
    status, used, log, fee, view = _run(KEY, OTHER, 30, GAS, 10**12, Account(Amount(5), Nonce(9)))
    assert (status, used, log) == (TxStatus.OK, GAS, "")
    assert view.account(KEY.address) == Account(Amount(10**12 - fee - 30), Nonce(5))
    assert view.account(OTHER) == Account(Amount(35), Nonce(9))


def test_a_transfer_to_a_new_account_creates_it() -> None:
    status, _, _, fee, view = _run(KEY, OTHER, 30, GAS, 10**12)
    assert status == TxStatus.OK and view.account(OTHER) == Account(Amount(30), Nonce(0))
    assert view.account(KEY.address) == Account(Amount(10**12 - fee - 30), Nonce(5))


def test_a_transfer_to_oneself_pays_only_the_fee() -> None:
    status, used, _, fee, view = _run(KEY, KEY.address, 30, GAS, 10**12)
    assert (status, used) == (TxStatus.OK, GAS)
    assert view.account(KEY.address) == Account(Amount(10**12 - fee), Nonce(5))


def test_a_transfer_over_the_balance_left_after_the_fee_fails_fee_paid() -> None:
    fee = GAS * PRICE
    status, used, log, _, view = _run(KEY, OTHER, 31, GAS, fee + 30, Account(Amount(5), Nonce(9)))
    assert (status, used, log) == (TxStatus.FAILED, GAS, "balance 30 is below the amount 31")
    assert view.account(KEY.address) == Account(Amount(30), Nonce(5))
    assert view.account(OTHER) == Account(Amount(5), Nonce(9))
    status, _, _, _, view = _run(KEY, OTHER, 30, GAS, fee + 30)  # exactly what is left: it goes through
    assert status == TxStatus.OK and view.account(KEY.address) == Account(Amount(0), Nonce(5))


def test_a_transfer_with_less_gas_than_it_needs_runs_out_fee_paid() -> None:
    status, used, log, fee, view = _run(KEY, OTHER, 30, GAS - 1, 10**12)
    assert (status, used, log) == (TxStatus.OUT_OF_GAS, GAS - 1, "out of gas")
    assert view.account(KEY.address) == Account(Amount(10**12 - fee), Nonce(5))
    assert list(view.changes()) == sorted([b"A" + KEY.address])
