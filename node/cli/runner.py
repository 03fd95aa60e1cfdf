"""`inferchain node run`'s body: the node (with its RPC server and metrics) until a signal stops it cleanly."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from node.home import NodeHome

if TYPE_CHECKING:  # imported when the command runs: `inferchain --help` need not load libp2p and ONNX
    from node.service import Node

log = logging.getLogger("inferchain.node")


async def run_node(home: NodeHome, passphrase: str | None) -> None:
    """Run until SIGINT or SIGTERM, or until the node stops on its own (a fatal error raises instead)."""
    from node.service import Node

    node = Node(home, passphrase=passphrase, workers=1)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run_then_cancel, node, nursery.cancel_scope)
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def _run_then_cancel(node: Node, scope: trio.CancelScope) -> None:
    await node.run()
    scope.cancel()
