"""JSON-RPC 2.0 dispatch: a method registry with typed parameters, and the request/batch state machine.

Every method declares its parameters (name, JSON schema, parser, required) and its result schema in one
place; the same declaration parses requests, checks them, and writes the OpenRPC document, so the spec
cannot drift from the code. Any malformed request becomes an error object; nothing a client sends can
raise out of `handle_payload`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import LocalError, RemoteError
from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)

log = logging.getLogger(__name__)

MAX_BATCH = 100
"""Requests in one batch; a larger batch is refused whole (it would hold the server for too long)."""


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    required: bool = True
    parse: Callable[[Any], Any] = _identity  # raises ValueError/TypeError with a one-line reason
    default: Any = None


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    summary: str
    params: tuple[Param, ...]
    result_name: str
    result_schema: dict[str, Any]
    handler: Callable[..., Awaitable[Any]]
    errors: tuple[int, ...] = ()

    def bind(self, params: Any) -> dict[str, Any]:
        """Parse by-name or by-position params into handler keyword arguments; raises RpcError."""
        if params is None:
            params = {}
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise RpcError(INVALID_PARAMS, f"{self.name}: takes at most {len(self.params)} params, "
                                               f"got {len(params)}")
            params = {p.name: v for p, v in zip(self.params, params, strict=False)}
        elif not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, f"{self.name}: params must be an object or an array")
        known = {p.name for p in self.params}
        extra = sorted(str(k) for k in params if k not in known)
        if extra:
            raise RpcError(INVALID_PARAMS, f"{self.name}: unknown param {extra[0]!r}")
        kwargs: dict[str, Any] = {}
        for p in self.params:
            if p.name not in params or params[p.name] is None:
                if p.required:
                    raise RpcError(INVALID_PARAMS, f"{self.name}: missing param {p.name!r}")
                kwargs[p.name] = p.default
                continue
            try:
                kwargs[p.name] = p.parse(params[p.name])
            except RpcError:
                raise
            except (ValueError, TypeError, RemoteError) as exc:
                raise RpcError(INVALID_PARAMS, f"{self.name}: param {p.name!r}: {exc}") from None
        return kwargs


@dataclass
class Registry:
    """The methods a server answers, in declaration order (the order of the OpenRPC document)."""

    methods: dict[str, Method] = field(default_factory=dict)

    def add(self, method: Method) -> None:
        if method.name in self.methods:
            raise ValueError(f"method {method.name} registered twice")
        self.methods[method.name] = method

    def method(self, name: str, summary: str, *, params: tuple[Param, ...] = (), result: str,
               result_schema: dict[str, Any], errors: tuple[int, ...] = ()
               ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.add(Method(name, summary, params, result, result_schema, fn, errors))
            return fn
        return register


def valid_id(req_id: Any) -> bool:
    """JSON-RPC ids are strings, numbers or null (never booleans, arrays or objects)."""
    return req_id is None or (isinstance(req_id, str | int) and not isinstance(req_id, bool))


def error_response(req_id: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_json()}


async def handle_one(registry: Registry, request: Any, bound: dict[str, Any]) -> dict[str, Any] | None:
    """Answer one request object; None for a notification (no id), which gets no response."""
    if not isinstance(request, dict):
        return error_response(None, RpcError(INVALID_REQUEST, "a request must be a JSON object"))
    req_id = request.get("id")
    is_notification = "id" not in request
    if not valid_id(req_id):
        return error_response(None, RpcError(INVALID_REQUEST, "id must be a string, a number or null"))
    if request.get("jsonrpc") != "2.0":
        return error_response(req_id, RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"'))
    name = request.get("method")
    if not isinstance(name, str):
        return error_response(req_id, RpcError(INVALID_REQUEST, "method must be a string"))
    method = registry.methods.get(name)
    try:
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:80]}")
        kwargs = method.bind(request.get("params"))
        result = await method.handler(**bound, **kwargs)
    except RpcError as err:
        return None if is_notification else error_response(req_id, err)
    except RemoteError as err:
        # The client's bad input reaching the node's checks: a client error, do not crash.
        return None if is_notification else error_response(req_id, RpcError(INVALID_PARAMS, str(err)))
    except LocalError as err:
        # This node's own fault (storage, workers, config): a server error, never blamed on the request.
        log.warning("rpc method %s failed on our side: %s", name, err)
        return None if is_notification else error_response(req_id, RpcError(INTERNAL_ERROR, str(err)))
    except Exception:  # a bug of ours: log it with its traceback, answer one line, keep serving
        log.exception("rpc method %s failed", name)
        return None if is_notification else error_response(
            req_id, RpcError(INTERNAL_ERROR, f"internal error in {name}; see the node's log"))
    if is_notification:
        return None
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


async def handle_payload(registry: Registry, body: bytes | str, bound: dict[str, Any]) -> Any:
    """Answer a request body (one request or a batch); returns the JSON value to send, or None for none."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error_response(None, RpcError(PARSE_ERROR, "parse error: the body is not valid JSON"))
    if isinstance(payload, list):
        if not payload:
            return error_response(None, RpcError(INVALID_REQUEST, "an empty batch is not a request"))
        if len(payload) > MAX_BATCH:
            return error_response(None, RpcError(INVALID_REQUEST, f"batch of {len(payload)} requests; "
                                                                  f"at most {MAX_BATCH}"))
        responses = [await handle_one(registry, r, bound) for r in payload]
        answered = [r for r in responses if r is not None]
        return answered or None
    return await handle_one(registry, payload, bound)
