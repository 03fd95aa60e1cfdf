"""Devnet nodes forked from the supervisor after it has imported the node once, instead of each started as a
fresh interpreter that imports it again.

A node process spends about 1 s of CPU importing its own code before it does anything (libp2p with its QUIC,
TLS and relay stacks 0.5-0.7 s, our ~400 dataclasses 0.45 s: docs/performance-startup.md, "Second pass"); four of them on two cores
were most of a devnet's start. `devnet up` in the foreground imports that code once (`preload`) and forks
each node from it (`fork_node`): the children share the imported modules copy-on-write and run the same
`inferchain node run --home HOME` entry point a started process would, in their own session, with output
to the node's log. They are real, separate OS processes (own pid, session, signals, LevelDB); `ForkedNode`
gives the supervisor the part of `subprocess.Popen` the devnet uses to watch and stop them.

A validator's sandbox worker (0.8 s of CPU importing ONNX Runtime and the model checker in a fresh
interpreter) is forked the same way: the supervisor imports the sandbox too, and each node, first thing
after it was forked (one thread, no database, socket or ONNX session yet), forks its worker
(`WorkerPool.start_forked`). The worker then scrubs its environment, sets its limits and serves batches as a
spawned one does (docs/sandbox.md); a worker started again after a fault is spawned. A forked node keeps the supervisor's
command line in `ps`; its process name (`ps -o comm`, top) is `inferchain-nodeI`.

Forking is only safe from a process with one thread and no open database, socket or event loop: the
supervisor before it starts watching. `can_fork` says whether that holds; otherwise the devnet starts
processes as before.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

from core.errors import InferchainError

_POLL_S = 0.02
PRELOAD = ("node.cli.node_cmd", "node.cli.runner", "node.service",
           "vm.sandbox.check", "vm.sandbox.executor", "vm.sandbox.worker")


def preload() -> None:
    """Import what `node run` and its sandbox worker import before the node exists, so forked children need
    not: the node's modules, and ONNX Runtime with the model checker for the worker each node forks."""
    for name in PRELOAD:
        importlib.import_module(name)
    _freeze_for_fork()


def _freeze_for_fork() -> None:
    """Freeze the supervisor's heap before a fork (node/gctune.py), as CPython's docs for `gc.freeze` advise:
    the children's collections then never scan, and so never write to and un-share, the pages they hold
    copy-on-write. Skipped under `INFERCHAIN_GC=python` (or a bad value, which the node reports itself)."""
    from node import gctune

    try:
        setting = gctune.get_setting()
    except InferchainError:
        return
    if setting.freeze:
        gc.freeze()


def can_fork() -> bool:
    """Fork only a single-threaded process (a lock held by another thread would stay held in the child)."""
    return hasattr(os, "fork") and threading.active_count() == 1


class ForkedNode:
    """The supervisor's handle on a forked node: the part of `subprocess.Popen` the devnet uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (devnet.pid_alive): gone, status unknown, as Popen says
                self.returncode = 0
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"node pid {self.pid}", timeout or 0.0)
            time.sleep(_POLL_S)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_node(home: Path, log_path: Path, cwd: Path) -> ForkedNode:
    """Fork a child that runs `inferchain node run --home HOME` (output appended to `log_path`, cwd `cwd`,
    its own session) and return the parent's handle on it."""
    home = home.resolve()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for stream in (sys.stdout, sys.stderr):  # or the child would write the parent's pending output again
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    _freeze_for_fork()
    try:
        pid = os.fork()
    except BaseException:
        os.close(log_fd)
        raise
    if pid:
        os.close(log_fd)
        return ForkedNode(pid)
    _child(home, log_fd, cwd)  # never returns


def _child(home: Path, log_fd: int, cwd: Path) -> NoReturn:
    code = 1
    try:
        os.setsid()  # our own session and process group: the devnet signals the node and its workers together
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        os.chdir(cwd)
        with contextlib.suppress(OSError):  # `ps -o comm`/top name it; its command line stays the supervisor's
            Path("/proc/self/comm").write_text(f"inferchain-{home.name}"[:15])
        os.environ["PYTHONUNBUFFERED"] = "1"  # the node's own children (sandbox workers) log unbuffered too
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        # The supervisor's handlers (its own stop) are not the node's: it sets its own under trio.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = [sys.argv[0], "node", "run", "--home", str(home)]
        from node.cli import main, runner
        from node.home import NodeHome

        try:
            config = NodeHome.at(home).load_config()
        except (InferchainError, OSError):
            config = None  # `node run` reports the home's fault in its own words
        if config is not None and config.validator:
            # Still one thread, nothing opened: the one moment a worker can be forked from this process.
            runner.fork_sandbox_pool(config.worker_memory_bytes)

        main(["node", "run", "--home", str(home)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
