"""A proposal that reaches a validator before its consensus has started is kept for it (node.early_proposals):
height 1 is decided in round 0 even when the proposer proposes while a peer is still starting up.

Two validators over real libp2p hosts (both are needed for a quorum). The non-proposer's start-up is held
between p2p coming up (it is subscribed: the proposer counts it and proposes) and its consensus starting,
until the proposer has sent its height-1 proposal. Without the defence that proposal was dropped, round 0
ran out its propose timeout and height 1 was decided in a later round.
"""

from __future__ import annotations

import pytest
import trio

from consensus.params import Step
from core.types import Height
from node.service import Node
from tests.node.helpers import genesis_doc, local_node, make_home, wait_until, with_bootstrap

pytestmark = pytest.mark.node


def proposer_index(nodes: list[Node]) -> int:
    """Which of `nodes` proposes round 0 of height 1."""
    from node.gossip_hooks import get_proposer_priorities

    priorities = get_proposer_priorities(nodes[0].chain, 1)
    assert priorities is not None
    address = priorities.proposer(0)
    return next(i for i, n in enumerate(nodes) if n.validator_address == address)


def has_proposed(node: Node) -> bool:
    driver = node.driver
    return driver is not None and int(driver.state.height) == 1 and driver.state.step > Step.PROPOSE


@pytest.mark.trio
async def test_a_proposal_sent_before_a_peer_runs_consensus_still_decides_height_one_in_round_zero(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    genesis = genesis_doc(2)
    homes = [make_home(tmp_path, f"v{i}", genesis, validator=i) for i in range(2)]
    nodes = [local_node(h) for h in homes]
    first = proposer_index(nodes)
    proposer, late = nodes[first], nodes[1 - first]
    repair = late._repair_blobs

    async def held_repair() -> None:
        # p2p is up (subscribed: the proposer counts this node); consensus is held back until the proposer has
        # proposed, and the proposal has had the time to arrive here.
        await wait_until(lambda: has_proposed(proposer), 60)
        await trio.sleep(0.5)
        await repair()

    late._repair_blobs = held_repair  # type: ignore[method-assign]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(late.run)  # no bootstrap peers: it waits for none
            await wait_until(lambda: late.block_sync is not None, 30)
            proposer.config = with_bootstrap(homes[first], (late.p2p_addr,))
            nursery.start_soon(proposer.run)
            await wait_until(lambda: min(proposer.height, late.height) >= 1, 60)
            for node in (proposer, late):
                commit = node.blockstore.commit(1)
                assert commit is not None and commit.height == Height(1)
                assert int(commit.round) == 0, f"height 1 decided in round {commit.round}, not 0"
            nursery.cancel_scope.cancel()
