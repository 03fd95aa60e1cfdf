"""Noise messages cut out of large socket reads (p2p/noise.py), on two real hosts over TCP on 127.0.0.1."""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol

from p2p.noise import BufferedNoiseTransport
from tests.p2p.helpers import Sink, stream_to

pytestmark = [pytest.mark.p2p]

PROTOCOL = TProtocol("/inferchain-test/noise-sink/1")


@pytest.mark.trio
async def test_many_small_writes_and_a_large_one_arrive_whole_with_fewer_socket_reads_than_upstream() -> None:
    """Upstream read each Noise message with two socket reads (its 2-byte length, then its body); here a read
    takes what the socket holds, so a burst of small frames costs at most one read each, and a write larger
    than a Noise message (four messages, which may arrive in pieces) still arrives whole, in order."""
    small = [bytes([i]) * 100 for i in range(200)]
    large = bytes(range(256)) * 800  # 200 KiB: four Noise messages
    expected = b"".join(small) + large
    sink = Sink(len(expected))
    with trio.fail_after(30):
        async with stream_to(sink, PROTOCOL, "noise") as stream:
            writer = stream.muxed_conn.secured_conn.conn  # type: ignore[attr-defined]
            assert isinstance(writer, BufferedNoiseTransport)
            for data in small:
                await stream.write(data)
            await stream.write(large)
            await sink.done.wait()
            await stream.close()
    assert bytes(sink.received) == expected
    reader = sink.streams[0].muxed_conn.secured_conn.conn  # type: ignore[attr-defined]
    assert isinstance(reader, BufferedNoiseTransport)
    assert reader.messages_read >= len(small) + 4
    # upstream: two reads per message at least (its length, then its body); here one per small message at most,
    # and a few for each 64 KiB one, which may arrive in pieces
    assert reader.socket_reads <= reader.messages_read + 3 * 4
    assert reader.socket_reads < 2 * reader.messages_read
