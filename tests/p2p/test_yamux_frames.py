"""Yamux frames that fit one Noise message (p2p/yamux.py), on two real hosts over TCP on 127.0.0.1.

The sender's Noise layer is observed, not replaced: each Yamux frame it is handed is recorded with the number of
Noise messages it went out as, then passed on unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH

from p2p.yamux import NOISE_FRAME_BYTES, QuietYamux
from tests.p2p.helpers import Sink, stream_to

pytestmark = [pytest.mark.p2p]

PROTOCOL = TProtocol("/inferchain-test/sink/1")
HEADER = struct.Struct("!BBHII")  # Yamux: version, type, flags, stream id, length
TYPE_DATA = 0


@pytest.mark.trio
async def test_a_large_write_leaves_as_yamux_frames_of_one_noise_message_each_and_arrives_whole() -> None:
    data = bytes(range(256)) * 800  # 200 KiB: under the initial 256 KiB stream window, so no window split
    sink = Sink(len(data))
    with trio.fail_after(30):
        async with stream_to(sink, PROTOCOL, "yamux") as stream:
            muxer = stream.muxed_conn
            assert isinstance(muxer, QuietYamux)
            frames = record_frames(muxer.secured_conn.conn)  # type: ignore[attr-defined]
            stream_id = stream.muxed_stream.stream_id  # type: ignore[attr-defined]
            await stream.write(data)
            await sink.done.wait()
            await stream.close()
    assert bytes(sink.received) == data
    ours = [(length, noise) for type_, sid, length, noise in frames if type_ == TYPE_DATA and sid == stream_id]
    assert sum(length for length, _ in ours) == len(data)
    assert all(noise == 1 for _, noise in ours)  # upstream: each full 64 KiB frame went as two Noise messages
    assert max(length for length, _ in ours) == NOISE_FRAME_BYTES - HEADER.size  # full frames fill a message
    assert NOISE_FRAME_BYTES == MAX_PLAINTEXT_LENGTH


def record_frames(noise: Any) -> list[tuple[int, int, int, int]]:
    """(type, stream id, payload length, Noise messages) of each Yamux frame written on `noise` from now on."""
    frames: list[tuple[int, int, int, int]] = []
    messages = 0
    write_msg: Callable[..., Awaitable[None]] = noise.write_msg
    packet_write: Callable[[bytes], Awaitable[None]] = noise.read_writer.write_msg

    async def counted_packet(data: bytes) -> None:
        nonlocal messages
        messages += 1
        await packet_write(data)

    async def recorded(msg: bytes, prefix_encoded: bool = False) -> None:
        before = messages
        await write_msg(msg, prefix_encoded)
        _, type_, _, sid, length = HEADER.unpack(msg[:HEADER.size])
        frames.append((type_, sid, length, messages - before))

    noise.read_writer.write_msg = counted_packet
    noise.write_msg = recorded
    return frames


def test_upstream_tuning_is_read_once_except_what_build_host_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream read `PY_YAMUX_*` on every window check and frame read; the values p2p never sets are frozen at
    import (p2p/yamux.py), while RELEASE_ON_READ, set by `build_host` from the config, is still read per call."""
    from libp2p.stream_muxer.yamux import yamux as upstream

    divisor, timeout = upstream._yamux_batch_threshold_divisor(), upstream._yamux_data_read_timeout()
    monkeypatch.setenv("PY_YAMUX_BATCH_THRESHOLD_DIV", str(divisor + 5))
    monkeypatch.setenv("PY_YAMUX_DATA_READ_TIMEOUT", str(timeout + 5))
    assert upstream._yamux_batch_threshold_divisor() == divisor
    assert upstream._yamux_data_read_timeout() == timeout
    for value, expected in (("0", False), ("1", True)):
        monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", value)
        assert upstream._yamux_release_on_read() is expected
