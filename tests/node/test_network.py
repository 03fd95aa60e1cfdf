"""Validators in one trio process over real libp2p hosts on 127.0.0.1: they agree block by block, gossip
transactions, and a node started late block-syncs and joins consensus."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from core.header import TxStatus
from node.events import TxState
from node.service import Node
from tests.node.helpers import (
    account,
    genesis_doc,
    local_node,
    make_home,
    running,
    transfer,
    wait_until,
    with_bootstrap,
)

pytestmark = pytest.mark.node


def assert_same_chain(nodes: list[Node], upto: int) -> None:
    for h in range(1, upto + 1):
        blocks = [n.blockstore.block(h) for n in nodes]
        assert all(b is not None for b in blocks), f"height {h} missing somewhere"
        ids = {b.id for b in blocks if b is not None}
        roots = {b.header.state_root for b in blocks if b is not None}
        assert len(ids) == 1, f"nodes disagree on block {h}"
        assert len(roots) == 1, f"nodes disagree on the state root after block {h}"
        assert len({n.app.state_map.root(h) for n in nodes}) == 1


async def start_network(stack: AsyncExitStack, tmp_path, genesis, validators: list[int]) -> list[Node]:  # type: ignore[no-untyped-def]
    nodes: list[Node] = []
    for i in validators:
        home = make_home(tmp_path, f"v{i}", genesis, validator=i)
        node = local_node(home, config=with_bootstrap(home, tuple(n.p2p_addr for n in nodes)))
        await stack.enter_async_context(running(node))
        nodes.append(node)
    return nodes


@pytest.mark.trio
async def test_four_validators_agree_on_every_block_and_state_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    genesis = genesis_doc(4)
    with trio.fail_after(180):
        async with AsyncExitStack() as stack:
            nodes = await start_network(stack, tmp_path, genesis, [0, 1, 2, 3])
            await wait_until(lambda: min(n.height for n in nodes) >= 3, 90)
            chain_id = nodes[0].chain_id
            # A transaction submitted to one node is gossiped, proposed by whoever proposes, and committed.
            pay = transfer(chain_id, account(5), account(6), 777, nonce=0)
            verdict = await nodes[3].queries.submit_tx(pay)
            assert verdict.accepted, verdict
            outcome = await nodes[0].queries.wait_for_tx(pay.hash)
            assert outcome.state is TxState.COMMITTED
            assert outcome.result is not None and outcome.result.status == TxStatus.OK
            target = max(n.height for n in nodes)
            await wait_until(lambda: min(n.height for n in nodes) >= target, 60)
            assert_same_chain(nodes, target)
            proposers = {nodes[0].blockstore.block(h).header.proposer for h in range(1, target + 1)}  # type: ignore[union-attr]
            assert len(proposers) >= 2, "proposing rotates among validators"
            for n in nodes:
                assert n.queries.tx(pay.hash) is not None
                assert n.queries.status().peers >= 3
            # Proposals travelled compact (transactions by hash) and every non-proposer rebuilt them.
            assert all(n.proposal_assembler is not None and n.proposal_assembler.rebuilt > 0 for n in nodes)
            # Each validator serves its peer record (core.peer_record): its key vouches for its peer id, which is
            # what lets a proposer's hold count validators rather than peer ids (node.validator_peers).
            for asker, n in ((nodes[1], nodes[0]), (nodes[0], nodes[3])):
                assert asker.p2p is not None and n.p2p is not None and n.validator_key is not None
                record = await asker.p2p.reqresp.peer_record(n.p2p.peer_id)
                assert record.validator_address == n.validator_key.address
            assert nodes[0].own_hold.validators == {bytes(n.validator_key.address) for n in nodes if n.validator_key}


@pytest.mark.trio
async def test_a_validator_started_late_block_syncs_and_joins_consensus(tmp_path) -> None:  # type: ignore[no-untyped-def]
    genesis = genesis_doc(4)
    with trio.fail_after(240):
        async with AsyncExitStack() as stack:
            nodes = await start_network(stack, tmp_path, genesis, [0, 1, 2])  # 3 of 4: still > 2/3
            await wait_until(lambda: min(n.height for n in nodes) >= 8, 120)
            home = make_home(tmp_path, "late", genesis, validator=3)
            late = local_node(home, config=with_bootstrap(home, tuple(n.p2p_addr for n in nodes)))
            await stack.enter_async_context(running(late))
            # Block sync fetched blocks; it may hand over to consensus before the last few (it switches as
            # soon as it sees validators voting at its next height), so the count is not pinned.
            assert late.block_sync is not None and late.block_sync.synced_blocks >= 1
            everyone = [*nodes, late]
            target = max(n.height for n in nodes) + 2
            await wait_until(lambda: min(n.height for n in everyone) >= target, 90)
            assert_same_chain(everyone, target)
            # The late validator now takes part: its precommits appear in later commits.
            key = late.validator_key
            assert key is not None
            later = late.blockstore.commit(late.height)
            await wait_until(lambda: any(
                v.validator == key.public_key
                for h in range(target - 1, late.height + 1)
                for v in (late.blockstore.commit(h) or later).precommits), 60)


@pytest.mark.trio
async def test_equivocation_evidence_is_gossiped_included_once_and_punished_everywhere(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.evidence import duplicate_vote
    from core.hashing import sha256
    from core.store import KeySpace, space
    from core.types import Round, Timestamp
    from core.votes import ZERO_SIGNATURE, Vote, VoteType
    from tests.node.helpers import SEED
    from tools.genesis import validator_key

    genesis = genesis_doc(4)
    with trio.fail_after(180):
        async with AsyncExitStack() as stack:
            nodes = await start_network(stack, tmp_path, genesis, [0, 1, 2, 3])
            await wait_until(lambda: min(n.height for n in nodes) >= 2, 60)
            cheat = validator_key(SEED, 2)
            h = nodes[0].height

            def prevote(block: bytes) -> Vote:
                return Vote(VoteType.PREVOTE, h, Round(0), sha256(block), Timestamp(0), cheat.public_key, None,
                            ZERO_SIGNATURE).signed(cheat, nodes[0].chain_id)

            evidence = duplicate_vote(prevote(b"a"), prevote(b"b"))
            assert nodes[0].driver is not None
            await nodes[0].driver.on_evidence(evidence)

            def included() -> int | None:
                store = nodes[0].blockstore
                for height in range(1, store.height + 1):
                    block = store.block(height)
                    if block is not None and block.evidence:
                        return height
                return None

            await wait_until(lambda: included() is not None, 60)
            at = included()
            assert at is not None
            await wait_until(lambda: min(n.height for n in nodes) >= at + 1, 60)
            assert_same_chain(nodes, at + 1)
            assert nodes[0].blockstore.block(at).evidence == (evidence,)  # type: ignore[union-attr]
            top = min(n.height for n in nodes)
            assert sum(len(nodes[0].blockstore.block(x).evidence) for x in range(1, top + 1)) == 1  # type: ignore[union-attr]
            for n in nodes:
                record = n.queries.validator(cheat.address)
                assert record is not None and record.tombstoned and record.slashed > 0
                assert list(space(n.db, KeySpace.EVIDENCE).iterate()) == []  # no longer pending
