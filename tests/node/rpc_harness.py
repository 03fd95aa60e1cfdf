"""Runs an RPC server in front of a `NodeApi` on a real socket, in its own thread and trio loop, so tests
can talk to it with the real (sync) client; stops it with a bounded wait."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from node.config import RPCSection
from node.metrics import NodeMetrics, StatusSample
from node.rpc.api import NodeApi
from node.rpc.server import RpcServer

T = TypeVar("T")


@dataclass
class Served:
    api: Any
    server: RpcServer
    url: str
    token: trio.lowlevel.TrioToken

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's trio loop (the api is not thread-safe)."""
        return trio.from_thread.run_sync(fn, trio_token=self.token)

    def on_loop_async(self, fn: Callable[..., Awaitable[T]], *args: Any, limit_s: float) -> T:
        """Await `fn(*args)` on the server's trio loop, failing after `limit_s` seconds."""
        async def bounded() -> T:
            with trio.fail_after(limit_s):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self.token)


class ServerThread:
    def __init__(self, api: NodeApi, *, autoproduce: Callable[[], object] | None = None,
                 produce_every: float = 0.05, config: RPCSection | None = None) -> None:
        def sample() -> StatusSample:
            s = api.status()
            return StatusSample(int(s.height), s.round, s.peers, s.mempool_size, s.mempool_bytes,
                                s.is_validator, 3, 1, 0, s.catching_up)

        self.metrics = NodeMetrics(sample)
        self.server = RpcServer(api, host="127.0.0.1", port=0, metrics=self.metrics, config=config)
        self.api = api
        self._autoproduce = autoproduce
        self._every = produce_every
        self._ready = threading.Event()
        self._cancel: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._url: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                self._url = await nursery.start(self.server.run)
                if self._autoproduce is not None:
                    nursery.start_soon(self._produce_loop)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _produce_loop(self) -> None:
        assert self._autoproduce is not None
        while True:
            await trio.sleep(self._every)
            self._autoproduce()

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"rpc server did not start: {self._error!r}")
        assert self._url is not None and self._token is not None
        return Served(self.api, self.server, self._url, self._token)

    def __exit__(self, *exc: object) -> None:
        if self._cancel is not None and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(15)
        assert not self._thread.is_alive(), "rpc server thread did not stop"
