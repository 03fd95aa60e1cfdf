"""Catching up: block sync verifies every commit against the validator set the node knows before applying,
and a node that loses every gossiped vote still follows consensus through request/response catch-up."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from core.errors import InvalidBlock
from core.types import SignatureBytes
from node.blockstore import BlockStore
from node.leveldb import LevelDBStore
from node.sync import BlockSync
from p2p.reqresp import SyncedBlock
from p2p.topics import TopicKind
from p2p.validation import GossipMessage
from tests.node.helpers import genesis_doc, local_node, make_home, running, wait_until, with_bootstrap
from tests.node.test_network import assert_same_chain, start_network

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_block_sync_applies_only_blocks_whose_commit_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    genesis = genesis_doc(1)
    source = local_node(make_home(tmp_path, "source", genesis, validator=0))
    with trio.fail_after(60):
        async with running(source):
            await wait_until(lambda: source.height >= 3, 30)
    with LevelDBStore(tmp_path / "source" / "data") as db:  # the source's chain, as it stopped
        store = BlockStore(db, source.chain_id)
        chain = [(store.block(h), store.commit(h)) for h in range(1, store.height + 1)]
        source_next_proposers = store.next_proposers()
    follower = local_node(make_home(tmp_path, "follower", genesis, validator=None))
    try:
        sync = BlockSync(follower.chain, None, follower.chain_id)  # type: ignore[arg-type]
        (b1, c1), (b2, c2) = chain[:2]
        head = chain[-1][0]
        assert b1 and c1 and b2 and c2 and head
        forged_vote = c1.precommits[0].replace(signature=SignatureBytes(b"\x01" * 64))
        forged = c1.replace(precommits=(forged_vote, *c1.precommits[1:]))
        with trio.fail_after(60):
            with pytest.raises(InvalidBlock, match="badly signed"):
                await sync.apply(SyncedBlock(b1, forged))
            with pytest.raises(InvalidBlock, match="does not follow"):
                await sync.apply(SyncedBlock(b2, c2))
            other_commit = c2.replace(block_id=b1.id, height=b1.height)
            with pytest.raises(InvalidBlock):
                await sync.apply(SyncedBlock(b1, other_commit))
            assert follower.height == 0
            for block, commit in chain:
                await sync.apply(SyncedBlock(block, commit))  # type: ignore[arg-type]
        assert follower.height == len(chain) and follower.blockstore.head_id == head.id
        assert follower.app.info().state_root == head.header.state_root
        # The proposer priorities of the next height are derived, so consensus can start from here.
        assert follower.blockstore.next_proposers() == source_next_proposers
    finally:
        follower.close()


@pytest.mark.trio
async def test_a_node_that_loses_every_gossiped_vote_follows_through_catch_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    genesis = genesis_doc(4)
    with trio.fail_after(240):
        async with AsyncExitStack() as stack:
            nodes = await start_network(stack, tmp_path, genesis, [0, 1, 2])
            home = make_home(tmp_path, "deaf", genesis, validator=3)
            deaf = local_node(home, config=with_bootstrap(home, tuple(n.p2p_addr for n in nodes)))
            await stack.enter_async_context(running(deaf))
            assert deaf.p2p is not None and deaf.catch_up is not None

            async def drop(message: GossipMessage) -> None:
                await trio.lowlevel.checkpoint()

            deaf.p2p.gossip.set_handler(TopicKind.VOTES, drop)  # gossip delivers it no vote at all
            start = deaf.height
            everyone = [*nodes, deaf]
            await wait_until(lambda: deaf.height >= start + 4, 120)
            recovered = deaf.catch_up.votes_fetched + deaf.catch_up.commits_fetched
            assert recovered > 0
            target = min(n.height for n in everyone)
            assert_same_chain(everyone, target)
