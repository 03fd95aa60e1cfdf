"""A request to a peer behind a link that went silent under load: bounded, and the link is dropped and redialed.

The liveness stall of the loaded devnet (docs/p2p.md, pitfall 17): upstream's request timeout did not bound
a request whose connection's writes were blocked; it waited until the gossip stall detector closed the link.
"""

from __future__ import annotations

import pytest
import trio

from p2p.batcher import encode_tx_batch
from p2p.errors import RequestFailed
from p2p.service import P2PService
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.p2p.helpers import CHAIN, wait_until
from tests.p2p.silent_link import far_peer_behind_proxy

pytestmark = [pytest.mark.p2p]


async def _publish_load(publisher: P2PService) -> None:
    """Transaction batches and votes, as a loaded validator publishes them: enough to fill a silent link."""
    key = validator_keys(1)[0]
    n = 0
    while True:
        batch = encode_tx_batch([make_tx(CHAIN, 1000 * n + i, payload_bytes=20_000).encode() for i in range(4)])
        await publisher.publish(TopicKind.TXS, batch)
        await publisher.publish(TopicKind.VOTES, make_vote(CHAIN, key, n).encode())
        n += 1
        await trio.sleep(0.05)


@pytest.mark.trio
async def test_a_request_over_a_silent_link_is_bounded_and_the_link_is_redialed() -> None:
    # The gossip stall detector waits far longer than the request timeout, so only the request's own bound
    # can end the wait (without it the request is held until the detector fires, after 60 s).
    with trio.fail_after(120):
        async with far_peer_behind_proxy("dead") as (client, _near, server, proxy), \
                trio.open_nursery() as nursery:
            await wait_until(lambda: server.peer_id in client.gossip.mesh_peers(TopicKind.VOTES), within=30)
            await client.reqresp.status(server.peer_id)  # the link works

            proxy.cut()
            # The request is in flight when the load fills the silent link: its timeout then has to write a
            # stream reset behind a write blocked in the kernel.
            load = trio.CancelScope()

            async def publish_load() -> None:
                with load:
                    await _publish_load(client)

            nursery.start_soon(publish_load)
            with trio.fail_after(30), pytest.raises(RequestFailed):  # request_timeout_s plus the release grace
                await client.reqresp.status(server.peer_id)
            assert client.counters.requests_abandoned >= 1
            assert client.counters.peers_stalled == 0  # the gossip detector did not end it: the bound did
            await wait_until(lambda: client.counters.disconnects_stalled >= 1, within=10)
            # The load has done its part. Kept on, its ~1.6 MB/s through the healed link, the proxy and the far
            # host, all in this one process, starve the far host on a loaded machine: the first request after the
            # heal then times out (2 s), or Yamux resets the new link for a receive window shut 5 s.
            load.cancel()

            proxy.heal()  # the redial goes through the healed link; the server answers and rejoins the mesh
            await wait_until(lambda: client.counters.reconnects >= 1, within=30)
            status = await client.reqresp.status(server.peer_id)
            assert status.chain_id == CHAIN
            await wait_until(lambda: server.peer_id in client.gossip.mesh_peers(TopicKind.VOTES), within=30)
            assert client.counters.contained_errors == 0
            nursery.cancel_scope.cancel()
