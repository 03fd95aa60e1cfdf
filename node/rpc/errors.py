"""JSON-RPC error codes and the one error type both the server and the typed client use.

Codes from -32700 to -32600 are JSON-RPC 2.0's; the -320xx range is Inferchain's, one code per cause, so a
client can branch on the code and show the one-line message as it is.
"""

from __future__ import annotations

from typing import Any

from core.errors import RemoteError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NOT_FOUND = -32001  # no such block, transaction, account, model
TX_REJECTED = -32002  # the mempool refused the transaction (the message says why)
TIMEOUT = -32003  # commit mode: the transaction did not land in a block in time
NOT_READY = -32004  # the node is starting or catching up and cannot answer this yet
TX_FAILED = -32005  # reserved: the transaction landed but failed (commit mode reports it in the result)
RATE_LIMITED = -32006  # this client is over its request, concurrency, connection or subscription limit
FORBIDDEN = -32007  # missing or wrong bearer token, a Host or Origin this node does not serve

CODE_NAMES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    NOT_FOUND: "not found",
    TX_REJECTED: "transaction rejected",
    TIMEOUT: "timeout",
    NOT_READY: "not ready",
    TX_FAILED: "transaction failed",
    RATE_LIMITED: "rate limited",
    FORBIDDEN: "forbidden",
}


class RpcError(RemoteError):
    """A JSON-RPC error object: a code and a one-line message (and optional structured data). Remote for
    whoever receives it: the client that sent bad params, or the client reading a server's answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(str(message).split())[:500]  # one line, bounded
        self.data = data

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj

    def __str__(self) -> str:
        return self.message


def not_found(message: str) -> RpcError:
    return RpcError(NOT_FOUND, message)
