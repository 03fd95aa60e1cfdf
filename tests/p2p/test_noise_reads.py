"""Noise messages cut out of large socket reads (p2p/noise.py), on two real hosts over TCP on 127.0.0.1."""

from __future__ import annotations

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo

from p2p.host import build_host, close_connections, parse_multiaddr
from p2p.identity import node_key_from_seed
from p2p.noise import BufferedNoiseTransport

pytestmark = [pytest.mark.p2p]

PROTOCOL = TProtocol("/inferchain-test/noise-sink/1")


@pytest.mark.trio
async def test_many_small_writes_and_a_large_one_arrive_whole_with_at_most_one_socket_read_per_message() -> None:
    """Upstream read each Noise message with two socket reads (its 2-byte length, then its body); here a read
    takes what the socket holds, so a burst of small frames costs at most one read each, and a write larger
    than a Noise message (several messages, one partial per read) still arrives whole, in order."""
    small = [bytes([i]) * 100 for i in range(200)]
    large = bytes(range(256)) * 800  # 200 KiB: four Noise messages
    expected = b"".join(small) + large
    received = bytearray()
    readers: list[BufferedNoiseTransport] = []
    done = trio.Event()

    async def sink(stream: INetStream) -> None:
        readers.append(stream.muxed_conn.secured_conn.conn)  # type: ignore[attr-defined]
        while len(received) < len(expected):
            chunk = await stream.read(1 << 16)
            if not chunk:
                break
            received.extend(chunk)
        done.set()

    sender = build_host(node_key_from_seed(b"noise-a"), ["/ip4/127.0.0.1/tcp/0"])
    receiver = build_host(node_key_from_seed(b"noise-b"), ["/ip4/127.0.0.1/tcp/0"])
    receiver.set_stream_handler(PROTOCOL, sink)
    listen = [parse_multiaddr("/ip4/127.0.0.1/tcp/0")]
    with trio.fail_after(30):
        async with sender.run(listen_addrs=listen), receiver.run(listen_addrs=listen):
            try:
                await sender.connect(PeerInfo(receiver.get_id(), receiver.get_addrs()))
                stream = await sender.new_stream(receiver.get_id(), [PROTOCOL])
                writer = stream.muxed_conn.secured_conn.conn  # type: ignore[attr-defined]
                assert isinstance(writer, BufferedNoiseTransport)
                for data in small:
                    await stream.write(data)
                await stream.write(large)
                await done.wait()
                await stream.close()
            finally:
                await close_connections(sender)
                await close_connections(receiver)
    assert bytes(received) == expected
    reader = readers[0]
    assert isinstance(reader, BufferedNoiseTransport)
    assert reader.messages_read >= len(small) + 4
    assert reader.socket_reads <= reader.messages_read
