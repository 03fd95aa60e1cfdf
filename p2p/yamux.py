"""py-libp2p's Yamux with two per-frame costs removed (docs/p2p.md, "Fewer frames per message").

- **A Yamux frame that fits one Noise message.** Upstream cuts a stream's writes into Yamux frames of up to
  64 KiB with their 12-byte header (`MAX_MESSAGE_SIZE`, go-yamux's figure), but a Noise transport message
  carries at most 65,519 bytes of plaintext (65,535 less the 16-byte tag), so every full Yamux frame left as
  two Noise messages: a 65,519-byte one and a 17-byte one, each an encryption, a length prefix, a socket write,
  and on the other side a read and a decryption. `NOISE_FRAME_BYTES` makes each Yamux frame, header included,
  one Noise message. Upstream reads the constant at each write, from its module, so it is set there when this
  module is imported (the process's hosts all come from `p2p.host.build_host`, which imports it). A receiver
  takes Yamux frames of any length its window allows, so peers with upstream's size interoperate both ways.
- **No debug line built per frame.** Upstream's `Yamux._write_frame` unpacks each frame's header and formats
  an f-string debug line (type, flags, stream, lengths) before asking the logger whether debug is on, on every
  frame written; `QuietYamux._write_frame` is the same write without it. Upstream's muxer negotiation
  (`MuxerMultistream.new_conn`) builds `Yamux` by name whatever class `muxer_opt` names, so the name is
  rebound in that module too, on import, like the frame size.

- **Tuning read once.** Upstream reads its `PY_YAMUX_*` environment variables at every call: the window
  hysteresis switch and batch divisor on each window check, the data-frame read timeout on each frame read
  (~2 % of a loaded validator's event-loop samples, docs/performance-cpu.md, "Batches merged, copies dropped on
  read"). Those we never set are read once,
  here, and frozen; `RELEASE_ON_READ`, which `p2p.host.build_host` sets from the config after this import, is
  left to upstream's per-call read.

All are process-wide rebinds of upstream module names, the narrowest hook py-libp2p 0.8.1 offers; a library
upgrade must re-check them (tests/p2p/test_yamux_frames.py fails if either stops taking effect).
"""

from __future__ import annotations

import trio
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.stream_muxer import muxer_multistream
from libp2p.stream_muxer.yamux import yamux as upstream
from libp2p.stream_muxer.yamux.yamux import Yamux

# A Yamux frame, its 12-byte header included, that fills one Noise message exactly.
NOISE_FRAME_BYTES = MAX_PLAINTEXT_LENGTH
upstream.MAX_MESSAGE_SIZE = NOISE_FRAME_BYTES

# Upstream's tuning, as the environment has it now, read once (see the module docstring).
_DISABLE_HYSTERESIS = upstream._yamux_disable_hysteresis()
_BATCH_THRESHOLD_DIVISOR = upstream._yamux_batch_threshold_divisor()
_DATA_READ_TIMEOUT_S = upstream._yamux_data_read_timeout()
_PERF_DEBUG = upstream._perf_yamux_debug_enabled()
upstream._yamux_disable_hysteresis = lambda: _DISABLE_HYSTERESIS
upstream._yamux_batch_threshold_divisor = lambda: _BATCH_THRESHOLD_DIVISOR
upstream._yamux_data_read_timeout = lambda: _DATA_READ_TIMEOUT_S
upstream._perf_yamux_debug_enabled = lambda: _PERF_DEBUG


class QuietYamux(Yamux):
    """Upstream's Yamux connection, writing each frame without formatting a debug line for it."""

    async def _write_frame(self, data: bytes) -> None:
        async with self._write_lock:
            await self.secured_conn.write(data)
        await trio.lowlevel.checkpoint()


muxer_multistream.Yamux = QuietYamux  # type: ignore[attr-defined]  # see the module docstring
