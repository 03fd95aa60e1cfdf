"""A misbehaving peer: a real Noise host that writes whatever frames it likes on /meshsub/1.1.0.

It speaks no protocol of ours by itself (identify announces only libp2p's), so it also plays the foreign
libp2p peer that a node must not send requests to.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.utils import encode_varint_prefixed

from p2p.batcher import encode_tx_batch
from p2p.host import build_host, close_connections, parse_multiaddr, parse_peer_addr
from p2p.identity import node_key_from_seed
from p2p.testing.chain import make_tx


class Attacker:
    def __init__(self, host: IHost, key: KeyPair) -> None:
        self.host = host
        self.key = key
        self.peer_id: ID = host.get_id()
        self._seqno = 1

    async def open_meshsub(self, victim_addr: str) -> INetStream:
        info = parse_peer_addr(victim_addr)
        await self.host.connect(info)
        return await self.host.new_stream(info.peer_id, [PROTOCOL_ID_V11])

    def signed_message(self, topic: str, data: bytes) -> rpc_pb2.Message:
        """A pubsub message with a valid pubsub signature by this peer: only the payload is bad."""
        self._seqno += 1
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=self.peer_id.to_bytes(),
                              seqno=self._seqno.to_bytes(8, "big"))
        msg.signature = self.key.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = self.key.public_key.serialize()
        return msg

    @staticmethod
    async def send_rpc(stream: INetStream, rpc: rpc_pb2.RPC) -> None:
        await stream.write(encode_varint_prefixed(rpc.SerializeToString()))

    @staticmethod
    async def send_raw(stream: INetStream, frame: bytes) -> None:
        await stream.write(encode_varint_prefixed(frame))

    @staticmethod
    async def send_oversized(stream: INetStream, size: int, *, within: float = 10.0) -> None:
        """One frame of `size` bytes (over the limit for `size` > p2p.limits.LIBP2P_FRAME_MAX). The victim refuses it
        part-way by resetting the stream, which may fail this write: that is the expected outcome."""
        with trio.move_on_after(within), contextlib.suppress(Exception):
            await stream.write(encode_varint_prefixed(b"\x0a" * size))

    def wrong_chain_batch(self, topic: str, n: int) -> rpc_pb2.RPC:
        """A signed publish of a transaction batch for another chain: a small offense (wrong_chain, 50)."""
        data = encode_tx_batch([make_tx("other-chain", n).encode()])
        return rpc_pb2.RPC(publish=[self.signed_message(topic, data)])


@asynccontextmanager
async def attacker(seed: bytes = b"attacker") -> AsyncIterator[Attacker]:
    key = node_key_from_seed(seed)
    host = build_host(key, ["/ip4/127.0.0.1/tcp/0"])
    async with host.run(listen_addrs=[parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            yield Attacker(host, key)
            await trio.lowlevel.checkpoint()
        finally:
            await close_connections(host)
