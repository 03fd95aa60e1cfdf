"""Transfers, fees, inclusion rules, staking, unbonding and supply conservation, on real LevelDB."""

from __future__ import annotations

import random

import pytest

from core.header import TxStatus
from core.tx import Transaction
from core.types import Amount, PublicKeyBytes
from tests.vm.devnet import Devnet
from vm.state import UnbondingQueue, unbonding_key
from vm.txs import Stake, Transfer, TxKind, Unjail, Unstake

pytestmark = pytest.mark.vm


def assert_conserved(net: Devnet) -> None:
    net.assert_supply_conserved()


def test_transfer_pays_fee_and_moves_funds(net: Devnet) -> None:
    a, b = net.account(0), net.account(1)
    before_a, before_b = net.apps[0].view().account(a.address), net.apps[0].view().account(b.address)
    block = net.step([net.tx(a, Transfer(b.address, Amount(1234)), gas_limit=5000)])
    assert block.results[0].status is TxStatus.OK and block.results[0].gas_used == 1000
    after_a, after_b = net.apps[0].view().account(a.address), net.apps[0].view().account(b.address)
    assert after_a.balance == before_a.balance - 1234 - 5000  # the fee is paid in full, not by gas used
    assert after_a.nonce == before_a.nonce + 1
    assert after_b.balance == before_b.balance + 1234
    assert_conserved(net)


def test_failed_transactions_still_pay(net: Devnet) -> None:
    a, b = net.account(0), net.account(1)
    huge = Amount(net.apps[0].view().account(a.address).balance)
    txs = [
        net.tx(a, Transfer(b.address, huge), gas_limit=5000),  # cannot cover amount after the fee
        net.tx(a, Transfer(b.address, Amount(1)), gas_limit=10),  # out of gas
        Transaction.create(a, chain_id=net.genesis.chain_id, nonce=net.nonces[a.address], gas_limit=2000,
                           fee=2000, kind=TxKind.TRANSFER, payload=b"\x01\x02"),  # malformed payload
        Transaction.create(a, chain_id=net.genesis.chain_id, nonce=net.nonces[a.address] + 1, gas_limit=2000,
                           fee=2000, kind=99, payload=b""),  # unknown kind
    ]
    start = net.apps[0].view().account(a.address)
    block = net.step(txs)
    statuses = [r.status for r in block.results]
    assert statuses == [TxStatus.FAILED, TxStatus.OUT_OF_GAS, TxStatus.FAILED, TxStatus.FAILED]
    assert block.results[1].gas_used == 10 and block.results[2].gas_used == 2000
    assert block.results[0].log.startswith("balance")
    end = net.apps[0].view().account(a.address)
    assert end.nonce == start.nonce + 4
    assert end.balance == start.balance - 5000 - 10 - 2000 - 2000
    assert_conserved(net)


def test_unincludable_transactions_are_skipped_by_the_proposer_and_refused_by_validators(net: Devnet) -> None:
    a, b = net.account(0), net.account(1)
    good = net.tx(a, Transfer(b.address, Amount(1)), gas_limit=1000)
    bad_nonce = net.tx(a, Transfer(b.address, Amount(1)), gas_limit=1000, nonce=77)
    cheap = net.tx(b, Transfer(a.address, Amount(1)), gas_limit=1000, fee=999)
    block = net.propose([good, bad_nonce, cheap])
    assert block.txs == (good,)
    # A proposer that includes them anyway gets an invalid verdict naming them.
    forged = net.propose([good])
    from dataclasses import replace

    from core.block import compute_results_root, compute_txs_root

    txs = (good, bad_nonce)
    results = (forged.results[0], forged.results[0])
    header = replace(forged.header, txs_root=compute_txs_root(txs), results_root=compute_results_root(results))
    verdict = net.apps[1].validate_block(replace(forged, header=header, txs=txs, results=results))
    assert verdict.kind.value == "invalid" and verdict.bad_txs == (1,)


def test_stake_makes_a_validator_two_heights_later_and_unstake_unbonds(net: Devnet) -> None:
    owner = net.account(5)
    new_key = net.account(99)  # any Ed25519 key works as a consensus key
    net.keys[new_key.address] = new_key  # so that the harness can sign its precommits
    pk = PublicKeyBytes(new_key.public_key)
    minimum = net.genesis.params.staking.min_validator_stake
    net.step([net.tx(owner, Stake(pk, Amount(minimum - 1)), gas_limit=10_000)])
    h = net.height
    assert new_key.address not in net.apps[0].validator_set(h + 2)
    block = net.step([net.tx(owner, Stake(pk, Amount(1)), gas_limit=10_000)])
    h = net.height
    assert block.results[0].status is TxStatus.OK
    assert new_key.address not in net.apps[0].validator_set(h + 1)
    assert new_key.address in net.apps[0].validator_set(h + 2)
    assert net.apps[0].validator_set(h + 2).get(new_key.address).power == minimum // net.genesis.params.staking.power_unit  # type: ignore[union-attr]
    # Someone else cannot unstake it; the owner can, and the amount comes back after the delay.
    other = net.step([net.tx(net.account(6), Unstake(pk, Amount(5)), gas_limit=10_000)])
    assert other.results[0].status is TxStatus.FAILED
    balance = net.apps[0].view().account(owner.address).balance
    block = net.step([net.tx(owner, Unstake(pk, Amount(minimum)), gas_limit=10_000)])
    assert block.results[0].status is TxStatus.OK
    done_at = int.from_bytes(block.results[0].data, "big")
    assert done_at == net.height + net.genesis.params.staking.unbonding_blocks
    assert new_key.address not in net.apps[0].validator_set(net.height + 2)
    assert_conserved(net)
    while net.height < done_at - 1:
        net.step()
    before = net.apps[0].view().account(owner.address).balance
    assert net.apps[0].view().get(unbonding_key(done_at), UnbondingQueue) is not None
    net.step()
    assert net.apps[0].view().get(unbonding_key(done_at), UnbondingQueue) is None
    assert net.apps[0].view().account(owner.address).balance >= before + minimum  # (+ any rewards it earned)
    assert balance > 0
    assert_conserved(net)


def test_unjail_needs_a_jailed_validator_and_its_owner(net: Devnet) -> None:
    owner = net.account(0)
    pk = PublicKeyBytes(net.genesis.validators[0].public_key)
    block = net.step([net.tx(owner, Unjail(pk), gas_limit=10_000), net.tx(net.account(1), Unjail(pk), gas_limit=10_000)])
    assert block.results[0].log == "the validator is not jailed"
    assert block.results[1].log == "the validator is owned by another account"


def test_supply_is_conserved_under_random_traffic(net: Devnet) -> None:
    rng = random.Random(7)
    keys = [net.account(i) for i in range(8)]
    for _ in range(6):
        txs = []
        for _ in range(12):
            src, dst = rng.sample(keys, 2)
            amount = Amount(rng.choice([0, 1, 10**6, 10**18]))
            txs.append(net.tx(src, Transfer(dst.address, amount), gas_limit=rng.choice([999, 1000, 3000])))
        net.step(txs)
        assert_conserved(net)
    supply = net.apps[0].view().supply()
    assert supply.issued > 0 and supply.burned > 0


def test_queries_carry_proofs_that_verify_against_the_header_root(net: Devnet) -> None:
    from vm.query import poi_score, query_account, query_model, query_validator

    a = net.account(0)
    block = net.step([net.tx(a, Transfer(net.account(1).address, Amount(3)), gas_limit=1000)])
    state = net.apps[0].state_map
    proven = query_account(state, a.address)
    assert proven.verify() and proven.root == block.header.state_root and proven.value is not None
    absent = query_account(state, net.account(999).address)
    assert absent.value is None and absent.verify()
    validator = query_validator(state, block.header.proposer)
    assert validator.verify() and validator.value is not None
    assert poi_score(validator.value).jailed is False
    model = query_model(state, net.genesis.models[0].model_id, version=0)
    assert model.verify() and model.value is not None
    forged = query_account(state, net.account(1).address)
    assert not type(forged)(forged.version, forged.root, proven.key, forged.raw, None, forged.proof).verify()
