"""A userspace TCP proxy that can go silent: the network cut that does not close connections.

    proxy = BlackholeProxy(target_port)
    await nursery.start(proxy.serve)          # listening on 127.0.0.1:proxy.port, forwarding to target_port
    proxy.cut()                               # stop moving bytes both ways; every connection stays open
    proxy.heal()

While cut, the proxy reads nothing, so what a peer sends piles up in kernel buffers until its writes block:
what a peer behind a dead link or a stopped process looks like, with no reset to tell anyone.

A synchronous test (tests/realnet) runs its proxies on a trio loop in a background thread:

    with ProxyThread() as proxies:
        proxy = proxies.add(lambda: net.spec(2).p2p_port)   # the target is looked up per connection
        proxies.cut(proxy); proxies.heal(proxy)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

_CHUNK = 64 * 1024
START_TIMEOUT_S = 10.0


class BlackholeProxy:
    def __init__(self, target_port: int | Callable[[], int]) -> None:
        """`target_port`: where each new connection goes; a callable is asked per connection (a network that
        moved to other ports after the proxy started)."""
        self._target = target_port
        self.port = 0
        self.connections = 0
        self.bytes_moved = 0  # forwarded either way: whether a healed link carries traffic again
        self._flowing = trio.Event()
        self._flowing.set()

    @property
    def target_port(self) -> int:
        return self._target() if callable(self._target) else self._target

    @property
    def is_cut(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def heal(self) -> None:
        self._flowing.set()

    async def serve(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        self.connections += 1
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, nursery.cancel_scope)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await src.receive_some(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                await dst.send_all(data)
                self.bytes_moved += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()  # one side closed: close the other (only while flowing: a cut link tells nobody)


class ProxyThread:
    """`BlackholeProxy`s served by a trio loop in a background thread, driven from synchronous code: `add`
    starts one and returns it once it listens, `cut` and `heal` act on it from this thread, leaving the block
    closes every proxy connection and stops the thread."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="blackhole-proxies", daemon=True)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._token is None:
            raise AssertionError(f"the proxy thread did not start: {self._error!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread.is_alive() and self._nursery is not None:
            scope = self._nursery.cancel_scope
            with contextlib.suppress(trio.RunFinishedError):
                self._run(scope.cancel)
        self._thread.join(START_TIMEOUT_S)
        if self._thread.is_alive():
            raise AssertionError(f"the proxy thread did not stop within {START_TIMEOUT_S} s")

    def add(self, target_port: int | Callable[[], int]) -> BlackholeProxy:
        proxy = BlackholeProxy(target_port)

        async def start() -> None:
            assert self._nursery is not None
            await self._nursery.start(proxy.serve)

        trio.from_thread.run(start, trio_token=self._token)
        return proxy

    def cut(self, *proxies: BlackholeProxy) -> None:
        for proxy in proxies:
            self._run(proxy.cut)

    def heal(self, *proxies: BlackholeProxy) -> None:
        for proxy in proxies:
            self._run(proxy.heal)

    def _run(self, fn: Callable[[], None]) -> None:
        trio.from_thread.run_sync(fn, trio_token=self._token)

    def _main(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set()
                await trio.sleep_forever()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
