"""A bootstrap peer is redialed at the address it was configured with, not at the one it announced.

libp2p's identify replaces the peerstore's addresses of a peer with the listen addresses the peer announces,
and the swarm dials only the first TCP address it holds: without `PeerManager` restoring the configured
address before each dial, a peer reached through a proxy, NAT or port forward was redialed around it (found
by the cut-link devnet test, tests/e2e/test_partition.py: a cut link came back around its proxy).
"""

from __future__ import annotations

import pytest
import trio
from libp2p.peer.id import ID

from tests.adversary.blackhole import BlackholeProxy
from tests.p2p.helpers import running_nodes, wait_until

pytestmark = [pytest.mark.p2p]


def _port(addr: str) -> int:
    return int(addr.split("/tcp/")[1].split("/")[0])


@pytest.mark.trio
async def test_a_dropped_bootstrap_peer_is_redialed_through_its_configured_address() -> None:
    with trio.fail_after(60):
        async with running_nodes(1, seed="far") as (far,), trio.open_nursery() as nursery:
            proxy = BlackholeProxy(_port(far.addr))
            await nursery.start(proxy.serve)
            via_proxy = f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{far.peer_id}"
            async with running_nodes(1, seed="near", dial=(via_proxy,)) as (near,):
                peer = ID.from_base58(str(far.peer_id))
                network, peerstore = near.host.get_network(), near.host.get_peerstore()
                # identify ran: the peerstore now holds the address `far` announced, its own listen port
                await wait_until(lambda: any(_port(str(a)) == _port(far.addr) for a in peerstore.addrs(peer)),
                                 within=20)
                assert proxy.connections == 1

                await near.host.disconnect(peer)
                await wait_until(lambda: bool(network.get_connections(peer)), within=20)
                addresses = {str(a) for c in network.get_connections(peer) for a in c.get_transport_addresses()}
                assert addresses == {f"/ip4/127.0.0.1/tcp/{proxy.port}"}, f"redialed around the proxy: {addresses}"
                assert proxy.connections == 2
            nursery.cancel_scope.cancel()
