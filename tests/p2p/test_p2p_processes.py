"""p2p nodes as separate OS processes: kill -9 and restart with the same key, and sync of 500 blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from p2p.testing.node import NodeProcess, free_port, peer_addr_for

pytestmark = [pytest.mark.p2p]


@asynccontextmanager
async def processes(*nodes: NodeProcess) -> AsyncIterator[None]:
    """Start the processes; whatever happens, stop (or kill) every one of them before leaving."""
    async with trio.open_nursery() as nursery:
        try:
            for node in nodes:
                await node.start(nursery)
            yield
        finally:
            with trio.CancelScope(shield=True):
                for node in nodes:
                    await node.stop(grace=5)
            nursery.cancel_scope.cancel()


async def wait_for_mesh(node: NodeProcess, peers: set[str]) -> None:
    while True:
        reply = await node.request("peers", "peers")
        if peers <= set(reply["mesh"]):
            return
        await trio.sleep(0.1)


def received(node: NodeProcess) -> set[str]:
    return {e["id"] for e in node.events("recv")}


async def wait_received(node: NodeProcess, ids: set[str]) -> None:
    while not ids <= received(node):
        await node.changed()


@pytest.mark.trio
async def test_a_peer_killed_with_sigkill_rejoins_with_its_key_and_its_new_messages_arrive() -> None:
    ports = [free_port() for _ in range(3)]
    seeds = [f"proc-{i}" for i in range(3)]
    addrs = [peer_addr_for(s, p) for s, p in zip(seeds, ports, strict=True)]
    nodes = [NodeProcess(seeds[i], ports[i], [a for j, a in enumerate(addrs) if j != i], "--echo")
             for i in range(3)]
    ids = [str(_peer_id(a)) for a in addrs]
    with trio.fail_after(120):
        async with processes(*nodes):
            for node in nodes:
                await node.expect("ready")
            for i, node in enumerate(nodes):
                await wait_for_mesh(node, {ids[j] for j in range(3) if j != i})
            first = set((await nodes[2].request("publish_votes", "published", count=3, height=1))["ids"])
            await wait_received(nodes[0], first)
            await wait_received(nodes[1], first)

            nodes[2].kill()
            assert nodes[2].process is not None
            await nodes[2].process.wait()
            restarted = NodeProcess(seeds[2], ports[2], addrs[:2], "--echo")
            async with processes(restarted):
                await restarted.expect("ready")
                for node in nodes[:2]:
                    await wait_for_mesh(node, {ids[2]})
                await wait_for_mesh(restarted, set(ids[:2]))
                after = set((await restarted.request("publish_votes", "published", count=5, height=2))["ids"])
                await wait_received(nodes[0], after)
                await wait_received(nodes[1], after)
                back = set((await nodes[0].request("publish_votes", "published", count=2, height=3))["ids"])
                await wait_received(restarted, back)


@pytest.mark.trio
async def test_a_lagging_node_fetches_500_blocks_by_sync() -> None:
    server = NodeProcess("sync-server", free_port(), [], "--serve-chain", "500")
    lagging = NodeProcess("sync-client", free_port(), [])
    with trio.fail_after(120):
        async with processes(server, lagging):
            ready = await server.expect("ready")
            await lagging.expect("ready")
            synced = await lagging.request("sync", "synced", peer=server.addr, to=500)
            assert synced["count"] == 500
            assert synced["peer_height"] == 500
            assert synced["head"] == ready["head"]


def _peer_id(addr: str) -> str:
    return addr.rsplit("/p2p/", 1)[1]
