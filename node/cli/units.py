"""The chain's token as the node publishes it (`params`), which turns typed amounts into base units and
formats amounts back (the rules themselves live in core.units; the click type is node.cli.common.AMOUNT)."""

from __future__ import annotations

from typing import Any

from core.units import DEFAULT_TOKEN, Token
from node.client import Client, RpcError
from node.rpc.errors import NOT_READY


def token_from_params(params: dict[str, Any] | None) -> Token:
    """The token named by a `params` RPC answer (the default names when a node does not publish them)."""
    doc = (params or {}).get("token")
    if not isinstance(doc, dict):
        return DEFAULT_TOKEN
    try:
        return Token.from_obj([doc["display"], doc["base"], doc["decimals"]])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_TOKEN


def chain_params(client: Client) -> dict[str, Any] | None:
    """The node's chain parameters, or None when it does not publish them."""
    try:
        params = client.call("params")
    except RpcError as err:
        if err.code != NOT_READY:
            raise
        return None
    return params if isinstance(params, dict) else None


def chain_token(client: Client) -> Token:
    return token_from_params(chain_params(client))
