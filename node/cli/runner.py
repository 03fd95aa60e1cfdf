"""`inferchain node run`'s body: the node and its RPC server in one nursery, stopped cleanly by a signal."""

from __future__ import annotations

import logging
import signal

import trio

from node.home import NodeHome
from node.metrics import NodeMetrics, TimedExecutor
from node.rpc.adapter import NodeBackend
from node.rpc.server import RpcServer

log = logging.getLogger("inferchain.node")


async def run_node(home: NodeHome, passphrase: str | None) -> None:
    """Run until SIGINT or SIGTERM; the RPC starts first so status answers while the node syncs."""
    from node.service import Node
    from vm.sandbox.worker import WorkerPool

    metrics = NodeMetrics()
    node = Node(home, passphrase=passphrase, executor=TimedExecutor(WorkerPool(size=1), metrics))
    backend = NodeBackend(node)
    metrics.set_status_source(backend.status_sample)
    rpc = node.config.rpc
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if rpc.enabled:
                server = RpcServer(backend, host=rpc.host, port=rpc.port, metrics=metrics, config=rpc)
                url = await nursery.start(server.run)
                log.info("rpc on %s", url)
            nursery.start_soon(_run_then_cancel, node, nursery.cancel_scope)
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def _run_then_cancel(node: object, scope: trio.CancelScope) -> None:
    """If the node stops on its own (a fatal error raises instead), stop the RPC with it."""
    await node.run()  # type: ignore[attr-defined]
    scope.cancel()
