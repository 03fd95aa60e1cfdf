"""The block's gas rule (docs/vm.md, "Gas"): the gas a block's transactions used so far plus the next one's
limit fits `max_block_gas`. Tiny inferences each reserve their model's load in their limit, but only the
block's first call on the model uses it: a block holds as many as their used gas allows, not their limits.
The attack: a proposer that ignores the rule and packs more work than `max_block_gas`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidBlock
from core.header import TxStatus
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from tests.vm.devnet import Devnet, devnet_genesis
from vm import build
from vm.apply import BlockExecutor, apply_block
from vm.execute import infer_gas
from vm.txs import Infer

pytestmark = pytest.mark.vm

MAX_BLOCK_GAS = 1_000_000  # about four tiny inferences' limits; some twenty of their used gas


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    genesis = devnet_genesis(4, consensus={"max_block_gas": MAX_BLOCK_GAS}, vm={"max_tx_gas": MAX_BLOCK_GAS})
    devnet = Devnet.start(tmp_path, genesis, nodes=2)
    yield devnet
    devnet.close()


def digits_int8(net: Devnet) -> Hash32:
    return next(m.model_id for m in net.genesis.models if m.name == "digits_int8")


def inferences(net: Devnet, count: int) -> list[Transaction]:
    """`count` tiny inferences on distinct inputs, each with the safe gas quote (the model's load included)."""
    model_id = digits_int8(net)
    record = net.apps[0].view().model(model_id)
    assert record is not None
    rng = np.random.default_rng(7)
    txs = []
    for i in range(count):
        x = (Tensor.from_numpy(rng.integers(0, 256, (1, 64)).astype(np.uint8)),)
        txs.append(net.tx(net.account(4 + i % 4), Infer(model_id, x, Amount(0)),
                          gas_limit=infer_gas(net.genesis.params, record, x)))
    return txs


def test_a_block_holds_inferences_by_their_used_gas_not_their_summed_limits(net: Devnet) -> None:
    txs = inferences(net, 12)
    assert sum(tx.gas_limit for tx in txs) > 3 * MAX_BLOCK_GAS  # the old rule held four of them
    block = net.step(txs)  # built on node 0, validated by node 1, committed on both
    assert len(block.txs) == 12
    assert all(r.status is TxStatus.OK for r in block.results)
    used = sum(r.gas_used for r in block.results)
    assert used <= MAX_BLOCK_GAS
    load = block.results[0].gas_used - block.results[1].gas_used  # only the first call paid the load
    assert load > 0 and all(r.gas_used == block.results[1].gas_used for r in block.results[1:])


def test_the_builder_stops_where_the_next_limit_would_pass_max_block_gas(net: Devnet) -> None:
    txs = inferences(net, 40)
    block = net.step(txs)
    used = [r.gas_used for r in block.results]
    assert 12 < len(block.txs) < 40
    assert sum(used) + txs[len(block.txs)].gas_limit > MAX_BLOCK_GAS >= sum(used[:-1]) + txs[len(block.txs) - 1].gas_limit
    rest = net.step(txs[len(block.txs):])  # the rest follows in the next blocks
    assert len(rest.txs) > 0


def test_a_proposal_that_packs_more_gas_than_the_block_allows_is_refused(net: Devnet,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A proposer whose builder forgets the gas used so far packs 40 inferences (~1.1 M gas used) into a
    1 M-gas block; the validator names the transactions past the limit, and applying it raises."""

    class Greedy(BlockExecutor):
        def inclusion_error(self, tx: Transaction) -> str | None:
            self.gas_used = 0  # the attacker's builder: every transaction sees an empty block
            return super().inclusion_error(tx)

    txs = inferences(net, 40)
    with monkeypatch.context() as patch:
        patch.setattr(build, "BlockExecutor", Greedy)
        block = net.propose(txs)
    assert len(block.txs) == 40 and sum(r.gas_used for r in block.results) > MAX_BLOCK_GAS
    [verdict] = net.validate(block)
    assert not verdict.is_valid and "cannot be included" in verdict.reason
    assert verdict.bad_txs and min(verdict.bad_txs) > 12
    with pytest.raises(InvalidBlock, match="cannot be included: gas limit"):
        apply_block(net.apps[1].view(), block)
