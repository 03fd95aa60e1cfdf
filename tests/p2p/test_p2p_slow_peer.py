"""A slow or dead peer costs only itself (issue 9.1): one paused process must not hold anyone's publishes."""

from __future__ import annotations

import signal

import pytest
import trio

from p2p.testing.node import NodeProcess, free_port, peer_addr_for
from tests.p2p.test_p2p_processes import processes, received, wait_for_mesh

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
                await wait_for_mesh(node, {ids[j] for j in range(4) if j != i})
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
                peers = await publisher.request("peers", "peers")
                assert ids[3] not in peers["peers"]
            finally:
                paused.process.send_signal(signal.SIGCONT)
            # once it runs again it reconnects and gets new messages
            with trio.fail_after(60):
                await wait_for_mesh(paused, {ids[0]})
                after = set((await publisher.request("publish_votes", "published", count=3, height=8))["ids"])
                while not after <= received(paused):
                    await paused.changed()
