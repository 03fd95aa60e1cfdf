"""Peer policy: keep bootstrap peers connected, cap the peer count, act on scores (disconnect, ban).

Nothing in py-libp2p 0.8.1 reconnects, and a failed dial blocks the peer for 60 s (pitfall 6): we redial
with backoff and lift that block first. The back-off is capped low (`reconnect_max_s`, 2 s): the peers
redialed are validators and bootstrap peers, a handful, and every second a healed link stays down is a
second consensus waits for it. A gossip message published by a persistent peer we have no link to, relayed
by another, is a sign that it is back: its redial starts at once (`sign_of_life`), at most once per
_WAKE_MIN_S. Only this class dials, and only at the configured addresses (pitfall
18): the swarm refuses any other dial, such as the one opening a stream to a peer without a connection would
make at the addresses the peer announced.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from p2p.config import P2PConfig
from p2p.counters import P2PCounters
from p2p.scoring import Action, Offense, ScoreBook

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (a libp2p dependency) export it only here

    from p2p.pubsub import GuardedPubsub

logger = logging.getLogger(__name__)

_DIAL_TIMEOUT_S = 5.0
_CONNECTED_POLL_S = 0.5
_SWEEP_S = 1.0
_GONE_SETTLE_S = 0.5
# A sign of life cuts a redial's back-off short, but never below this: a stream of relayed messages cannot
# make us dial a peer faster.
_WAKE_MIN_S = 0.5
_PEERSTORE_TTL_S = 120  # upstream default; we re-add bootstrap addresses before every dial (pitfall 7)
# Set in the peer manager's own dialing tasks: the swarm dials only for them.
_DIALING: ContextVar[bool] = ContextVar("p2p_peer_manager_dialing", default=False)


class PeerManager:
    def __init__(self, host: IHost, config: P2PConfig, counters: P2PCounters,
                 clock: Callable[[], float] = trio.current_time):
        self._host = host
        self._config = config
        self._counters = counters
        self._clock = clock
        self.scores = ScoreBook(config.penalties)
        self._persistent: dict[ID, PeerInfo] = {}
        self._wake: dict[ID, trio.Event] = {}  # per persistent peer: cut its redial back-off short
        self._events_send, self._events_receive = trio.open_memory_channel[tuple[str, ID]](1024)
        self._nursery: trio.Nursery | None = None
        self._blacklisted: set[ID] = set()
        self.pubsub: GuardedPubsub | None = None
        self._on_gone: list[Callable[[ID], None]] = []
        host.get_network().register_notifee(_Notifee(self))
        _dial_only_for_us(host.get_network())

    def on_peer_gone(self, callback: Callable[[ID], None]) -> None:
        """Call `callback(peer)` when a peer's last connection closes (to free per-peer state)."""
        self._on_gone.append(callback)

    def add_persistent(self, info: PeerInfo) -> None:
        """A peer we keep dialing for as long as we run (bootstrap peers, validators we know)."""
        if info.peer_id == self._host.get_id():
            return
        self._persistent[info.peer_id] = info
        if self._nursery is not None:
            self._nursery.start_soon(self._keep_connected, info.peer_id)

    def sign_of_life(self, peer: ID) -> None:
        """Something `peer` published reached us through another peer: if it is one we keep dialing and have
        no link to, redial it now rather than at the end of its back-off."""
        wake = self._wake.get(peer)
        if wake is not None and not wake.is_set() and not self._host.get_network().get_connections(peer):
            self._counters.redials_woken += 1
            wake.set()

    def connected_peers(self) -> list[ID]:
        return [p for p, conns in self._host.get_network().get_connections_map().items() if conns]

    def is_banned(self, peer: ID) -> bool:
        return self.scores.is_banned(str(peer), self._clock())

    def penalize(self, peer: ID, offense: Offense, detail: str = "") -> Action:
        """Lower the peer's score; past the thresholds, disconnect it (short ban) or ban it."""
        if peer == self._host.get_id():
            return Action.NONE
        self._counters.penalties += 1
        action = self.scores.penalize(str(peer), offense, self._clock())
        if action is not Action.NONE:
            logger.warning("peer %s: %s after %s (%s)", peer, action.value, offense.name, detail[:120])
            if action is Action.BAN:
                self._counters.bans += 1
            else:
                self._counters.disconnects += 1
            self._blacklist(peer)
            self._post("drop", peer)
        return action

    def drop_stalled(self, peer: ID) -> None:
        """A peer that stopped taking our messages: close its connections (no penalty: it may be overloaded,
        not hostile); it may dial back, or be redialed, like any peer."""
        self._counters.disconnects_stalled += 1
        self._post("stalled", peer)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for peer in list(self._persistent):
                nursery.start_soon(self._keep_connected, peer)
            nursery.start_soon(self._handle_events)
            nursery.start_soon(self._sweep)
            task_status.started()

    # ------------------------------------------------------------------ internals

    def _post(self, what: str, peer: ID) -> None:
        try:
            self._events_send.send_nowait((what, peer))
        except trio.WouldBlock:
            logger.warning("peer event queue full; dropping %s for %s", what, peer)

    def _blacklist(self, peer: ID) -> None:
        pubsub = self.pubsub
        if pubsub is not None and peer not in self._blacklisted and pubsub.manager.is_running:
            pubsub.add_to_blacklist(peer)
            self._blacklisted.add(peer)

    async def _handle_events(self) -> None:
        # Each event in its own task: closing one dead peer's connections may take seconds and must not hold
        # the admission or the drop of any other peer.
        async with trio.open_nursery() as nursery:
            async for what, peer in self._events_receive:
                if what == "drop":
                    nursery.start_soon(self._disconnect, peer)
                elif what == "stalled":
                    nursery.start_soon(self._close_transport, peer)
                elif what == "connected":
                    nursery.start_soon(self._admit, peer)
                elif what == "disconnected":
                    nursery.start_soon(self._gone, peer)

    async def _gone(self, peer: ID) -> None:
        # The swarm notifies while it is still taking the connection down: look once it is done.
        await trio.sleep(_GONE_SETTLE_S)
        pubsub = self.pubsub
        if pubsub is not None and pubsub.manager.is_running:
            pubsub.drop_stale_stream(peer)  # its pubsub stream may have lived on the connection that closed
        if self._host.get_network().get_connections(peer):
            return  # connected again, or another connection to the peer is still open
        for callback in self._on_gone:
            try:
                callback(peer)
            except Exception:
                logger.exception("BUG: freeing the state of %s failed", peer)

    async def _close_transport(self, peer: ID) -> None:
        """Close the peer's sockets first: a write blocked in the kernel on a peer that reads nothing holds
        Yamux's connection write lock, so a polite close (GO_AWAY) would wait behind it forever."""
        for conn in list(self._host.get_network().get_connections(peer)):
            secured = getattr(conn.muxed_conn, "secured_conn", None)
            if secured is None:
                continue
            with trio.move_on_after(_DIAL_TIMEOUT_S):
                try:
                    await secured.close()
                except Exception as exc:
                    logger.debug("closing the transport of %s failed: %s: %s", peer, type(exc).__name__, exc)
        await self._disconnect(peer)

    async def _admit(self, peer: ID) -> None:
        """Inbound connections beyond max_peers, and banned peers, are closed at once."""
        if self.is_banned(peer):
            self._counters.peers_refused += 1
            await self._disconnect(peer)
            return
        if peer in self._persistent:
            return
        if len(self.connected_peers()) > self._config.max_peers:
            self._counters.peers_refused += 1
            logger.info("peer limit %d reached; closing %s", self._config.max_peers, peer)
            await self._disconnect(peer)

    async def _disconnect(self, peer: ID) -> None:
        with trio.move_on_after(_DIAL_TIMEOUT_S):
            try:
                await self._host.disconnect(peer)
            except Exception as exc:  # whatever closing a peer's connections meets, it ends no task of ours
                logger.debug("closing %s failed: %s: %s", peer, type(exc).__name__, exc)

    async def _sweep(self) -> None:
        """Lift expired bans from pubsub's blacklist and forget faded scores."""
        while True:
            await trio.sleep(_SWEEP_S)
            now = self._clock()
            pubsub = self.pubsub
            for peer in [p for p in self._blacklisted if not self.scores.is_banned(str(p), now)]:
                self._blacklisted.discard(peer)
                if pubsub is not None:
                    pubsub.remove_from_blacklist(peer)
            self.scores.forget_idle(now)

    async def _keep_connected(self, peer: ID) -> None:
        _DIALING.set(True)  # this task's context only
        cfg = self._config
        network = self._host.get_network()
        delay = cfg.reconnect_min_s
        was_connected = False
        while True:
            if network.get_connections(peer):
                was_connected = True
                delay = cfg.reconnect_min_s
                await trio.sleep(_CONNECTED_POLL_S)
                continue
            if self.is_banned(peer):
                await trio.sleep(_CONNECTED_POLL_S)
                continue
            info = self._persistent[peer]
            # Dial the addresses we were given, only: identify replaced them with the listen addresses the peer
            # announced, which a proxy, NAT or port forward can make unreachable or a detour from here, and the
            # swarm dials only the first TCP address it holds (a cut link came back around its proxy).
            peerstore = self._host.get_peerstore()
            peerstore.clear_addrs(peer)
            peerstore.add_addrs(peer, info.addrs, _PEERSTORE_TTL_S)
            _unblock(network, peer)  # a failed dial blocks the peer for 60 s upstream (pitfall 6)
            try:
                with trio.fail_after(_DIAL_TIMEOUT_S):
                    await self._host.connect(info)
            except Exception as exc:  # a dial's failure, whatever the library raises, is that peer's problem
                self._counters.dial_failures += 1
                logger.debug("dial %s failed: %s: %s", peer, type(exc).__name__, exc)
                if await self._back_off(peer, delay * random.uniform(0.8, 1.2)):
                    delay = cfg.reconnect_min_s  # it showed life: the next failure waits the least again
                else:
                    delay = min(delay * 2, cfg.reconnect_max_s)
                continue
            if was_connected:
                self._counters.reconnects += 1
            was_connected = True


    async def _back_off(self, peer: ID, delay: float) -> bool:
        """Wait `delay` before redialing `peer`, or less when it shows a sign of life (then True), never less
        than _WAKE_MIN_S."""
        wake = self._wake[peer] = trio.Event()
        began = trio.current_time()
        with trio.move_on_after(delay):
            await wake.wait()
        await trio.sleep(max(0.0, min(delay, _WAKE_MIN_S) - (trio.current_time() - began)))
        return wake.is_set()


def _dial_only_for_us(network: INetwork) -> None:
    """Make the swarm refuse every dial but the peer manager's (its `_keep_connected` tasks)."""
    dial_peer = network.dial_peer

    async def gated(peer_id: ID) -> list[INetConn]:
        if not _DIALING.get():
            raise SwarmException(f"not connected to {peer_id}; only the peer manager dials")
        return await dial_peer(peer_id)

    network.dial_peer = gated  # type: ignore[method-assign]


def _unblock(network: object, peer: ID) -> None:
    """Swarm.unblock_peer, which INetworkService does not declare."""
    unblock = getattr(network, "unblock_peer", None)
    if unblock is not None:
        unblock(peer)


class _Notifee(INotifee):
    """Forwards connection events to the manager's task; notifees must not block the swarm."""

    def __init__(self, manager: PeerManager) -> None:
        self._manager = manager

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._manager._post("connected", conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._manager._post("disconnected", conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()
