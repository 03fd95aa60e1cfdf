"""A slow or dead peer costs only itself (issue 9.1): one paused process must not hold anyone's publishes."""

from __future__ import annotations

import signal

import pytest
import trio

from p2p.batcher import encode_tx_batch
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.testing.node import NodeProcess, free_port, peer_addr_for
from p2p.topics import TopicKind
from tests.adversary.blackhole import BlackholeProxy
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until
from tests.p2p.test_p2p_processes import processes, received
from tests.p2p.test_p2p_processes import wait_for_mesh as wait_for_process_mesh

pytestmark = [pytest.mark.p2p]

VOTES = 60


@pytest.mark.trio
async def test_a_paused_peer_does_not_hold_the_others_messages_and_is_dropped() -> None:
    """SIGSTOP keeps a peer's connections open while it reads nothing: its outbound queue never drains. The
    others' votes must still reach each other while it is stopped, and it is dropped, not waited for."""
    ports = [free_port() for _ in range(4)]
    seeds = [f"pause-{i}" for i in range(4)]
    addrs = [peer_addr_for(s, p) for s, p in zip(seeds, ports, strict=True)]
    nodes = [NodeProcess(seeds[i], ports[i], [a for j, a in enumerate(addrs) if j != i], "--echo")
             for i in range(4)]
    ids = [a.rsplit("/p2p/", 1)[1] for a in addrs]
    publisher, healthy, paused = nodes[0], nodes[1:3], nodes[3]
    with trio.fail_after(240):
        async with processes(*nodes):
            for node in nodes:
                await node.expect("ready")
            for i, node in enumerate(nodes):
                await wait_for_process_mesh(node, {ids[j] for j in range(4) if j != i})
            await publisher.request("prepare_txs", "prepared", count=6000, payload=400)
            assert paused.process is not None
            paused.process.send_signal(signal.SIGSTOP)
            try:
                mark = publisher.mark()
                # bulk transactions fill the paused peer's queue; votes are published while it stays full
                await publisher.send("offer_txs", rate=1000)
                await trio.sleep(2)
                with trio.fail_after(60):  # today each vote waited up to 5 s for the paused peer's queue
                    published = await publisher.request("publish_votes", "published", count=VOTES, height=7)
                    votes = set(published["ids"])
                    assert len(votes) == VOTES
                    for node in healthy:
                        while not votes <= received(node):
                            await node.changed()
                await publisher.expect("offered", since=mark)
                with trio.fail_after(60):  # the paused peer is dropped, its queue with it
                    while True:
                        stats = await publisher.request("stats", "stats")
                        if stats["counters"].get("peers_stalled", 0) >= 1:
                            break
                        await trio.sleep(1)
                # out of the mesh (its connection was closed; redials of a stopped process cannot complete a
                # handshake, but may show a connection for a moment, so the mesh is what is asserted)
                peers = await publisher.request("peers", "peers")
                assert ids[3] not in peers["mesh"]
            finally:
                paused.process.send_signal(signal.SIGCONT)
            # once it runs again it reconnects and gets new messages
            with trio.fail_after(60):
                await wait_for_process_mesh(paused, {ids[0]})
                after = set((await publisher.request("publish_votes", "published", count=3, height=8))["ids"])
                while not after <= received(paused):
                    await paused.changed()


@pytest.mark.trio
async def test_a_peer_behind_a_blackholed_link_is_dropped_and_costs_the_others_nothing() -> None:
    """The network-cut variant: the only link between the publisher and one peer goes through a proxy that
    stops moving bytes but closes nothing. The publisher's other peers get every vote; the cut peer is
    dropped as stalled (and its connection closed), not waited for."""
    inbox = [Inbox(), Inbox()]
    key = validator_keys(1)[0]
    batches = [encode_tx_batch([make_tx(CHAIN, 100 * b + i, payload_bytes=60_000).encode() for i in range(4)])
               for b in range(40)]
    with trio.fail_after(180):
        mesh = running_nodes(3, seed="cut", configure=lambda i, s: inbox[i - 1].attach(s) if i else None)
        async with mesh as (publisher, *healthy):  # noqa: SIM117 - the inner one dials these
            async with running_nodes(1, seed="cut-off", dial=tuple(s.addr for s in healthy)) as (hidden,), \
                    trio.open_nursery() as nursery:
                proxy = BlackholeProxy(int(hidden.addr.split("/tcp/")[1].split("/")[0]))
                await nursery.start(proxy.serve)
                publisher.add_peer(f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{hidden.peer_id}")
                await wait_until(lambda: hidden.peer_id in publisher.gossip.mesh_peers(TopicKind.TXS), within=30)
                await wait_for_mesh([publisher, *healthy], minimum=2)
                proxy.cut()
                votes = []
                for n, data in enumerate(batches):  # bulk fills the cut link's buffers and window
                    await publisher.publish(TopicKind.TXS, data)
                    votes.append(bytes(await publisher.publish(TopicKind.VOTES, make_vote(CHAIN, key, n).encode())))
                for box in inbox:
                    await wait_until(lambda b=box: set(votes) <= b.ids(TopicKind.VOTES), within=60)
                await wait_until(lambda: publisher.counters.peers_stalled >= 1, within=60)
                # its connection was closed (the publisher then redials it, through the cut link, in vain)
                await wait_until(lambda: publisher.counters.disconnects_stalled >= 1, within=30)
                pubsub = publisher.gossip.pubsub
                assert pubsub is not None and hidden.peer_id not in pubsub.peers
                assert publisher.counters.contained_errors == 0
                # once the link carries bytes again the peer is redialed and rejoins the mesh (it kept a dead
                # pubsub stream for the publisher before: upstream replaces a peer's stream only if it has none)
                proxy.heal()
                await wait_until(lambda: hidden.peer_id in publisher.gossip.mesh_peers(TopicKind.VOTES), within=60)
                await wait_until(lambda: publisher.peer_id in hidden.gossip.mesh_peers(TopicKind.VOTES), within=60)
                nursery.cancel_scope.cancel()
