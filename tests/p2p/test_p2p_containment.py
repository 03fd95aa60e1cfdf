"""No bytes a peer sends and no disconnect may end the process: library errors stay inside the peer's stream."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

from p2p.testing.chain import make_vote, validator_keys
from p2p.topics import TopicKind
from tests.p2p.attacker import Attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEY = validator_keys(1)[0]


@pytest.mark.trio
async def test_a_garbage_frame_from_a_registered_peer_tears_it_down_without_killing_pubsub() -> None:
    """The teardown race of the validator that died: the peer that sent the bad frame is a full pubsub peer
    (in upstream's `peers`), so its blacklist teardown and the stream handler's dead-peer cleanup both
    remove it; upstream's `del self.peers[peer]` raised KeyError and took the pubsub service down."""
    inbox = Inbox()
    with trio.fail_after(90):
        async with running_nodes(3, configure=lambda i, s: inbox.attach(s) if i == 1 else None) as nodes:
            await wait_for_mesh(nodes, minimum=2)
            victim, honest, sender = nodes
            pubsub = victim.gossip.pubsub
            assert pubsub is not None and sender.peer_id in pubsub.peers
            stream = await sender.host.new_stream(victim.peer_id, [PROTOCOL_ID_V11])
            await Attacker.send_raw(stream, os.urandom(64))
            await wait_until(lambda: victim.counters.malformed_frames == 1)
            await wait_until(lambda: not victim.host.get_network().get_connections(sender.peer_id))
            await wait_until(lambda: sender.peer_id not in pubsub.peers)
            await trio.sleep(0.5)  # the teardown task runs after the handler: give it every chance to fail
            assert pubsub.manager.is_running
            assert victim.gossip.router is not None and victim.gossip.router.manager.is_running
            # gossip through the victim still works
            msg_id = await victim.publish(TopicKind.VOTES, make_vote(CHAIN, KEY, 1).encode())
            await wait_until(lambda: bytes(msg_id) in inbox.ids(TopicKind.VOTES))
            assert honest.peer_id in pubsub.peers
            assert victim.counters.contained_errors == 0  # the teardown itself no longer fails


@pytest.mark.trio
async def test_a_failing_per_peer_library_task_is_contained_and_counted() -> None:
    """Upstream's service manager cancels the whole Pubsub (or GossipSub) when any task it started raises;
    every per-peer task is now contained, so one failure costs that task only."""
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inbox.attach(s) if i == 1 else None) as nodes:
            await wait_for_mesh(nodes)
            pubsub, router = nodes[0].gossip.pubsub, nodes[0].gossip.router
            assert pubsub is not None and router is not None

            async def fails(peer: object) -> None:
                await trio.lowlevel.checkpoint()
                raise KeyError(peer)

            pubsub.manager.run_task(fails, nodes[1].peer_id)
            router.manager.run_task(fails, nodes[1].peer_id)
            await wait_until(lambda: nodes[0].counters.contained_errors == 2)
            assert pubsub.manager.is_running and router.manager.is_running
            msg_id = await nodes[0].publish(TopicKind.VOTES, make_vote(CHAIN, KEY, 1).encode())
            await wait_until(lambda: bytes(msg_id) in inbox.ids(TopicKind.VOTES))
