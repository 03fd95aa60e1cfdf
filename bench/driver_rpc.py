"""The devnet bench's own JSON-RPC client: its load driver's `broadcast_txs` and its observer's `status` and
`block` (hashes only) polls, over one kept-alive `http.client` connection each, instead of
`node.client.Client` (httpx's request and response layers cost ~4x the CPU per call); a `broadcast_txs` body
is joined from the transactions' hex instead of `json.dumps` of the whole batch.

The driver shares the machine's cores with the nodes it loads, so every microsecond of its own per
transaction is throughput the nodes lose (docs/performance-cpu.md, "The RPC entry and the load driver (rpcentry
round)"). Errors are those of `Client`: `RpcError` with the node's message for a JSON-RPC error,
`NodeUnreachable` when no JSON answer came (the connection is opened again on the next call).
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from node.client import BlockHashes, NodeUnreachable, Status, unwrap_answer
from node.rpc.errors import RpcError


class DriverRpc:
    """A few JSON-RPC calls over one kept-alive HTTP/1.1 connection to `url` (http only); one thread at a
    time."""

    def __init__(self, url: str, *, timeout: float = 60.0, token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"DriverRpc takes an http:// URL, not {url!r}")
        self.url = url
        self._host, self._port, self._timeout = parts.hostname, parts.port or 80, timeout
        token = token if token is not None else os.environ.get("INFERCHAIN_RPC_TOKEN", "")
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self._ids = itertools.count(1)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DriverRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def broadcast(self, hex_txs: Sequence[str], mode: str = "sync") -> list[dict[str, Any]]:
        """The node's verdicts on `hex_txs` (lowercase hex of each transaction's encoding), in order."""
        if mode not in ("sync", "commit"):
            raise ValueError(f"mode {mode!r}")
        # Printable ASCII without a quote or a backslash (hex, always, in the bench) needs no JSON escaping: the
        # body is joined, not encoded value by value. Anything else goes through json.dumps.
        flat = "".join(hex_txs)
        if hex_txs and flat.isascii() and flat.isprintable() and '"' not in flat and "\\" not in flat:
            txs = '["' + '","'.join(hex_txs) + '"]'
        else:
            txs = json.dumps(list(hex_txs))
        result = self._call(f'{{"jsonrpc":"2.0","id":{next(self._ids)},"method":"broadcast_txs",'
                            f'"params":{{"txs":{txs},"mode":"{mode}"}}}}'.encode())
        if not isinstance(result, list) or len(result) != len(hex_txs):
            raise RpcError(-32603, "broadcast_txs answered without one verdict per transaction")
        return result

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One JSON-RPC call; its `result`, or RpcError with the node's message."""
        return self._call(json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                                      "params": params or {}}).encode())

    def status(self) -> Status:
        return Status.from_json(self.call("status"))

    def block_hashes(self, height: int | None = None) -> BlockHashes:
        """As `Client.block_hashes`: `block` with `hashes: true`."""
        return BlockHashes.from_json(self.call("block", {"height": height, "hashes": True}))

    def _exchange(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._conn.request("POST", "/", body, self._headers)
        response = self._conn.getresponse()
        return response, response.read()

    def _call(self, body: bytes) -> Any:
        return unwrap_answer(self._post(body))

    def _post(self, body: bytes) -> Any:
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                response, data = self._exchange(body)
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed while it sat idle (hypercorn's keep-alive timeout):
                # the request never reached it, so it goes once more on a new connection, as httpx would send it.
                # (http.client.RemoteDisconnected is a ConnectionResetError.)
                if attempt == 2 or not reused or not isinstance(exc, BrokenPipeError | ConnectionResetError):
                    raise NodeUnreachable(f"cannot reach the node at {self.url}: "
                                          f"{str(exc) or type(exc).__name__}") from None
        if response.will_close:
            self.close()
        try:
            return json.loads(data)
        except ValueError:
            raise NodeUnreachable(f"{self.url} answered HTTP {response.status} without JSON") from None
