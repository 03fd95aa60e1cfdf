"""The OpenRPC document of the API, written from the method registry (served at /openrpc.json and by
`rpc.discover`), so every method, parameter and error code a server answers is in the spec."""

from __future__ import annotations

from typing import Any

from node.rpc.dispatch import Registry
from node.rpc.errors import CODE_NAMES

OPENRPC_VERSION = "1.3.2"
API_VERSION = "0.1.0"

SUBSCRIPTIONS_DOC = (
    "Websocket at /ws speaks the same JSON-RPC. `subscribe` with params {topic: \"new_blocks\"} or "
    "{topic: \"tx_results\", hash?: hex, sender?: address} answers a subscription id; notifications arrive "
    "as {method: \"subscription\", params: {subscription, topic, result}}. `unsubscribe` {subscription}."
)


def build_openrpc(registry: Registry, *, server_url: str | None = None) -> dict[str, Any]:
    methods = []
    for m in registry.methods.values():
        methods.append({
            "name": m.name,
            "summary": m.summary,
            "paramStructure": "either",
            "params": [{"name": p.name, "description": p.description, "required": p.required,
                        "schema": p.schema} for p in m.params],
            "result": {"name": m.result_name, "schema": m.result_schema},
            "errors": [{"code": code, "message": CODE_NAMES[code]} for code in m.errors],
        })
    doc: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Inferchain node JSON-RPC",
            "version": API_VERSION,
            "description": ("Bytes are lowercase hex; addresses bech32m (ic1...); transactions hex of their "
                            "canonical encoding. " + SUBSCRIPTIONS_DOC),
        },
        "methods": methods,
        "components": {"errors": {name.replace(" ", "_"): {"code": code, "message": name}
                                  for code, name in CODE_NAMES.items()}},
    }
    if server_url is not None:
        doc["servers"] = [{"name": "this node", "url": server_url}]
    return doc
