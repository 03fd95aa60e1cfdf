"""What `inferchain devnet status` reports of each node: its process (from the pid file) and its chain status
(from its RPC), with the nodes asked at once rather than one after another.

A node whose RPC port refuses a plain TCP connection is down, and is reported so without loading the HTTP
client: httpx, with httpcore importing trio, is most of the command's CPU (docs/performance-startup.md, "Fourth pass"), and a
stopped devnet needs none of it. A port that accepts is asked for its status through the RPC client as
before, all such nodes in parallel, each within `timeout_s`, so a devnet of hung nodes answers in about
`timeout_s` rather than `timeout_s` per node.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from node.devnet import Devnet, NodeSpec

STATUS_TIMEOUT_S = 1.0


def node_rows(net: Devnet, timeout_s: float = STATUS_TIMEOUT_S) -> list[dict[str, Any]]:
    """One row per node: index, RPC URL, p2p address and live pid (None when not running), then either its
    height, round, peers, block id and catching-up flag, or `error`: why it has no status."""
    alive = net.running_pids()
    specs = net.specs()
    rows: list[dict[str, Any]] = [{"node": spec.index, "rpc": spec.rpc_url, "p2p": spec.p2p_addr,
                                   "pid": alive.get(f"node{spec.index}")} for spec in specs]
    listening: list[int] = []
    for i, spec in enumerate(specs):
        refused = _refused(spec, timeout_s)
        if refused is None:
            listening.append(i)
        else:
            rows[i]["error"] = refused
    if listening:
        with ThreadPoolExecutor(max_workers=len(listening)) as pool:
            answers = list(pool.map(lambda i: _ask(specs[i], timeout_s), listening))
        for i, answer in zip(listening, answers, strict=True):
            rows[i].update(answer)
    return rows


def _refused(spec: NodeSpec, timeout_s: float) -> str | None:
    """Why nothing listens on the node's RPC port, or None when something accepts a connection there."""
    try:
        with socket.create_connection(("127.0.0.1", spec.rpc_port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"cannot reach the node at {spec.rpc_url}: {exc.strerror or type(exc).__name__}"


def _ask(spec: NodeSpec, timeout_s: float) -> dict[str, Any]:
    from node.client import Client, RpcError

    try:
        with Client(spec.rpc_url, timeout=timeout_s) as client:
            s = client.status()
    except RpcError as err:
        return {"error": str(err)}
    return {"height": s.height, "round": s.round, "peers": s.peers, "block_id": s.block_id,
            "catching_up": s.catching_up}
