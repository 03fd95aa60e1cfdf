"""The p2p service the node runs: one host, gossip, request/response and peer policy, started in a nursery.

    service = P2PService(config, node_key)
    service.gossip.set_hook(TopicKind.VOTES, my_vote_hook)
    service.gossip.set_handler(TopicKind.VOTES, my_vote_handler)
    service.reqresp.serve_blocks(my_block_provider)
    await nursery.start(service.run)        # listening, subscribed, dialing bootstrap peers
    await service.publish(TopicKind.VOTES, vote.encode())
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from core.types import Hash32
from p2p.config import P2PConfig
from p2p.counters import P2PCounters
from p2p.gossip import Gossip
from p2p.host import (
    build_host,
    close_connections,
    ensure_listening,
    parse_multiaddr,
    parse_peer_addr,
    peer_addr,
)
from p2p.identity import peer_id_of
from p2p.peers import PeerManager
from p2p.reqresp import ReqResp
from p2p.scoring import Offense
from p2p.topics import TopicKind

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (a libp2p dependency) export it only here

logger = logging.getLogger(__name__)


class P2PService:
    def __init__(self, config: P2PConfig, key: KeyPair) -> None:
        self.config = config
        self.peer_id: ID = peer_id_of(key)
        self.counters = P2PCounters()
        self.host = build_host(key, config.listen_addrs, yamux_release_on_read=config.yamux_release_on_read)
        self.peers = PeerManager(self.host, config, self.counters)
        self.gossip = Gossip(self.host, config, self.counters, self._offense,
                             lambda peer, _detail: self.peers.drop_stalled(peer))
        self.reqresp = ReqResp(self.host, config, self.counters, self._offense, self.peers.drop_stalled)
        self.gossip.on_origin = self.peers.sign_of_life  # a message relayed from a peer we lost: redial it
        self.peers.on_peer_gone(self.gossip.forget_peer)
        self.peers.on_peer_gone(self.reqresp.forget_peer)
        for addr in config.bootstrap:
            self.peers.add_persistent(parse_peer_addr(addr))
        self._started = trio.Event()

    async def run(self, *, task_status: TaskStatus[P2PService] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, start gossip, dial bootstrap peers; `task_status.started(self)` once all of that is up."""
        listen = [parse_multiaddr(a) for a in self.config.listen_addrs]
        async with self.host.run(listen_addrs=listen):
            try:
                async with trio.open_nursery() as nursery:
                    ensure_listening(self.host, listen)
                    await _stop_auto_connector(self.host)
                    await nursery.start(self.gossip.run)
                    self.peers.pubsub = self.gossip.pubsub
                    await nursery.start(self.peers.run)
                    await nursery.start(self.reqresp.run)
                    self._started.set()
                    logger.info("p2p listening on %s", ", ".join(str(a) for a in self.host.get_addrs()))
                    task_status.started(self)
            finally:
                await close_connections(self.host)

    async def wait_started(self) -> None:
        await self._started.wait()

    @property
    def addr(self) -> str:
        """`/ip4/…/tcp/…/p2p/<peer id>` of this node, for other nodes' bootstrap lists."""
        return peer_addr(self.host)

    async def publish(self, kind: TopicKind, data: bytes, *, check: bool = True) -> Hash32:
        """Publish on a topic; see `Gossip.publish` (check=False for batches of already-verified txs)."""
        return await self.gossip.publish(kind, data, check=check)

    def add_peer(self, addr: str) -> None:
        """Keep a connection to this peer (`.../p2p/<id>`) for as long as the service runs."""
        self.peers.add_persistent(parse_peer_addr(addr))

    def connected_peers(self) -> list[ID]:
        return self.peers.connected_peers()

    def peers_serving(self, protocol: str) -> list[ID]:
        """Connected peers that may serve one of our request protocols ("status", "blocks", "votes", "model"):
        those that announced it, or have not announced anything yet. Ask only these (a foreign libp2p peer
        speaks none of ours); requests to others fail at once with `NotServed`, without a stream."""
        return [p for p in self.peers.connected_peers() if self.reqresp.serves(p, protocol)]

    def penalize(self, peer: ID, offense: Offense, detail: str = "") -> None:
        """For the node: a peer whose message failed a later check (e.g. a block that does not verify)."""
        self._offense(peer, offense, detail)

    def _offense(self, peer: ID, offense: Offense, detail: str) -> None:
        self.peers.penalize(peer, offense, detail)


async def _stop_auto_connector(host: IHost) -> None:
    """Upstream's auto-connector dials every peer in the peerstore while we hold fewer than 100 connections,
    which would redial banned peers and ignore max_peers: our PeerManager alone decides whom to dial."""
    auto_connector = getattr(host.get_network(), "auto_connector", None)
    if auto_connector is not None:
        await auto_connector.stop()
