"""The RPC's front door, an ASGI middleware in front of every route: what a request must be before any
handler sees it, and how much one client (an IP address) may ask.

- Request line and headers within `max_header_bytes` (431).
- `Host` one this node serves: the loopback names, the bound host, `allowed_hosts` (403). A page on
  another site that a browser reaches through DNS rebinding names its own host and is refused, even on
  127.0.0.1.
- `Origin`, when a browser sends one: the node's own (same host and port as `Host`, so a future page the
  node serves itself may call it) or one of `allowed_origins` (403). Websockets included.
- `Authorization: Bearer <auth_token>` when a token is configured (every route but `GET /health` and the
  explorer's static files, which hold no chain data; 401). A browser cannot set that header on a websocket,
  so a websocket may carry the token as the subprotocol `bearer.<base64url(token)>` instead, offered beside
  `inferchain` (which the server selects), as Kubernetes does; never in the URL, which logs keep.
- `POST /` with `Content-Type: application/json` (415): a cross-site form cannot post a simple request.
- Per client: a token bucket of `requests_per_s` with bursts of `burst` (429), at most
  `concurrent_per_client` requests in flight (429) and `websockets_per_client` open websockets (refused at
  the handshake). Websocket messages draw on the same bucket (`RateLimits.take`).

Refusals are JSON-RPC error objects (`-32006` rate limited, `-32007` forbidden, `-32600` otherwise) with a
one-line message; nothing here logs per request.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from node.config import LOOPBACK_HOSTS, RPCSection
from node.rpc import errors as E

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_CLIENTS_TRACKED = 10_000
_OPEN_PATHS = frozenset({"/health"})
# The explorer's page, scripts and styles: static, the same on every node; the page asks for the token.
_OPEN_PREFIX = "/explorer"
WS_PROTOCOL = "inferchain"
WS_TOKEN_PREFIX = "bearer."


def _host_name(authority: str) -> str:
    """`example.com:80` -> `example.com`; `[::1]:8080` -> `::1`; lowercased."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:authority.find("]")] if "]" in authority else authority
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


class RateLimits:
    """Per-client token buckets and counters of requests in flight, websockets and subscriptions."""

    def __init__(self, cfg: RPCSection) -> None:
        self.cfg = cfg
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.in_flight: dict[str, int] = {}
        self.websockets: dict[str, int] = {}
        self.subscriptions: dict[str, int] = {}

    def take(self, client: str) -> bool:
        """One request's token; False when the client is over its rate."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(client, (float(self.cfg.burst), now))
        tokens = min(float(self.cfg.burst), tokens + (now - last) * self.cfg.requests_per_s)
        ok = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if ok else tokens, now)
        while len(self._buckets) > _MAX_CLIENTS_TRACKED:
            self._buckets.popitem(last=False)
        return ok

    @staticmethod
    def enter(table: dict[str, int], client: str, limit: int) -> bool:
        count = table.get(client, 0)
        if count >= limit:
            return False
        table[client] = count + 1
        return True

    @staticmethod
    def leave(table: dict[str, int], client: str) -> None:
        count = table.get(client, 0) - 1
        if count > 0:
            table[client] = count
        else:
            table.pop(client, None)


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Guard:
    def __init__(self, app: ASGIApp, cfg: RPCSection, limits: RateLimits) -> None:
        self.app = app
        self.cfg = cfg
        self.limits = limits
        bound = _host_name(cfg.host) if cfg.host else ""
        self._hosts = {h.strip("[]") for h in LOOPBACK_HOSTS} | {_host_name(h) for h in cfg.allowed_hosts}
        if bound and bound not in ("0.0.0.0", "::"):
            self._hosts.add(bound)
        self._any_host = "*" in cfg.allowed_hosts
        self._origins = {o.rstrip("/").lower() for o in cfg.allowed_origins}
        self._token = f"Bearer {cfg.auth_token}".encode() if cfg.auth_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            status, code, message = refusal
            await _refuse(kind, receive, send, status, code, message)
            return
        client = client_of(scope)
        if kind == "websocket":
            if not RateLimits.enter(self.limits.websockets, client, self.cfg.websockets_per_client):
                await _refuse(kind, receive, send, 429, E.RATE_LIMITED,
                              f"at most {self.cfg.websockets_per_client} websockets per client")
                return
            try:
                await self.app(scope, receive, send)
            finally:
                RateLimits.leave(self.limits.websockets, client)
            return
        if not self.limits.take(client):
            await _refuse(kind, receive, send, 429, E.RATE_LIMITED,
                          f"over {self.cfg.requests_per_s:g} requests per second; slow down")
            return
        if not RateLimits.enter(self.limits.in_flight, client, self.cfg.concurrent_per_client):
            await _refuse(kind, receive, send, 429, E.RATE_LIMITED,
                          f"at most {self.cfg.concurrent_per_client} requests in flight per client")
            return
        try:
            await self.app(scope, receive, send)
        finally:
            RateLimits.leave(self.limits.in_flight, client)

    def _check(self, scope: Scope) -> tuple[int, int, str] | None:
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        size = len(scope.get("raw_path") or scope.get("path", "").encode()) + sum(
            len(k) + len(v) + 4 for k, v in headers)
        if size > self.cfg.max_header_bytes:
            return 431, E.INVALID_REQUEST, f"request headers over {self.cfg.max_header_bytes} bytes"
        host = origin = auth = content_type = None
        for key, value in headers:
            name = key.lower()
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"authorization":
                auth = value
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if not self._any_host and (host is None or _host_name(host) not in self._hosts):
            return 403, E.FORBIDDEN, "this node does not serve that Host (add it to rpc.allowed_hosts)"
        if origin is not None and not self._origin_ok(origin, host):
            return 403, E.FORBIDDEN, "cross-origin requests are refused (add the origin to rpc.allowed_origins)"
        if self._token is not None and not _is_open(scope):
            if auth is None and scope["type"] == "websocket":
                auth = _subprotocol_token(scope)
            if auth is None or not hmac.compare_digest(auth, self._token):
                return 401, E.FORBIDDEN, "missing or wrong bearer token (Authorization: Bearer <rpc.auth_token>)"
        if scope["type"] == "http" and scope.get("method") == "POST":
            media = (content_type or "").split(";")[0].strip().lower()
            if media != "application/json":
                return 415, E.INVALID_REQUEST, "Content-Type must be application/json"
        return None

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self._origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host is not None and parts.netloc == host.strip().lower()


def _is_open(scope: Scope) -> bool:
    """Routes served without the token: the health check and the explorer's static files."""
    path = str(scope.get("path", ""))
    if path in _OPEN_PATHS:
        return True
    return scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and (
        path == _OPEN_PREFIX or path.startswith(_OPEN_PREFIX + "/"))


def _subprotocol_token(scope: Scope) -> bytes | None:
    """`Bearer <token>` from a websocket's `bearer.<base64url(token)>` subprotocol, or None."""
    for offered in scope.get("subprotocols") or ():
        if isinstance(offered, str) and offered.startswith(WS_TOKEN_PREFIX):
            encoded = offered[len(WS_TOKEN_PREFIX):]
            try:
                token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                return None
            return b"Bearer " + token
    return None


async def _refuse(kind: str, receive: Receive, send: Send, status: int, code: int, message: str) -> None:
    if kind == "websocket":
        # Before the handshake is accepted, a close is answered as HTTP 403 by the server.
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
