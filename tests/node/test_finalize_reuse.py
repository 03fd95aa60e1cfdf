"""A validator executes a block once: the execution its validation stored is what the commit stages, even when
the others' precommits decide the block while that validation is still running (docs/performance-cpu.md,
"Blocks executed twice (finalize round)")."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.events import ProposalReceived, VoteReceived
from consensus.proposer import ProposerPriorities
from core.app import BlockTemplate, Verdict
from core.block import Block, ProposalBlock
from core.errors import InferchainError
from core.hashing import ZERO_HASH
from core.keys import PrivateKey
from core.types import Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Proposal, Vote, VoteType
from node.service import Node
from tests.node.helpers import (
    SEED,
    account,
    genesis_doc,
    local_node,
    make_home,
    running,
    transfer,
    wait_until,
)
from tools.genesis import validator_key
from vm.app import VMApplication

pytestmark = pytest.mark.node


@dataclass
class Proposed:
    """Blocks of height 1 built by another node for the given rounds, and this node's validator index."""

    chain_id: str
    time: int
    me: int
    blocks: dict[int, Block]
    proposers: dict[int, PrivateKey]


def propose(tmp_path: Path, genesis: dict[str, Any], rounds: Sequence[int]) -> Proposed:
    builder = local_node(make_home(tmp_path, "builder", genesis, validator=None))
    try:
        chain_id = builder.chain_id
        schedule = ProposerPriorities.genesis(builder.app.validator_set(Height(1)))
        keys = {k.address: k for k in (validator_key(SEED, i) for i in range(4))}
        proposers = {r: keys[schedule.proposer(r)] for r in rounds}
        me = next(i for i in range(4) if validator_key(SEED, i).address not in
                  {k.address for k in proposers.values()})
        t = int(builder.genesis.genesis_time) + 1000
        blocks = {}
        for r in rounds:
            template = BlockTemplate(chain_id, Height(1), Round(r), Timestamp(t), proposers[r].address, ZERO_HASH,
                                     None, ())
            txs = [transfer(chain_id, account(1 + r), account(9), 5, nonce=n) for n in range(20)]
            blocks[r] = builder.app.build_block(template, txs)
            assert len(blocks[r].txs) == 20
        return Proposed(chain_id, t, me, blocks, proposers)
    finally:
        builder.close()


async def deliver_proposal(node: Node, p: Proposed, r: int) -> None:
    driver = node.driver
    assert driver is not None and driver.state.proposer(r) == p.proposers[r].address
    key, block = p.proposers[r], p.blocks[r]
    signed = Proposal(Height(1), Round(r), -1, block.id, Timestamp(p.time), key.public_key, ZERO_SIGNATURE)
    await driver.submit(ProposalReceived(driver.now(), ProposalBlock(signed.signed(key, p.chain_id), block)))


async def deliver_precommits(node: Node, p: Proposed, r: int) -> None:
    """The three other validators' precommits for round r's block: a quorum, this node's vote not needed."""
    driver = node.driver
    assert driver is not None
    for i in range(4):
        if i == p.me:
            continue
        key = validator_key(SEED, i)
        vote = Vote(VoteType.PRECOMMIT, Height(1), Round(r), p.blocks[r].id, Timestamp(p.time), key.public_key,
                    node.app.poi_commitment(Height(1), key.address), ZERO_SIGNATURE).signed(key, p.chain_id)
        await driver.submit(VoteReceived(driver.now(), vote))


class Held:
    """The node's `validate_block` held until released (a loaded node still validating), and what its
    `validate_block` and `finalize_block` were called with."""

    def __init__(self, app: VMApplication, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.validated: list[Block] = []
        self.finalized: list[Block] = []
        validate, finalize = app.validate_block, app.finalize_block

        def slow_validate(b: Block) -> Verdict:
            self.validated.append(b)
            self.entered.set()
            assert self.release.wait(60)
            return validate(b)

        def counted_finalize(b: Block, batch: Any) -> Any:
            self.finalized.append(b)
            return finalize(b, batch)

        monkeypatch.setattr(app, "validate_block", slow_validate)
        monkeypatch.setattr(app, "finalize_block", counted_finalize)


@pytest.mark.trio
async def test_a_block_decided_while_this_node_validates_it_is_executed_once(tmp_path, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The missed path: a proposal under validation here (slow: a loaded node), then 3 of 4 precommits for it
    arrive, so consensus decides before this node's verdict. The commit must stage the validation's
    execution, not apply the block a second time beside it."""
    caplog.set_level(logging.INFO, logger="node.driver")
    genesis = genesis_doc(4)
    p = propose(tmp_path, genesis, [0])
    node = local_node(make_home(tmp_path, "me", genesis, validator=p.me))
    held = Held(node.app, monkeypatch)
    waited = "decided while this node validated it"
    with trio.fail_after(90):
        async with running(node):
            await deliver_proposal(node, p, 0)
            await wait_until(held.entered.is_set, 30)
            await deliver_precommits(node, p, 0)
            # Decided: either the commit waits for the validation (the fix), or it went ahead and applied the
            # block itself while the validation was held (the double execution). Then the validation goes on.
            await wait_until(lambda: bool(held.finalized) or any(waited in r.getMessage() for r in caplog.records),
                             30)
            held.release.set()
            await wait_until(lambda: int(node.height) >= 1, 30)
            assert node.blockstore.block(1) == p.blocks[0]
    assert node.app.finalize_counts == {"reused": 1, "unexecuted": 0, "other_base": 0}


@pytest.mark.trio
async def test_a_validation_still_queued_when_its_block_is_decided_never_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Round 0's proposal holds this node's one validation thread; round 1's block is decided by the others'
    precommits while its validation waits in the queue. The commit executes round 1's block once; its queued
    validation must not execute it again afterwards."""
    genesis = genesis_doc(4)
    p = propose(tmp_path, genesis, [0, 1])
    node = local_node(make_home(tmp_path, "me", genesis, validator=p.me))
    held = Held(node.app, monkeypatch)
    with trio.fail_after(90):
        async with running(node):
            await deliver_proposal(node, p, 0)
            await wait_until(held.entered.is_set, 30)
            await deliver_proposal(node, p, 1)
            await deliver_precommits(node, p, 1)
            await wait_until(lambda: int(node.height) >= 1, 30)
            assert node.blockstore.block(1) == p.blocks[1]
            held.release.set()
            driver = node.driver
            assert driver is not None
            threads = driver._app_threads  # the validation threads: wait until both tasks are through them

            def idle() -> bool:
                stats = threads.statistics()
                return stats.borrowed_tokens == 0 and stats.tasks_waiting == 0

            await wait_until(idle, 30)
    assert held.validated == [p.blocks[0]]
    assert node.app.finalize_counts == {"reused": 0, "unexecuted": 1, "other_base": 0}


def test_a_stored_execution_serves_only_its_own_block_on_its_own_base(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Determinism: the execution `finalize_block` reuses is keyed by the block's id (its header's hash:
    parent, state root, body hashes, proposer, time) and the state version it ran on. Another block of the
    same height, or the same block on another base, is executed, never served from the stored one."""
    genesis = genesis_doc(4)
    node = local_node(make_home(tmp_path, "v0", genesis, validator=0))
    try:
        app = node.app
        chain_id = node.chain_id
        t = int(node.genesis.genesis_time) + 1000
        proposer = validator_key(SEED, 1).address

        def built(n: int, time: int) -> Block:
            template = BlockTemplate(chain_id, Height(1), Round(0), Timestamp(time), proposer, ZERO_HASH, None, ())
            return app.build_block(template, [transfer(chain_id, account(1), account(2), 5, nonce=i)
                                              for i in range(n)])

        one, other = built(3, t), built(4, t + 1)  # both stored; `other` differs in body and time
        assert one.id != other.id
        assert app.validate_block(one).is_valid and app.reused_executions == 1
        with node.db.write_batch(sync=True) as batch:
            outcome = app.finalize_block(other, batch)
        assert outcome.state_root == other.header.state_root
        assert app.finalize_counts == {"reused": 1, "unexecuted": 0, "other_base": 0}
        # `one` was executed on version 0; the state is now at 1: its stored execution must not serve it.
        with pytest.raises(InferchainError), node.db.write_batch(sync=True) as batch:
            app.finalize_block(one, batch)
        assert app.finalize_counts == {"reused": 1, "unexecuted": 0, "other_base": 1}
    finally:
        node.close()
