"""Shared helpers of the p2p tests: real services on 127.0.0.1 with ephemeral ports, stopped by the test."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio
from libp2p.pubsub.pb import rpc_pb2

from p2p.config import P2PConfig
from p2p.identity import node_key_from_seed
from p2p.service import P2PService
from p2p.topics import TopicKind
from p2p.validation import GossipMessage

if TYPE_CHECKING:
    from libp2p.abc import INetStream
    from libp2p.custom_types import TProtocol

    from tests.adversary.frames import Attacker

CHAIN = "p2ptest"


def config(**changes: Any) -> P2PConfig:
    return P2PConfig(chain_id=CHAIN, **changes)


class Inbox:
    """Records every message the node's handlers receive, per topic."""

    def __init__(self) -> None:
        self.messages: dict[TopicKind, list[GossipMessage]] = defaultdict(list)

    def attach(self, service: P2PService) -> None:
        for kind in TopicKind:
            service.gossip.set_handler(kind, self._handler(kind))

    def _handler(self, kind: TopicKind) -> Callable[[GossipMessage], Any]:
        async def handle(message: GossipMessage) -> None:
            self.messages[kind].append(message)
            await trio.lowlevel.checkpoint()

        return handle

    def ids(self, kind: TopicKind) -> set[bytes]:
        return {bytes(m.msg_id) for m in self.messages[kind]}


@asynccontextmanager
async def running_nodes(n: int, *, seed: str = "node", full_mesh: bool = True,
                        configure: Callable[[int, P2PService], None] | None = None,
                        dial: tuple[str, ...] = (),
                        **config_changes: Any) -> AsyncIterator[list[P2PService]]:
    """n services, each dialing all earlier ones (full mesh) or only the first (star), and `dial`."""
    async with trio.open_nursery() as nursery:
        services: list[P2PService] = []
        for i in range(n):
            peers = [*dial, *([s.addr for s in services] if full_mesh else [s.addr for s in services[:1]])]
            service = P2PService(config(bootstrap=tuple(peers), **config_changes),
                                 node_key_from_seed(f"{seed}-{i}".encode()))
            if configure is not None:
                configure(i, service)
            await nursery.start(service.run)
            services.append(service)
        yield services
        nursery.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], within: float = 10.0, poll: float = 0.02) -> None:
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the conditions are library state with no event to wait on
            await trio.sleep(poll)


async def wait_for_mesh(services: list[P2PService], minimum: int = 1, within: float = 10.0) -> None:
    await wait_until(
        lambda: all(len(s.gossip.mesh_peers(k)) >= minimum for s in services for k in TopicKind), within
    )


async def join_tx_and_vote_meshes(peer: Attacker, node: P2PService) -> INetStream:
    """A raw peer opens its pubsub stream to `node`, subscribes to and grafts the transaction and vote topics,
    and waits (bounded) until the node has it in both meshes; the stream."""
    from tests.adversary.frames import Attacker

    kinds = (TopicKind.TXS, TopicKind.VOTES)
    stream = await peer.open_meshsub(node.addr)
    topics = [node.gossip.topic(k) for k in kinds]
    await Attacker.send_rpc(stream, rpc_pb2.RPC(
        subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics],
        control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=t) for t in topics])))
    pubsub = node.gossip.pubsub
    assert pubsub is not None
    await wait_until(lambda: peer.peer_id in pubsub.peers and all(
        peer.peer_id in node.gossip.mesh_peers(k) for k in kinds))
    return stream


class Sink:
    """A stream handler that reads until `expected` bytes have arrived (or the stream ends); `streams` are the
    streams it was handed, `done` is set when it stops."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.streams: list[INetStream] = []
        self.done = trio.Event()

    async def __call__(self, stream: INetStream) -> None:
        self.streams.append(stream)
        while len(self.received) < self.expected:
            chunk = await stream.read(1 << 16)
            if not chunk:
                break
            self.received.extend(chunk)
        self.done.set()


@asynccontextmanager
async def stream_to(sink: Sink, protocol: TProtocol, seed: str) -> AsyncIterator[INetStream]:
    """Two hosts from `p2p.host.build_host` on 127.0.0.1 (ephemeral ports), the second serving `protocol` with
    `sink`: the first's stream to it; both hosts' connections are closed on the way out."""
    from libp2p.peer.peerinfo import PeerInfo

    from p2p.host import build_host, close_connections, parse_multiaddr

    sender = build_host(node_key_from_seed(f"{seed}-a".encode()), ["/ip4/127.0.0.1/tcp/0"])
    receiver = build_host(node_key_from_seed(f"{seed}-b".encode()), ["/ip4/127.0.0.1/tcp/0"])
    receiver.set_stream_handler(protocol, sink)
    listen = [parse_multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with sender.run(listen_addrs=listen), receiver.run(listen_addrs=listen):
        try:
            await sender.connect(PeerInfo(receiver.get_id(), receiver.get_addrs()))
            yield await sender.new_stream(receiver.get_id(), [protocol])
        finally:
            await close_connections(sender)
            await close_connections(receiver)
