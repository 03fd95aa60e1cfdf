"""Build a libp2p host that speaks Noise only (pitfall 1) and Yamux only, listening on TCP."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID

from core.errors import BindError, ConfigError

# Process-wide rebinds of upstream names, taking effect on import (see each module's docstring): Noise messages
# read out of large socket reads, our peer record looked up once a while rather than per RPC.
from p2p import noise as _noise  # noqa: F401
from p2p import own_record as _own_record  # noqa: F401
from p2p.yamux import QuietYamux

logger = logging.getLogger(__name__)

SECURITY_PROTOCOLS = (NOISE_PROTOCOL_ID,)
MUXER_PROTOCOLS = (YAMUX_PROTOCOL_ID,)
CLOSE_CONNECTIONS_S = 5.0  # at shutdown: the GoAway frames and socket closes of every connection, at once


def build_host(key: KeyPair, listen_addrs: Sequence[str], *, yamux_release_on_read: bool = False) -> IHost:
    """A host whose only security transport is Noise: `new_host()`'s default also accepts plaintext,
    over which a dialer can claim any peer id without proof."""
    # Read by Yamux at call time; process-wide. Batched window updates halve per-message CPU (docs/design.md §5.5).
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "1" if yamux_release_on_read else "0")
    noise = NoiseTransport(key, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=key,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): QuietYamux},  # frames that fit one Noise message (p2p/yamux.py)
        listen_addrs=[parse_multiaddr(a) for a in listen_addrs],
    )


async def close_connections(host: IHost) -> None:
    """Close every connection's socket before the host stops. Upstream's swarm closes its connections in
    the `finally` of its service, but that runs under the cancellation that stops the service: `SwarmConn.close`
    marks the connection closed, its first await is cancelled, and the socket is left open for the garbage
    collector (a ResourceWarning in each test that stops hosts; sockets held until collected in a node).
    Shielded, and bounded so a peer that stopped reading cannot hold the shutdown. Call it inside
    `host.run(...)`, in a `finally`, before the host stops."""
    with trio.move_on_after(CLOSE_CONNECTIONS_S, shield=True):
        async with trio.open_nursery() as nursery:
            for conn in list(host.get_network().get_connections()):
                nursery.start_soon(_close_connection, conn)


async def _close_connection(conn: INetConn) -> None:
    try:
        await conn.close()  # a no-op when upstream's cancelled clean-up already marked it closed: hence
        await conn.muxed_conn.close()  # the muxer's close, which closes the secured connection every call
    except Exception as exc:  # a connection the peer already tore down can fail in several library types
        logger.debug("closing a connection at shutdown: %s: %s", type(exc).__name__, exc)


def ensure_listening(host: IHost, listen_addrs: Sequence[multiaddr.Multiaddr]) -> None:
    """Raise BindError naming the first address the running host is not listening on: libp2p logs a failed
    listen and goes on, which would leave a node that nobody can dial."""
    listening = set(host.get_network().listeners)
    for maddr in listen_addrs:
        if str(maddr) not in listening:
            raise BindError(f"cannot listen on {maddr} for p2p (p2p.listen_addrs): {_bind_failure(maddr)}")


def _bind_failure(maddr: multiaddr.Multiaddr) -> str:
    """Why a TCP address cannot be bound, asked of the OS again (libp2p keeps the reason to its log)."""
    try:
        ip, port = maddr.value_for_protocol("ip4"), int(maddr.value_for_protocol("tcp"))
    except Exception:  # the multiaddr package raises several types for a missing protocol
        return "no TCP transport listens there"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((ip, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return "the listener failed to start"


def parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:  # the multiaddr package raises several unrelated types for bad text
        raise ConfigError(f"not a multiaddr: {text!r}: {exc}") from exc


def parse_peer_addr(text: str) -> PeerInfo:
    """A bootstrap address must name its peer (`.../p2p/<peer id>`): we only dial peers we can authenticate."""
    maddr = parse_multiaddr(text)
    try:
        return info_from_p2p_addr(maddr)
    except Exception as exc:  # libp2p raises several unrelated types for a bad /p2p part (config input)
        raise ConfigError(f"peer address lacks a valid /p2p/<peer id>: {text!r}: {exc}") from exc


def peer_addr(host: IHost) -> str:
    """This host's first listen address with its peer id, as a bootstrap entry for others."""
    addrs = host.get_addrs()
    if not addrs:
        raise RuntimeError("host is not listening")
    return str(addrs[0])
