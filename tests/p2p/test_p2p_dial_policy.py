"""Only the peer manager dials, and only at configured addresses (docs/p2p.md, pitfall 18).

libp2p's identify replaces the peerstore's addresses of a peer with the listen addresses the peer announces,
and the swarm dials only the first TCP address it holds; opening a stream to a peer without a connection
dials it at those addresses. Without the two rules, a peer reached through a proxy, NAT or port forward was
redialed around it, and a request to a message's origin opened a link the configuration never made: the cut
links of the partition devnet test (tests/e2e/test_partition.py) came back around their proxies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from p2p.batcher import encode_tx_batch
from p2p.errors import RequestFailed
from p2p.service import P2PService
from p2p.testing.chain import make_tx
from p2p.testing.node import free_port
from p2p.topics import TopicKind
from tests.adversary.blackhole import BlackholeProxy
from tests.p2p.helpers import CHAIN, running_nodes, wait_until

pytestmark = [pytest.mark.p2p]


def _port(addr: str) -> int:
    return int(addr.split("/tcp/")[1].split("/")[0])


@asynccontextmanager
async def _apart(seed: str) -> AsyncIterator[tuple[P2PService, ID]]:
    """(second, first's id): two running hosts, neither configured to dial the other; `second` knows where
    `first` listens, as identify or a gossip origin's peer record leaves it in the peerstore."""
    async with running_nodes(1, seed=f"{seed}-a") as (first,), running_nodes(1, seed=f"{seed}-b") as (second,):
        peer = ID.from_base58(str(first.peer_id))
        second.host.get_peerstore().add_addrs(peer, [Multiaddr(first.addr.split("/p2p/")[0])], 120)
        yield second, peer


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
                assert proxy.connections >= 2  # (a redial may race the upgrade of another: both via the proxy)
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_request_to_a_peer_without_a_connection_fails_without_dialing_it() -> None:
    with trio.fail_after(60):
        async with _apart("apart") as (second, peer):
            with pytest.raises(RequestFailed, match="not connected"):
                await second.reqresp.status(peer)
            assert not second.host.get_network().get_connections(peer)


@pytest.mark.trio
async def test_the_swarm_dials_only_for_the_peer_manager() -> None:
    """What a stream open to a peer without a connection does (a request racing its link's drop): refused."""
    with trio.fail_after(60):
        async with _apart("gate") as (second, peer):
            with pytest.raises(SwarmException, match="only the peer manager dials"):
                await second.host.get_network().dial_peer(peer)
            assert not second.host.get_network().get_connections(peer)


@pytest.mark.trio
async def test_a_persistent_peer_is_redialed_at_its_first_sign_of_life() -> None:
    """`near` keeps `far` (reached only through a proxy) and `relay` connected. `far`'s link goes down and the
    proxy refuses (`far` unreachable): the redial fails and backs off 16-24 s (a reconnect_min_s of 20 s,
    so that only a wake can bring it back soon). `far` comes back and publishes a transaction batch, which
    reaches `near` through `relay`: a sign of life, and `near` redials `far` at once, well within the back-off
    (docs/p2p.md, "Redialing validators")."""
    up = True
    dead = free_port()
    with trio.fail_after(60):
        async with running_nodes(2, seed="life") as (far, relay), trio.open_nursery() as nursery:
            proxy = BlackholeProxy(lambda: _port(far.addr) if up else dead)
            await nursery.start(proxy.serve)
            via_proxy = f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{far.peer_id}"
            async with running_nodes(1, seed="life-near", dial=(via_proxy, relay.addr), reconnect_min_s=20.0,
                                     reconnect_max_s=60.0) as (near,):
                peer = ID.from_base58(str(far.peer_id))
                network = near.host.get_network()
                await wait_until(lambda: bool(network.get_connections(peer)), within=20)
                await wait_until(lambda: far.peer_id in set(relay.gossip.topic_peers(TopicKind.TXS))
                                 and relay.peer_id in set(near.gossip.topic_peers(TopicKind.TXS)), within=20)
                up = False
                await near.host.disconnect(peer)
                await wait_until(lambda: near.counters.dial_failures >= 1, within=20)  # backing off now
                assert not network.get_connections(peer)
                up = True
                await far.publish(TopicKind.TXS, encode_tx_batch([make_tx(CHAIN, 0).encode()]))
                await wait_until(lambda: bool(network.get_connections(peer)), within=10)
                assert near.counters.redials_woken >= 1
            nursery.cancel_scope.cancel()
