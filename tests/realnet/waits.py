"""Bounded polling: the one way a real-network test waits for something to become true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from node.client import RpcError

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and the last thing seen."""


def wait_until(what: str, check: Callable[[], T | None], timeout: float, *, poll: float = 0.2,
               detail: Callable[[], str] | None = None) -> T:
    """Poll `check` until it returns something truthy and return that; an `RpcError` (a node starting,
    restarting or paused) counts as "not yet". After `timeout` seconds raise `WaitTimeout` naming `what`,
    the last RPC error and `detail()` (e.g. every node's height and log tail)."""
    deadline = time.monotonic() + timeout
    last_error: RpcError | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except RpcError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    message = f"timed out after {timeout:g} s waiting for {what}"
    if last_error is not None:
        message += f" (last RPC error: {last_error})"
    if detail is not None:
        message += "\n" + detail()
    raise WaitTimeout(message)
