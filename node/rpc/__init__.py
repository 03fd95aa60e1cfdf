"""HTTP JSON-RPC, websocket subscriptions and Prometheus metrics in front of a node.

Kept import-light: the typed client imports `node.rpc.errors` and `node.rpc.jsonenc` without pulling in
the server's dependencies. The server is `node.rpc.server.RpcServer`; docs/rpc.md describes the API.
"""
