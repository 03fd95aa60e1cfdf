"""`AdversaryPeer`: a real peer of a test network, under the test's control.

    with AdversaryPeer(net.chain_id, "liar", bootstrap=[net.spec(0).p2p_addr], configure=lie) as peer:
        peer.call(publish_junk, peer.service)          # any async function, run on the peer's trio loop
        peer.is_connected(net.spec(0).peer_id)

The peer runs our own `P2PService` (libp2p host with Noise and Yamux, gossipsub with our topics,
request/response with our protocols) on a trio loop in a background thread, so a synchronous real-network
test can drive it. `configure(service)` runs before the service starts: it replaces providers, envelope
checks and handlers (what the peer serves, what it decodes, what it records). Bootstrap peers are redialed
for as long as the peer runs, as a node would.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import trio
from libp2p.peer.id import ID

from p2p.config import P2PConfig
from p2p.identity import node_key_from_seed
from p2p.service import P2PService
from p2p.topics import TopicKind
from p2p.validation import GossipMessage

T = TypeVar("T")

START_TIMEOUT_S = 60.0


class AdversaryPeer:
    def __init__(self, chain_id: str, name: str, *, bootstrap: Sequence[str] = (),
                 configure: Callable[[P2PService], None] | None = None, record: Sequence[TopicKind] = ()) -> None:
        """`record`: topics whose delivered messages are kept in `messages` (and counted in `received`)."""
        self.chain_id = chain_id
        self.name = name
        self.key = node_key_from_seed(f"adversary/{name}".encode())
        self.bootstrap = tuple(bootstrap)
        self._configure = configure
        self._record = tuple(record)
        self.received: Counter[TopicKind] = Counter()
        self.messages: dict[TopicKind, list[GossipMessage]] = {kind: [] for kind in TopicKind}
        self.service: P2PService | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"adversary-{name}", daemon=True)

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT_S) -> AdversaryPeer:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise AssertionError(f"adversary {self.name} did not start: {self._error!r}")
        return self

    def close(self, timeout: float = 30.0) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            stop = self._stop
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"adversary {self.name} did not stop within {timeout} s")

    def __enter__(self) -> AdversaryPeer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # surfaced to the test by start() / call()
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        service = P2PService(P2PConfig(chain_id=self.chain_id, bootstrap=self.bootstrap), self.key)
        for kind in self._record:
            service.gossip.set_handler(kind, self._recorder(kind))
        if self._configure is not None:
            self._configure(service)
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            self.service = service
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _recorder(self, kind: TopicKind) -> Callable[[GossipMessage], Awaitable[None]]:
        async def record(message: GossipMessage) -> None:
            self.received[kind] += 1
            self.messages[kind].append(message)
            await trio.lowlevel.checkpoint()

        return record

    # ------------------------------------------------------------------------------------------ driving

    @property
    def peer_id(self) -> str:
        return str(self._require().peer_id)

    @property
    def addr(self) -> str:
        """`/ip4/127.0.0.1/tcp/…/p2p/<peer id>`: what a node puts in its bootstrap list to dial this peer."""
        return self._require().addr

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `fn(*args)` on the peer's trio loop and return its result."""
        if self._token is None:
            raise AssertionError(f"adversary {self.name} is not running: {self._error!r}")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def is_connected(self, peer_id: str) -> bool:
        service = self._require()

        async def check() -> bool:
            await trio.lowlevel.checkpoint()
            return ID.from_base58(peer_id) in service.connected_peers()

        return self.call(check)

    def publish(self, kind: TopicKind, data: bytes) -> None:
        """Publish as is: no check of our own (the point is to send what honest nodes would not)."""
        service = self._require()

        async def send() -> None:
            await service.publish(kind, data, check=False)

        self.call(send)

    def _require(self) -> P2PService:
        if self.service is None:
            raise AssertionError(f"adversary {self.name} is not running: {self._error!r}")
        return self.service
