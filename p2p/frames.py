"""Varint-length-prefixed frames cut out of bytes read in large chunks (the pubsub read loop's framing).

Upstream reads a pubsub frame with one stream read per prefix byte and more for the body, and each read of a
py-libp2p stream takes three locks (the stream's state, Yamux's streams and window locks), each a trip through
the scheduler. On a loaded node a trip takes tens of milliseconds, so a peer's stream was read at a few frames
a second while the peer wrote tens: the rest waited in Yamux's buffer (the window grows to 16 MiB), and a
proposal or vote written behind them was read seconds later (docs/performance-latency.md, "Consensus messages ahead of
transaction gossip"). Reading whatever is buffered, up to `READ_CHUNK_BYTES`, and cutting every whole frame
out of it without awaiting makes the cost per read, not per frame.

Limits are those of the frame-by-frame read: a declared length over the limit raises `MessageTooLarge` as
soon as its prefix is complete (before the body is buffered), a prefix longer than ten bytes `ParseError`;
the buffer never holds more than one partial frame and one chunk.
"""

from __future__ import annotations

from libp2p.exceptions import ParseError
from libp2p.io.exceptions import MessageTooLarge

# What one read of a pubsub stream may return: whatever Yamux holds for it, up to this.
READ_CHUNK_BYTES = 1024 * 1024
_MAX_PREFIX = 10  # bytes of a 64-bit unsigned varint


class FrameBuffer:
    """Bytes of one stream, fed as read, taken out as whole frames (payloads without their prefix)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take(self) -> list[bytes]:
        """Every whole frame now buffered, in order; a partial one stays for the next feed."""
        buf, pos, end = self._buf, 0, len(self._buf)
        out: list[bytes] = []
        while pos < end:
            length, shift, i = 0, 0, pos
            while True:
                if i >= end:
                    del buf[:pos]
                    return out  # the prefix is not complete yet
                if i - pos >= _MAX_PREFIX:
                    raise ParseError("frame length prefix longer than a 64-bit varint")
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if length > self.limit:
                raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {self.limit}")
            if i + length > end:
                break  # the body is not complete yet
            out.append(bytes(buf[i:i + length]))
            pos = i + length
        del buf[:pos]
        return out
