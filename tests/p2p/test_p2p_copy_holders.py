"""A peer that sent us a copy of a transaction batch holds it: our relay of the batch leaves it out
(p2p/dontwant.py `note_holder`, docs/p2p.md "Copies of a batch"). Real hosts on 127.0.0.1; a node's validation is
held open by a state hook so that the other copies reach it first, as they do on a loaded node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from core.hashing import sha256
from p2p.dontwant import DontWantPolicy
from p2p.service import P2PService
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, GossipVerdict
from tests.p2p.helpers import Inbox, running_nodes, wait_for_mesh, wait_until
from tests.p2p.test_p2p_dontwant import batch

pytestmark = [pytest.mark.p2p]


def held_until(release: trio.Event) -> Callable[[GossipMessage], Awaitable[GossipVerdict]]:
    async def hook(message: GossipMessage) -> GossipVerdict:
        await release.wait()
        return GossipVerdict.ACCEPT

    return hook


def configure(inboxes: list[Inbox], slow: int, release: trio.Event) -> Callable[[int, P2PService], None]:
    def setup(i: int, service: P2PService) -> None:
        inboxes[i].attach(service)
        if i == slow:
            service.gossip.set_hook(TopicKind.TXS, held_until(release))

    return setup


@pytest.mark.trio
async def test_a_relayer_skips_the_peers_that_sent_it_the_batch_first() -> None:
    """Full mesh of four; node 1 validates slowly. Nodes 2 and 3 relay node 0's batch to node 1 before node 1 has
    validated it, so node 1 relays it to nobody: each of them already holds it. Every node still gets the batch.
    The batch is far below the announcement threshold (64 KiB): no IDONTWANT frame is involved."""
    inboxes = [Inbox() for _ in range(4)]
    release = trio.Event()
    with trio.fail_after(60):
        async with running_nodes(4, seed="holders", configure=configure(inboxes, 1, release),
                                 dont_want=DontWantPolicy()) as nodes:
            await wait_for_mesh(nodes, minimum=3)
            slow = nodes[1]
            data = batch(3)
            assert len(data) < DontWantPolicy().min_bytes
            await nodes[0].publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: slow.counters.holders_noted >= 2, within=20)  # copies from 2 and 3
            release.set()
            await wait_until(lambda: all(sha256(data) in inboxes[i].ids(TopicKind.TXS) for i in (1, 2, 3)),
                             within=20)
            await trio.sleep(0.5)  # node 1's relay, had it sent one, would have been read by now
            assert slow.counters.relays_suppressed == 2
            assert slow.counters.idontwant_sent == 0
            # nodes 2 and 3 read node 0's copy and at most the other one's relay, none from node 1
            assert all(nodes[i].counters.messages_received <= 2 for i in (2, 3))


@pytest.mark.trio
async def test_a_peer_sending_a_copy_changes_only_what_we_send_to_that_peer() -> None:
    """Star (partial mesh): the centre relays between leaves 1, 2 and 3 and validates slowly. Leaf 3 publishes the
    same bytes as leaf 1 (its own signed message) while the centre validates leaf 1's: the centre leaves leaf 3
    out of its relay (leaf 3 holds the bytes), and honest leaf 2, which depends on the centre, still gets it."""
    inboxes = [Inbox() for _ in range(4)]
    release = trio.Event()
    with trio.fail_after(60):
        async with running_nodes(4, seed="holders-star", full_mesh=False, configure=configure(inboxes, 0, release),
                                 dont_want=DontWantPolicy()) as nodes:
            centre, origin, honest, copier = nodes
            await wait_for_mesh(nodes, minimum=1)
            await wait_until(lambda: len(centre.gossip.mesh_peers(TopicKind.TXS)) == 3)
            data = batch(4)
            await origin.publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: centre.counters.messages_received >= 1)
            await copier.publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: centre.counters.holders_noted >= 1, within=20)
            release.set()
            await wait_until(lambda: sha256(data) in inboxes[2].ids(TopicKind.TXS), within=20)
            assert sha256(data) in inboxes[0].ids(TopicKind.TXS)
            await trio.sleep(0.5)  # a relay to the copier, had the centre sent one, would have been read by now
            assert centre.counters.relays_suppressed == 1
            assert honest.counters.messages_received == 1  # one copy, the centre's relay
            assert copier.counters.messages_received == 0  # the centre sent it nothing: it holds the bytes
            assert honest.counters.rejected.total() == 0 and centre.counters.rejected.total() == 0
