"""A validator executes a block once: the execution its validation stored is what the commit stages, even when
the others' precommits decide the block while that validation is still running (docs/performance.md,
"Blocks executed twice (finalize round)")."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import trio

from consensus.events import ProposalReceived, VoteReceived
from consensus.proposer import ProposerPriorities
from core.app import BlockTemplate, Verdict
from core.block import Block, ProposalBlock
from core.errors import InferchainError
from core.hashing import ZERO_HASH
from core.types import Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Proposal, Vote, VoteType
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

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_a_block_decided_while_this_node_validates_it_is_executed_once(tmp_path, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The missed path: a proposal under validation here (slow: a loaded node), then 3 of 4 precommits for it
    arrive, so consensus decides before this node's verdict. The commit must stage the validation's
    execution, not apply the block a second time beside it."""
    caplog.set_level(logging.INFO, logger="node.driver")
    genesis = genesis_doc(4)
    builder = local_node(make_home(tmp_path, "builder", genesis, validator=None))
    try:
        chain_id = builder.chain_id
        vset = builder.app.validator_set(Height(1))
        proposer = ProposerPriorities.genesis(vset).proposer(0)
        keys = [validator_key(SEED, i) for i in range(4)]
        me = next(i for i, k in enumerate(keys) if k.address != proposer)
        pkey = next(k for k in keys if k.address == proposer)
        t = int(builder.genesis.genesis_time) + 1000
        template = BlockTemplate(chain_id, Height(1), Round(0), Timestamp(t), proposer, ZERO_HASH, None, ())
        txs = [transfer(chain_id, account(1), account(2), 5, nonce=n) for n in range(20)]
        block = builder.app.build_block(template, txs)
        assert len(block.txs) == 20
    finally:
        builder.close()

    node = local_node(make_home(tmp_path, "me", genesis, validator=me))
    app = node.app
    entered, release = threading.Event(), threading.Event()
    validate, finalize = app.validate_block, app.finalize_block
    finalized: list[Block] = []

    def slow_validate(b: Block) -> Verdict:
        entered.set()
        assert release.wait(60)
        return validate(b)

    def counted_finalize(b: Block, batch: Any) -> Any:
        finalized.append(b)
        return finalize(b, batch)

    monkeypatch.setattr(app, "validate_block", slow_validate)
    monkeypatch.setattr(app, "finalize_block", counted_finalize)
    waited = "decided while this node validated it"
    with trio.fail_after(90):
        async with running(node):
            driver = node.driver
            assert driver is not None and driver.state.proposer(0) == proposer
            signed = Proposal(Height(1), Round(0), -1, block.id, Timestamp(t), pkey.public_key, ZERO_SIGNATURE)
            await driver.submit(ProposalReceived(driver.now(), ProposalBlock(signed.signed(pkey, chain_id), block)))
            await wait_until(entered.is_set, 30)
            for key in keys:
                if key.address == keys[me].address:
                    continue
                vote = Vote(VoteType.PRECOMMIT, Height(1), Round(0), block.id, Timestamp(t), key.public_key,
                            app.poi_commitment(Height(1), key.address), ZERO_SIGNATURE).signed(key, chain_id)
                await driver.submit(VoteReceived(driver.now(), vote))
            # Decided: either the commit waits for the validation (the fix), or it went ahead and applied the
            # block itself while the validation was held (the double execution). Then the validation goes on.
            await wait_until(lambda: bool(finalized) or any(waited in r.getMessage() for r in caplog.records), 30)
            release.set()
            await wait_until(lambda: int(node.height) >= 1, 30)
            assert node.blockstore.block(1) == block
    assert app.finalize_counts == {"reused": 1, "unexecuted": 0, "other_base": 0}


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
