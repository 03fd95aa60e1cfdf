"""A userspace TCP proxy that can go silent: the network cut that does not close connections.

    proxy = BlackholeProxy(target_port)
    await nursery.start(proxy.serve)          # listening on 127.0.0.1:proxy.port, forwarding to target_port
    proxy.cut()                               # stop moving bytes both ways; every connection stays open
    proxy.heal()

While cut, the proxy reads nothing, so what a peer sends piles up in kernel buffers until its writes block:
what a peer behind a dead link or a stopped process looks like, with no reset to tell anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

_CHUNK = 64 * 1024


class BlackholeProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._flowing = trio.Event()
        self._flowing.set()

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
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()  # one side closed: close the other (only while flowing: a cut link tells nobody)
