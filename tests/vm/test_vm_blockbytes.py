"""The once-computed encodings give exactly what core.block computes from scratch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.block import compute_results_root, compute_txs_root
from core.errors import InvalidBlock
from core.types import Amount
from tests.vm.devnet import Devnet
from tests.vm.test_vm_evidence import double_vote
from vm.blockbytes import array_header_size, get_block_bytes
from vm.txs import Transfer

pytestmark = pytest.mark.vm


def test_array_headers() -> None:
    assert [array_header_size(n) for n in (0, 15, 16, 65535, 65536)] == [1, 1, 3, 3, 5]


def test_sizes_and_roots_match_core(net: Devnet) -> None:
    a, b = net.account(6), net.account(7)
    net.step()
    for count in (0, 1, 17):
        txs = [net.tx(a, Transfer(b.address, Amount(i)), gas_limit=1000) for i in range(count)]
        block = net.step(txs, evidence=[double_vote(net, 0, net.height)] if count == 17 else [])
        parts = get_block_bytes(block)
        assert parts.size == len(block.encode())
        assert compute_txs_root(block.txs) == block.header.txs_root
        assert compute_results_root(block.results) == block.header.results_root
        assert [t.hash for t in parts.txs] == [tx.hash for tx in block.txs]
    broken = replace(block, results=(*block.results[:-1], replace(block.results[-1], log="x")))
    with pytest.raises(InvalidBlock):
        get_block_bytes(broken)
    with pytest.raises(InvalidBlock):
        broken.validate_basic()
