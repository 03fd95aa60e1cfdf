"""Stateless block checks run once per node and off the event loop (STYLE: no CPU work on the loop)."""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any

import pytest
import trio

from core.block import Block
from core.errors import InvalidBlock
from core.hashing import sha256
from node.blockcheck import BlockChecks
from p2p.testing.chain import build_chain
from tests.node.helpers import genesis_doc, local_node, make_home, running, wait_until

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
