"""A transaction's bytes, payload and sender address are decoded or derived once on a node, from its arrival
at the RPC entry to its commit and the explorer index: a real validator (LevelDB, the real VM and ONNX Runtime
in-process) commits tiny inferences submitted as a client's hex, and counters stand in for each decoder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

import core.tx as core_tx
from core.codec import _codec
from core.tx import Transaction
from core.types import Address
from node.rpc.methods import parse_tx
from tests.node.helpers import (
    account,
    genesis_doc,
    infer_digits_int8,
    local_node,
    make_home,
    model_id,
    running,
    wait_until,
)
from vm.txs import Infer

pytestmark = pytest.mark.node

TXS = 8


def _count_decodes(monkeypatch: Any, counts: Counter[str], name: str, cls: Any) -> None:
    """Make `cls.decode` count its calls under `name`."""
    _codec(cls)  # the generated decode is installed on first use
    decode = cls.__dict__["decode"].__func__

    def counted(c: Any, data: bytes) -> Any:
        if c is cls:
            counts[name] += 1
        return decode(c, data)

    monkeypatch.setattr(cls, "decode", classmethod(counted))


def test_an_inference_is_decoded_once_from_the_rpc_entry_to_the_index(tmp_path: Path, monkeypatch: Any) -> None:
    counts: Counter[str] = Counter()
    _count_decodes(monkeypatch, counts, "transaction", Transaction)
    _count_decodes(monkeypatch, counts, "payload", Infer)
    derive = core_tx.address_from_public_key

    def counted_address(public_key: bytes) -> Address:
        counts["address"] += 1
        return derive(public_key)

    monkeypatch.setattr(core_tx, "address_from_public_key", counted_address)

    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    keys = [account(1 + i) for i in range(2)]
    hexes = [infer_digits_int8(node.chain_id, keys[i % 2], i // 2, seed=i).encode().hex() for i in range(TXS)]
    digits = model_id("digits_int8")

    async def main() -> None:
        with trio.fail_after(120):
            async with running(node):
                await wait_until(lambda: node.height >= 1, 60)
                counts.clear()
                txs = [parse_tx(h) for h in hexes]  # the RPC entry's parse: the client's bytes, checked
                verdicts = await node.queries.submit_txs(txs)
                assert all(v.accepted for v in verdicts), verdicts
                for tx in txs:
                    await node.queries.wait_for_tx(tx.hash)
                await wait_until(lambda: node.queries.model_calls(digits) >= TXS, 60)

    trio.run(main)
    node.close()
    # Each transaction: its bytes decoded at the entry, its payload at admission (the builder, execution and
    # the explorer index read the kept one), its sender's address derived once (entry, mempool update, index).
    assert counts == Counter(transaction=TXS, payload=TXS, address=TXS), counts
