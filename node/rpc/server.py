"""The RPC server: a Starlette ASGI app served by Hypercorn's trio worker inside the node's nursery.

    POST /              JSON-RPC 2.0 (single or batch)
    GET  /health        200 {"ok": true, ...} while the node runs (for load balancers and scripts)
    GET  /openrpc.json  the API's OpenRPC document (also `rpc.discover`)
    GET  /metrics       Prometheus text format
    GET  /explorer      the block explorer (static pages from node/explorer, strict content-security policy)
    WS   /ws            JSON-RPC plus `subscribe`/`unsubscribe` for new blocks and transaction results

Binds 127.0.0.1 by default. Every request passes `node.rpc.guard.Guard` first (Host and Origin checks,
bearer token, JSON content type, per-client rates and counts from the `[rpc]` config section).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.address import encode_address
from core.block import Block
from core.errors import BindError
from node.config import RPCSection
from node.events import SubscriberTooSlow
from node.explorer.assets import explorer_routes
from node.metrics import CONTENT_TYPE_LATEST, NodeMetrics
from node.rpc import errors as E
from node.rpc.api import NodeApi
from node.rpc.dispatch import Method, Registry, error_response, handle_payload, valid_id
from node.rpc.errors import RpcError
from node.rpc.gov_methods import gov_events_json
from node.rpc.guard import WS_PROTOCOL, Guard, RateLimits, Receive, Scope, Send, client_of
from node.rpc.jsonenc import to_json
from node.rpc.methods import parse_address_param, parse_hash, result_json
from node.rpc.methods import registry as base_registry
from node.rpc.openrpc import build_openrpc
from node.rpc.ots import registry as ots_registry

# How long an idle HTTP connection stays open. Clients keep theirs open for less (node.client.KEEPALIVE_S):
# a client that reuses a connection at the moment the server closes it gets a reset, not an answer.
KEEP_ALIVE_S = 5.0
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A broadcast_txs batch of model chunks is the largest honest request (64 x ~600 KB hex is refused; a few
chunks fit)."""
MAX_WS_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_SUBSCRIPTIONS_PER_CONNECTION = 16
WS_OUTBOX = 512


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    tx_hash: bytes | None = None
    sender: bytes | None = None


def build_registry() -> Registry:
    """The node's methods plus `rpc.discover` (which describes them all, itself included)."""
    reg = Registry({**base_registry.methods, **ots_registry.methods})

    async def discover(api: NodeApi) -> dict[str, Any]:
        return build_openrpc(reg)

    reg.add(Method("rpc.discover", "This API's OpenRPC document.", (), "OpenRPC",
                   {"type": "object"}, discover))
    return reg


def _render_json(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


# Answers estimated under this many bytes of JSON are rendered on the event loop (a broadcast_txs verdict list
# of 64 is ~6 KB: ~40 us); a thread hand-off per request cost more than that (bench/rpc.py, broadcast part).
INLINE_RENDER_BYTES = 64 * 1024


def is_small_answer(value: Any, limit: int = INLINE_RENDER_BYTES) -> bool:
    """Whether `value`'s JSON stays under about `limit` bytes (strings counted by length, scalars as 20 bytes,
    each container item 2 bytes of syntax). Stops as soon as the budget is spent, so a block answer costs a
    few thousand steps, not its size."""
    left = limit
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            left -= len(item) + 2
        elif isinstance(item, dict):
            left -= 2 + 3 * len(item)
            for k, v in item.items():
                left -= len(k) if isinstance(k, str) else 20
                # A string value counted here, not pushed and popped (a broadcast verdict is all strings
                # and booleans): the same sum, half the steps.
                if isinstance(v, str):
                    left -= len(v) + 2
                else:
                    stack.append(v)
        elif isinstance(item, list | tuple):
            left -= 2 + len(item)
            stack.extend(item)
        else:
            left -= 20
        if left < 0:
            return False
    return True


async def render_answer(answer: Any) -> bytes:
    """The JSON bytes of an answer, as JSONResponse would render them. A small one on the loop; a large one
    (a block answer is megabytes of JSON) in a worker thread."""
    if is_small_answer(answer):
        return _render_json(answer)
    return await trio.to_thread.run_sync(_render_json, answer)


def build_app(api: NodeApi, metrics: NodeMetrics | None = None, config: RPCSection | None = None,
              limits: RateLimits | None = None) -> Guard:
    config = config or RPCSection()
    limits = limits or RateLimits(config)
    registry = build_registry()
    bound = {"api": api}
    post = RpcPost(registry, bound)

    async def health(request: Request) -> Response:
        s = api.status()
        return JSONResponse({"ok": True, "height": int(s.height), "catching_up": s.catching_up})

    async def openrpc(request: Request) -> Response:
        return JSONResponse(build_openrpc(registry, server_url=str(request.base_url)))

    async def metrics_route(request: Request) -> Response:
        if metrics is None:
            return Response("metrics disabled\n", status_code=404, media_type="text/plain")
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def ws_route(websocket: WebSocket) -> None:
        # A browser that offers subprotocols (the explorer's token, node/rpc/guard.py) needs one selected.
        offered = websocket.scope.get("subprotocols") or ()
        await websocket.accept(subprotocol=WS_PROTOCOL if WS_PROTOCOL in offered else None)
        await _serve_websocket(websocket, registry, bound, api, limits)

    starlette_app = Starlette(routes=[
        Route("/", post, methods=["POST"]),  # reached only past DirectPost; keeps `GET /` a 405
        Route("/health", health, methods=["GET"]),
        Route("/openrpc.json", openrpc, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        WebSocketRoute("/ws", ws_route),
        *explorer_routes(),
    ])
    return Guard(DirectPost(post, starlette_app), config, limits)


# ------------------------------------------------------------------------------------------------ POST /

_JSON_HEADERS = [(b"content-type", b"application/json")]


class RpcPost:
    """The ASGI app of `POST /`: the body read straight from the ASGI messages (at most MAX_BODY_BYTES, 413
    past it; 400 when the client goes away mid-body), the JSON-RPC answer rendered and sent whole (204 when
    the body held only notifications)."""

    def __init__(self, registry: Registry, bound: dict[str, Any]) -> None:
        self.registry = registry
        self.bound = bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            await _send(send, 400, b"", [])
            return
        if len(body) > MAX_BODY_BYTES:
            await _send(send, 413, _render_json(error_response(None, RpcError(
                E.INVALID_REQUEST, f"request body over {MAX_BODY_BYTES} bytes"))), _JSON_HEADERS)
            return
        answer = await handle_payload(self.registry, body, self.bound)
        if answer is None:
            await _send(send, 204, None, [])
            return
        await _send(send, 200, await render_answer(answer), _JSON_HEADERS)


class DirectPost:
    """`POST /` handed to `post` at once; every other request to `app` (Starlette, whose router also maps
    `POST /` to `post`).

    A JSON-RPC POST needs none of Starlette's layers (its error middleware, router and request wrapper),
    which were half the server's own CPU per request (docs/performance-cpu.md, "The RPC entry's own CPU per
    transaction (rpcfast round)")."""

    def __init__(self, post: RpcPost, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.post = post
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self.post(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, stopped just past MAX_BODY_BYTES (the caller refuses it); None on a disconnect."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the usual case: the whole body in one message
    parts = bytearray(body)
    while len(parts) <= MAX_BODY_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(parts)


async def _send(send: Send, status: int, body: bytes | None, headers: list[tuple[bytes, bytes]]) -> None:
    """One whole response; content-length as Starlette sets it (none on a 204)."""
    if body is not None:
        headers = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body or b""})


# ------------------------------------------------------------------------------------------------ websocket


class _TooManySubscriptions(Exception):
    """This client holds `subscriptions_per_client` already (raised out of `nursery.start`)."""


def _parse_subscription(params: Any) -> Subscription:
    if isinstance(params, list) and params:
        params = params[0] if isinstance(params[0], dict) else {"topic": params[0]}
    if not isinstance(params, dict):
        raise RpcError(E.INVALID_PARAMS, 'subscribe: params are {topic: "new_blocks" | "tx_results" | '
                                         '"gov_events", ...}')
    topic = params.get("topic")
    extra = set(params) - {"topic", "hash", "sender"}
    if extra:
        raise RpcError(E.INVALID_PARAMS, f"subscribe: unknown param {sorted(extra)[0]!r}")
    if topic == "new_blocks":
        if len(params) > 1:
            raise RpcError(E.INVALID_PARAMS, "subscribe: new_blocks takes no filter")
        return Subscription("new_blocks")
    if topic == "gov_events":
        if len(params) > 1:
            raise RpcError(E.INVALID_PARAMS, "subscribe: gov_events takes no filter")
        return Subscription("gov_events")
    if topic == "tx_results":
        try:
            tx_hash = bytes(parse_hash(params["hash"])) if params.get("hash") is not None else None
            sender = bytes(parse_address_param(params["sender"])) if params.get("sender") is not None else None
        except ValueError as exc:
            raise RpcError(E.INVALID_PARAMS, f"subscribe: {exc}") from None
        return Subscription("tx_results", tx_hash, sender)
    raise RpcError(E.INVALID_PARAMS, 'subscribe: topic is "new_blocks", "tx_results" or "gov_events"')


def _notifications(sub: Subscription, block: Block, api: NodeApi) -> list[dict[str, Any]]:
    if sub.topic == "gov_events":  # the proposals that closed in this block (a bounded state read)
        return gov_events_json(api, int(block.height))
    if sub.topic == "new_blocks":
        h = block.header
        return [{"height": int(h.height), "id": block.id.hex(), "time": int(h.time),
                 "proposer": encode_address(h.proposer), "state_root": h.state_root.hex(),
                 "header": to_json(h), "txs": [tx.hash.hex() for tx in block.txs]}]
    out = []
    for index, (tx, result) in enumerate(zip(block.txs, block.results, strict=False)):
        if sub.tx_hash is not None and bytes(tx.hash) != sub.tx_hash:
            continue
        if sub.sender is not None and bytes(tx.sender_address) != sub.sender:
            continue
        out.append({"hash": tx.hash.hex(), "height": int(block.height), "index": index,
                    "sender": encode_address(tx.sender_address), "kind": tx.kind,
                    "result": result_json(result)})
    return out


async def _serve_websocket(ws: WebSocket, registry: Registry, bound: dict[str, Any], api: NodeApi,
                           limits: RateLimits) -> None:
    outbox_send, outbox_receive = trio.open_memory_channel[str](WS_OUTBOX)
    subs: dict[str, trio.CancelScope] = {}
    next_sub = 0
    client = client_of(ws.scope)
    cfg = limits.cfg

    async def writer() -> None:
        async for text in outbox_receive:
            await ws.send_text(text)

    async def forward(sub_key: str, sub: Subscription, *,
                      task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            # Counted against the client from the subscribe until this task ends, whatever ends it.
            if not RateLimits.enter(limits.subscriptions, client, cfg.subscriptions_per_client):
                raise _TooManySubscriptions
            try:
                async with api.committed_blocks() as blocks:  # OverflowError reaches nursery.start
                    task_status.started(scope)
                    async for block in blocks:
                        for result in _notifications(sub, block, api):
                            await outbox_send.send(json.dumps({"jsonrpc": "2.0", "method": "subscription",
                                                               "params": {"subscription": sub_key,
                                                                          "topic": sub.topic, "result": result}}))
            except SubscriberTooSlow:
                # The node's hub cut our stream: we fell too far behind. Say so; the client resubscribes.
                await outbox_send.send(json.dumps({"jsonrpc": "2.0", "method": "subscription_dropped", "params": {
                    "subscription": sub_key, "reason": "subscriber too slow; resubscribe and query missed blocks"}}))
            finally:
                RateLimits.leave(limits.subscriptions, client)
        subs.pop(sub_key, None)

    async def local(request: dict[str, Any], nursery: trio.Nursery) -> dict[str, Any]:
        nonlocal next_sub
        req_id = request.get("id")
        if not valid_id(req_id):
            return error_response(None, RpcError(E.INVALID_REQUEST, "id must be a string, a number or null"))
        try:
            if request["method"] == "subscribe":
                if len(subs) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
                    raise RpcError(E.RATE_LIMITED,
                                   f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection")
                sub = _parse_subscription(request.get("params"))
                next_sub += 1
                key = f"{next_sub:x}"
                try:
                    subs[key] = await nursery.start(forward, key, sub)
                except OverflowError as exc:
                    raise RpcError(E.NOT_READY, str(exc)) from None
                except _TooManySubscriptions:
                    raise RpcError(E.RATE_LIMITED, f"at most {cfg.subscriptions_per_client} subscriptions "
                                                   "per client") from None
                return {"jsonrpc": "2.0", "id": req_id, "result": key}
            params = request.get("params")
            wanted = params.get("subscription") if isinstance(params, dict) else (
                params[0] if isinstance(params, list) and params else None)
            if not isinstance(wanted, str) or wanted not in subs:
                raise RpcError(E.INVALID_PARAMS, "unsubscribe: unknown subscription")
            subs.pop(wanted).cancel()
            return {"jsonrpc": "2.0", "id": req_id, "result": True}
        except RpcError as err:
            return error_response(req_id, err)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if not limits.take(client):
                    answer: Any = error_response(None, RpcError(
                        E.RATE_LIMITED, f"over {cfg.requests_per_s:g} requests per second; slow down"))
                elif text is None:
                    answer = error_response(None, RpcError(E.INVALID_REQUEST,
                                                           "binary frames are not JSON-RPC; send text frames"))
                else:
                    try:
                        request = json.loads(text)
                    except (ValueError, RecursionError):
                        request = None
                    if isinstance(request, dict) and request.get("jsonrpc") == "2.0" and \
                            request.get("method") in ("subscribe", "unsubscribe"):
                        answer = await local(request, nursery)
                    else:
                        answer = await handle_payload(registry, text, bound)
                if answer is not None:
                    await outbox_send.send(await trio.to_thread.run_sync(json.dumps, answer))
        except WebSocketDisconnect:
            pass
        except RuntimeError as exc:
            # A protocol misuse by the client: close this connection only.
            log.debug("websocket closed: %s", exc)
        finally:
            nursery.cancel_scope.cancel()  # each subscription leaves the node's hub as its task ends


# ------------------------------------------------------------------------------------------------ serving


class RpcServer:
    """Runs the HTTP server (and the block metrics, read from the node's hub); `await nursery.start(server.run)`
    returns the bound URL."""

    def __init__(self, api: NodeApi, *, host: str = "127.0.0.1", port: int = 26657,
                 metrics: NodeMetrics | None = None, config: RPCSection | None = None) -> None:
        self.api = api
        self.metrics = metrics
        self.config = config or RPCSection(address=f"{host}:{port}")
        self.limits = RateLimits(self.config)
        self.app = build_app(api, metrics, self.config, self.limits)
        self.host = host
        self.port = port
        self.url: str | None = None

    async def _observe_blocks(self, metrics: NodeMetrics, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            try:
                async with self.api.committed_blocks() as blocks:
                    if not started:
                        task_status.started()
                        started = True
                    async for block in blocks:
                        metrics.observe_block(int(block.header.time), len(block.txs))
            except SubscriberTooSlow:
                log.warning("block metrics fell behind the node's hub; resubscribing")

    def _hypercorn_config(self) -> HypercornConfig:
        cfg = HypercornConfig()
        cfg.bind = [f"{self.host}:{self.port}"]
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("hypercorn.error")
        cfg.graceful_timeout = 1.0
        cfg.keep_alive_timeout = KEEP_ALIVE_S
        cfg.websocket_max_message_size = MAX_WS_MESSAGE_BYTES
        cfg.h11_max_incomplete_size = self.config.max_header_bytes
        return cfg

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.metrics is not None:
                await nursery.start(self._observe_blocks, self.metrics)
            try:
                binds: list[str] = await nursery.start(
                    partial(serve, self.app, self._hypercorn_config()))  # type: ignore[arg-type]
            except (OSError, BaseExceptionGroup) as exc:  # hypercorn's nested nurseries wrap a bind failure
                cause = _only_os_error(exc)
                if cause is None:
                    raise
                raise BindError(f"cannot listen on {self.host}:{self.port} for RPC (rpc.address): "
                                f"{cause.strerror or cause}") from None
            self.url = binds[0]
            log.info("rpc listening on %s", self.url)
            task_status.started(self.url)


def _only_os_error(exc: BaseException) -> OSError | None:
    """The OSError that `exc` is, or that a group holds as its only leaf; else None."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None
