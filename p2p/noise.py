"""Noise transport messages read from a buffer filled by large socket reads (docs/p2p.md, "Work done once per message").

Upstream's transport reader (`NoiseTransportReadWriter`, through `FixedSizeLenMsgReadWriter`) reads each Noise
message with two `read_exactly` calls on the TCP connection: two bytes of length, then the body. Each is a
socket `recv` behind a lock and two trips through trio's scheduler (the cancellation checkpoint before the call
and the shielded one after it), and every Yamux frame is one Noise message (p2p/yamux.py): a loaded validator
spent more of its p2p CPU in trio's socket helpers than in decryption. `BufferedNoiseTransport` reads whatever
the socket holds, up to `READ_BYTES`, and cuts whole messages out of it; a message is decrypted as upstream
does. One read usually returns one or several whole messages, so a message costs at most one `recv` and often
less.

Limits are those of the 2-byte length prefix: a message is at most 65,535 bytes, so the buffer never holds
more than one partial message and one read. Bytes are only ever taken from the socket by this reader once the
handshake is over (the handshake reader reads exact sizes and is done with the connection by then), so
nothing is read ahead of a reader that needs it. End of stream is reported as upstream's `read_exactly` does
(`IncompleteReadError`, clean when it falls between two messages), which Yamux's read loop treats the same.

A process-wide rebind of the name `libp2p.security.noise.patterns` builds the transport reader by (as
p2p/yamux.py does for Yamux); tests/p2p/test_noise_reads.py fails if it stops taking effect.
"""

from __future__ import annotations

from libp2p.abc import IRawConnection
from libp2p.io.exceptions import IncompleteReadError
from libp2p.security.noise import patterns
from libp2p.security.noise.io import SIZE_NOISE_MESSAGE_LEN, NoiseTransportReadWriter
from noise.connection import NoiseConnection

# One socket read takes up to this much: a full Noise message and its prefix fit, with room for more.
READ_BYTES = 256 * 1024


class BufferedNoiseTransport(NoiseTransportReadWriter):
    """Upstream's Noise transport reader/writer, reading messages out of large socket reads."""

    def __init__(self, conn: IRawConnection, noise_state: NoiseConnection) -> None:
        super().__init__(conn, noise_state)
        self._raw = conn
        self._buf = bytearray()
        self.socket_reads = 0  # reads of the connection that returned bytes (tests compare them with messages)
        self.messages_read = 0

    async def read_msg(self, prefix_encoded: bool = False) -> bytes:
        buf = self._buf
        while True:
            if len(buf) >= SIZE_NOISE_MESSAGE_LEN:
                end = SIZE_NOISE_MESSAGE_LEN + int.from_bytes(buf[:SIZE_NOISE_MESSAGE_LEN], "big")
                if len(buf) >= end:
                    encrypted = bytes(buf[SIZE_NOISE_MESSAGE_LEN:end])
                    del buf[:end]
                    self.messages_read += 1
                    if prefix_encoded:
                        encrypted = encrypted[len(self.prefix):]
                    return self.decrypt(encrypted)
            chunk = await self._raw.read(READ_BYTES)
            if not chunk:
                raise IncompleteReadError(
                    f"Connection closed during read operation: {len(buf)} bytes of a Noise message buffered",
                    expected_bytes=SIZE_NOISE_MESSAGE_LEN, received_bytes=len(buf))
            self.socket_reads += 1
            buf += chunk


patterns.NoiseTransportReadWriter = BufferedNoiseTransport  # type: ignore[attr-defined]  # see the module docstring
