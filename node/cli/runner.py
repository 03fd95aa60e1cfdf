"""`inferchain node run`'s body: the node (with its RPC server and metrics) until a signal stops it cleanly."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import TYPE_CHECKING

import trio

from core.errors import ConfigError, LocalFault
from node import gctune
from node.home import NodeHome

if TYPE_CHECKING:  # imported when the command runs: `inferchain --help` need not load libp2p and ONNX
    from node.service import Node
    from vm.sandbox.limits import WorkerLimits
    from vm.sandbox.worker import WorkerPool

log = logging.getLogger("inferchain.node")

# A pool whose worker was forked before the node started (node.devnet_fork), for start_sandbox_pool to hand out.
_forked_pool: tuple[WorkerPool, WorkerLimits] | None = None


def fork_sandbox_pool(memory_bytes: int | None = None) -> None:
    """Fork the node's sandbox worker now, from a process that has one thread and has imported what a worker
    imports (a devnet node just forked from its supervisor): no interpreter to start, nothing to import.
    `start_sandbox_pool` then returns this pool. A fork that fails leaves the pool to spawn on first use.
    `memory_bytes`: the home's `worker_memory_mib` (None: the default limits)."""
    global _forked_pool
    from vm.sandbox.worker import WorkerPool

    limits = _limits(memory_bytes)
    pool = WorkerPool(size=1, limits=limits)
    try:
        pool.start_forked()
    except LocalFault as exc:
        log.debug("sandbox worker not forked: %s", exc)
    _forked_pool = pool, limits


def _limits(memory_bytes: int | None) -> WorkerLimits:
    from vm.sandbox.limits import WorkerLimits

    return WorkerLimits() if memory_bytes is None else WorkerLimits(memory_bytes=memory_bytes)


def start_sandbox_pool(memory_bytes: int | None = None) -> WorkerPool:
    """The node's sandbox pool (one worker), its worker starting now in a background thread: the worker's
    interpreter loads ONNX Runtime while this process imports the node (libp2p, the VM), instead of after
    it, and the node's first use of the pool waits only for what is left. A worker that fails to start here
    is started again, and its fault reported, by that first use."""
    global _forked_pool
    from vm.sandbox.worker import WorkerPool

    limits = _limits(memory_bytes)
    if _forked_pool is not None:
        (pool, forked_limits), _forked_pool = _forked_pool, None
        if forked_limits == limits:
            return pool
        pool.close()  # forked under other limits (not expected: both read the same home's config)
    pool = WorkerPool(size=1, limits=limits)
    threading.Thread(target=_start_quietly, args=(pool,), name="sandbox-start", daemon=True).start()
    return pool


def _start_quietly(pool: WorkerPool) -> None:
    try:
        pool.start()
    except LocalFault as exc:
        log.debug("sandbox worker did not start early: %s", exc)


async def run_node(home: NodeHome, passphrase: str | None, pool: WorkerPool | None = None) -> None:
    """Run until SIGINT or SIGTERM, or until the node stops on its own (a fatal error raises instead).
    `pool`: the sandbox pool to run models in (`start_sandbox_pool`; None: the node's own, started on first
    use); the node closes it when it stops."""
    try:
        gc_setting = gctune.get_setting()
        freezer = gctune.commit_freezer(gc_setting)
    except ConfigError:
        if pool is not None:
            pool.close()
        raise
    gctune.apply(gc_setting)  # before the node's imports: they are start-up's largest allocation
    from node.service import Node

    node = Node(home, passphrase=passphrase, workers=1, executor=pool)
    frozen = gctune.freeze(gc_setting)  # imports, genesis, stores: alive as long as the process
    if freezer is not None:  # and after each commit, what it left alive (node/gctune.py, CommitFreezer)
        node.events.commit_hooks.append(freezer.after_commit)
    log.debug("gc: setting %s, thresholds %s, %d objects frozen", gc_setting.name, gc.get_threshold(), frozen)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_run_then_cancel, node, nursery.cancel_scope, gc_setting)
                async for signum in signals:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        log.info("%s", gctune.summary())


async def _run_then_cancel(node: Node, scope: trio.CancelScope, gc_setting: gctune.GcSetting) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        # Started (RPC, p2p, consensus): what their start imported and built lives as long as the node too.
        gctune.freeze(gc_setting)
        log.info("started; %s", gctune.summary())
    scope.cancel()
