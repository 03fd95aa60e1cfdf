"""Stateless block checks run once per node and off the event loop (STYLE: no CPU work on the loop)."""

from __future__ import annotations

import os
import random
import threading
import traceback
from typing import Any

import pytest
import trio

import vm.blockbytes
from core.block import Block
from core.errors import InvalidBlock
from core.hashing import sha256
from core.types import Amount
from node.blockcheck import BlockChecks
from p2p.testing.chain import build_chain
from tests.node.helpers import genesis_doc, local_node, make_home, running, wait_until
from tests.vm.devnet import Devnet
from vm.txs import Transfer

pytestmark = pytest.mark.node


def test_a_checked_block_is_answered_from_memory_and_a_bad_one_is_refused() -> None:
    checks = BlockChecks(capacity=2)
    block = build_chain("c", 2, txs_per_block=3).blocks[-1]
    checks(block)
    checks(block)
    assert checks.checks == 1 and checks.is_checked(block)
    # An equal but distinct object was never checked itself: identity, not equality, is the key.
    assert not checks.is_checked(Block.decode(block.encode()))
    bad = block.replace(header=block.header.replace(txs_root=sha256(b"other")))
    with pytest.raises(InvalidBlock):
        checks(bad)
    assert not checks.is_checked(bad)
    checks.precheck(bad)  # a failure is left for the state machine to find and record
    others = build_chain("c", 4, txs_per_block=1).blocks
    for other in others:
        checks.mark(other)
    assert not checks.is_checked(block)  # bounded: the oldest entries go


@pytest.mark.trio
async def test_the_consensus_machine_never_hashes_a_block_on_the_event_loop(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    loop_thread = threading.current_thread()
    on_loop: list[int] = []
    original = Block.validate_basic

    def recording(self: Block, *args: Any) -> None:
        # Small gossip messages are checked on the loop by p2p itself (below its thread threshold); what must
        # not happen is the consensus machine hashing a (possibly full) block there.
        machine = any(f.filename.endswith(os.path.join("consensus", "state.py")) for f in traceback.extract_stack())
        if machine and threading.current_thread() is loop_thread:
            on_loop.append(int(self.height))
        original(self, *args)

    monkeypatch.setattr(Block, "validate_basic", recording)
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    with trio.fail_after(60):
        async with running(node):
            await wait_until(lambda: node.height >= 3, 30)
    assert on_loop == []
    assert node.block_checks.checks >= 3  # the checks ran, in worker threads


def test_the_vm_trusts_the_nodes_check_of_a_block_object_and_still_refuses_a_wrong_root(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A node compares a proposal's header hashes with its body once (BlockChecks); its VM takes that answer
    for the very object checked and compares them itself for any other block, so a wrong root is refused."""
    checks = BlockChecks()
    (tmp_path / "wired").mkdir()
    (tmp_path / "plain").mkdir()
    wired = Devnet.start(tmp_path / "wired", nodes=3, body_checked=checks.is_checked)
    plain = Devnet.start(tmp_path / "plain", nodes=2)
    compared: list[int] = []
    original = vm.blockbytes.validate_parts

    def recording(block: Block, *args: Any) -> None:
        compared.append(int(block.height))
        original(block, *args)

    monkeypatch.setattr(vm.blockbytes, "validate_parts", recording)
    try:
        rng = random.Random(11)
        for _ in range(3):  # random transfers, some beyond the sender's balance: equal outcomes on both paths
            txs = []
            for _ in range(rng.randrange(5, 30)):
                sender, to = rng.sample(range(4, 8), 2)
                amount = Amount(Amount.MAX) if rng.random() < 0.1 else Amount(rng.randrange(1, 1000))
                txs.append((sender, to, amount))
            blocks = [net.propose([net.tx(net.account(s), Transfer(net.account(t).address, a), gas_limit=1000)
                                   for s, t, a in txs]) for net in (wired, plain)]
            checks.precheck(blocks[0])
            compared.clear()
            assert [v.is_valid for v in wired.validate(blocks[0], [0, 1])] == [True, True]  # built, validated
            assert compared == []  # neither the proposer's reuse nor the validator compared the roots again
            assert plain.validate(blocks[1])[0].is_valid and compared == [int(blocks[1].height)]
            wired.commit(blocks[0])  # node 2 did not validate it: it applies the checked block
            plain.commit(blocks[1])
            assert blocks[0].header.state_root == blocks[1].header.state_root
            assert blocks[0].results == blocks[1].results
        assert wired.apps[0].reused_executions == 3

        net = wired
        good = net.propose([net.tx(net.account(6), Transfer(net.account(7).address, Amount(5)), gas_limit=1000)])
        wrong_txs_root = good.replace(header=good.header.replace(txs_root=sha256(b"other")))
        wrong_results = good.replace(results=(good.results[0].replace(log="x"),))  # another body, known header
        for bad in (wrong_txs_root, wrong_results):
            checks.precheck(bad)  # fails: never marked
            assert not checks.is_checked(bad)
            for verdict in net.validate(bad, [0, 1]):
                assert not verdict.is_valid and "root does not match" in verdict.reason, verdict
        with pytest.raises(InvalidBlock, match="root does not match"), \
                net.apps[2].store.write_batch(sync=False) as batch:
            net.apps[2].finalize_block(wrong_txs_root, batch)
        # An equal copy of a checked block is another object: checked in full, and valid.
        checks.precheck(good)
        copy = Block.decode(good.encode())
        compared.clear()
        assert net.validate(copy, [1])[0].is_valid and compared == [int(good.height)]
    finally:
        wired.close()
        plain.close()
