"""The RPC's front door on a real socket: Host and Origin checks against DNS rebinding, JSON content type,
bearer token, per-client request, concurrency, websocket and subscription limits, oversized headers,
binary websocket frames and websocket ids. Each test mounts the attack the issue reported."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url, wrap_client_stream

from core.errors import ConfigError
from node.client import Client
from node.client import RpcError as ClientRpcError
from node.config import NodeConfig, RPCSection, config_from_dict
from node.rpc import errors as E
from tests.node.rpc_harness import Served, ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node

JSON = {"content-type": "application/json"}
STATUS = {"jsonrpc": "2.0", "id": 1, "method": "status"}
TOKEN = "a-long-enough-test-token"


def rpc_config(**limits: Any) -> RPCSection:
    return RPCSection(address="127.0.0.1:0", **limits)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Error in ASGI" in r.getMessage() or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def serve(**limits: Any) -> ServerThread:
    return ServerThread(SimChain(), config=rpc_config(**limits))


@pytest.fixture
def served() -> Iterator[Served]:
    with serve() as s:
        yield s


def post(url: str, body: object = STATUS, **kw: Any) -> httpx.Response:
    headers = {**JSON, **kw.pop("headers", {})}
    return httpx.post(url + "/", content=json.dumps(body).encode(), headers=headers, timeout=10, **kw)


def ws_url(s: Served) -> str:
    return s.url.replace("http://", "ws://") + "/ws"


async def ws_refused(url: str, extra_headers: list[tuple[str, str]] | None = None) -> ConnectionRejected:
    """A websocket handshake the server must refuse; fails if it is accepted. The TCP stream is ours to close:
    trio-websocket 0.12's `open_websocket_url` raises ConnectionRejected from its reader task without closing
    its own stream, which leaves the socket to the garbage collector (an unraisable ResourceWarning)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    headers = [(k.encode(), v.encode()) for k, v in extra_headers or []]
    rejected: ConnectionRejected | None = None
    async with await trio.open_tcp_stream(parts.hostname, parts.port) as stream:
        try:
            async with trio.open_nursery() as nursery:
                await wrap_client_stream(nursery, stream, parts.netloc, parts.path, extra_headers=headers)
                nursery.cancel_scope.cancel()  # accepted: stop its reader task, then fail below
        except* ConnectionRejected as group:
            rejected = next(e for e in group.exceptions if isinstance(e, ConnectionRejected))
    assert rejected is not None, f"the websocket handshake to {url} was accepted"
    return rejected


def test_foreign_host_and_origin_are_refused_the_nodes_own_are_served(served: Served, logs: Any) -> None:
    assert post(served.url).json()["result"]["chain_id"]
    port = served.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert post(served.url, headers={"host": host}).status_code == 200
    rebound = post(served.url, headers={"host": f"evil.example:{port}"})  # DNS rebinding
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == E.FORBIDDEN
    foreign = post(served.url, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]["message"]
    # The node's own page (same host and port) may call it.
    assert post(served.url, headers={"origin": served.url}).status_code == 200

    async def main() -> None:
        with trio.fail_after(15):
            await ws_refused(ws_url(served), [("Origin", "http://evil.example")])
            async with open_websocket_url(ws_url(served), extra_headers=[("Origin", served.url)]) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}))
                assert json.loads(await ws.get_message())["result"]["ok"] is True

    trio.run(main)
    no_tracebacks(logs)


def test_allowed_hosts_and_origins_come_from_the_config() -> None:
    with serve(allowed_hosts=("rpc.internal",), allowed_origins=("https://app.example",)) as s:
        assert post(s.url, headers={"host": "rpc.internal:443"}).status_code == 200
        assert post(s.url, headers={"origin": "https://app.example"}).status_code == 200
        assert post(s.url, headers={"host": "other.internal"}).status_code == 403


def test_posts_must_be_json(served: Served) -> None:
    body = json.dumps(STATUS).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        refused = httpx.post(served.url + "/", content=body, headers={"content-type": content_type}, timeout=10)
        assert refused.status_code == 415 and refused.json()["error"]["code"] == E.INVALID_REQUEST
    assert httpx.post(served.url + "/", content=body, timeout=10).status_code == 415  # none at all
    ok = httpx.post(served.url + "/", content=body, headers={"content-type": "application/json; charset=utf-8"},
                    timeout=10)
    assert ok.status_code == 200


def test_a_bearer_token_guards_every_route_but_health() -> None:
    with serve(auth_token=TOKEN) as s:
        missing = post(s.url)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == E.FORBIDDEN
        assert post(s.url, headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        assert post(s.url, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(s.url + "/health", timeout=10).status_code == 200
        assert httpx.get(s.url + "/metrics", timeout=10).status_code == 401
        with Client(s.url, token=TOKEN) as client:
            assert client.status().chain_id
        with Client(s.url, token="") as client, pytest.raises(ClientRpcError) as refused:
            client.status()
        assert refused.value.code == E.FORBIDDEN

        async def main() -> None:
            with trio.fail_after(15):
                await ws_refused(s.url.replace("http", "ws") + "/ws")
                async with open_websocket_url(s.url.replace("http", "ws") + "/ws",
                                              extra_headers=[("Authorization", f"Bearer {TOKEN}")]) as ws:
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}))
                    assert json.loads(await ws.get_message())["result"]["ok"] is True

        trio.run(main)


def test_binding_beyond_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match=r"rpc\.auth_token"):
        NodeConfig(rpc=RPCSection(address="0.0.0.0:26657"))
    NodeConfig(rpc=RPCSection(address="0.0.0.0:26657", auth_token=TOKEN))
    cfg = config_from_dict({"rpc": {"requests_per_s": 5000.0, "burst": 10000, "concurrent_per_client": 512,
                                    "websockets_per_client": 64, "subscriptions_per_client": 1024}})
    assert cfg.rpc.burst == 10000  # a load driver on the same host raises its limits here
    with pytest.raises(ConfigError, match=r"rpc\.burst"):
        config_from_dict({"rpc": {"burst": 0}})


def test_one_client_is_held_to_its_request_rate() -> None:
    with serve(requests_per_s=0.01, burst=3) as s:
        assert [post(s.url).status_code for _ in range(3)] == [200, 200, 200]
        limited = post(s.url)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == E.RATE_LIMITED

        async def main() -> None:  # websocket messages draw on the same bucket
            with trio.fail_after(15):
                async with open_websocket_url(s.url.replace("http", "ws") + "/ws") as ws:
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}))
                    assert json.loads(await ws.get_message())["error"]["code"] == E.RATE_LIMITED

        trio.run(main)


def test_one_client_is_held_to_its_requests_in_flight() -> None:
    chain = SimChain()  # no block production: a commit-mode broadcast waits
    with ServerThread(chain, config=rpc_config(concurrent_per_client=1)) as s:
        tx = chain.transfer(0, chain.account_keys[1].address, 5)

        async def main() -> None:
            async with httpx.AsyncClient(timeout=20) as client, trio.open_nursery() as nursery:
                async def waiting() -> None:
                    await client.post(s.url + "/", headers=JSON, content=json.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx",
                         "params": {"tx": tx.encode().hex(), "mode": "commit", "timeout": 5}}))

                nursery.start_soon(waiting)
                with trio.fail_after(10):
                    # The server's counter is on another thread's loop: no event to share, so look.
                    while not await trio.to_thread.run_sync(  # noqa: ASYNC110
                            lambda: s.on_loop(lambda: dict(s.server.limits.in_flight))):
                        await trio.sleep(0.01)
                second = await client.post(s.url + "/", headers=JSON, content=json.dumps(STATUS).encode())
                assert second.status_code == 429 and "in flight" in second.json()["error"]["message"]
                nursery.cancel_scope.cancel()

        trio.run(main)
        s.on_loop_async(_no_requests_in_flight, s, limit_s=10)
        assert post(s.url).status_code == 200


async def _no_requests_in_flight(s: Served) -> None:
    while s.server.limits.in_flight:  # noqa: ASYNC110 - the server releases it when it sees the close
        await trio.sleep(0.01)


def test_one_client_cannot_take_every_websocket_or_subscription(logs: Any) -> None:
    with serve(websockets_per_client=2, subscriptions_per_client=3) as s:
        url = ws_url(s)

        async def main() -> None:
            with trio.fail_after(20):
                before = await trio.to_thread.run_sync(lambda: s.on_loop(lambda: s.api.events.subscribers))
                async with open_websocket_url(url) as a, open_websocket_url(url) as b:
                    await ws_refused(url)
                    answers = []
                    for i, ws in enumerate((a, a, b, b)):
                        await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": i, "method": "subscribe",
                                                          "params": {"topic": "new_blocks"}}))
                        answers.append(json.loads(await ws.get_message()))
                    assert ["result" in x for x in answers] == [True, True, True, False]
                    assert answers[3]["error"]["code"] == E.RATE_LIMITED
                    assert await trio.to_thread.run_sync(
                        lambda: s.on_loop(lambda: s.api.events.subscribers)) == before + 3
            # Both closed: their subscriptions and connections are released.
            await trio.to_thread.run_sync(
                lambda: s.on_loop_async(s.api.events.wait_subscribers, before, limit_s=10))
            async with open_websocket_url(url) as c:
                await c.send_message(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "subscribe",
                                                 "params": {"topic": "new_blocks"}}))
                assert "result" in json.loads(await c.get_message())

        trio.run(main)
    no_tracebacks(logs)


def test_request_headers_over_the_limit_are_refused(served: Served, logs: Any) -> None:
    big = post(served.url, headers={"x-padding": "a" * 100_000})
    assert big.status_code in (400, 431)
    many = post(served.url, headers={f"x-h{i}": "b" * 1000 for i in range(80)})
    assert many.status_code == 431 and many.json()["error"]["code"] == E.INVALID_REQUEST
    assert post(served.url).status_code == 200
    no_tracebacks(logs)


def test_binary_frames_and_bad_ids_on_the_websocket_get_error_objects(served: Served, logs: Any) -> None:
    async def main() -> None:
        with trio.fail_after(15):
            async with open_websocket_url(ws_url(served)) as ws:
                await ws.send_message(b'{"jsonrpc": "2.0", "id": 1, "method": "health"}')
                answer = json.loads(await ws.get_message())
                assert answer["error"]["code"] == E.INVALID_REQUEST and "binary" in answer["error"]["message"]
                for bad_id in ([1], {"a": 1}, True):
                    for method in ("subscribe", "health"):
                        await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": bad_id, "method": method,
                                                          "params": {"topic": "new_blocks"}}))
                        answer = json.loads(await ws.get_message())
                        assert answer["id"] is None and answer["error"]["code"] == E.INVALID_REQUEST, answer
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "health"}))
                assert json.loads(await ws.get_message())["result"]["ok"] is True  # still serving

    trio.run(main)
    no_tracebacks(logs)


def test_raw_socket_with_a_huge_header_does_not_disturb_the_server(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"z" * 200_000 + b"\r\n\r\n")
        reply = sock.recv(100)
    assert reply.startswith(b"HTTP/1.1 4")
    assert post(served.url).status_code == 200


def test_a_browser_websocket_carries_the_token_as_a_subprotocol_and_the_explorer_page_is_open() -> None:
    """Browsers cannot set Authorization on a websocket: the explorer offers `bearer.<base64url(token)>` beside
    `inferchain` (node/rpc/guard.py). The right token opens it (the server selects `inferchain`); a wrong or
    malformed one is refused at the handshake. The explorer's static page needs no token; its data does."""
    def offer(token: str) -> str:
        return "bearer." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")

    with serve(auth_token=TOKEN) as s:
        url = s.url.replace("http", "ws") + "/ws"
        assert httpx.get(s.url + "/explorer", timeout=10).status_code == 200
        assert httpx.get(s.url + "/explorer/rpc.js", timeout=10).status_code == 200
        assert post(s.url).status_code == 401

        async def main() -> None:
            with trio.fail_after(15):
                for bad in (offer("wrong-token-wrong-token"), "bearer.%%%", offer(TOKEN)[:-2]):
                    await ws_refused(url, [("Sec-WebSocket-Protocol", f"inferchain, {bad}")])
                async with open_websocket_url(url, subprotocols=["inferchain", offer(TOKEN)]) as ws:
                    assert ws.subprotocol == "inferchain"
                    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}))
                    assert json.loads(await ws.get_message())["result"]["ok"] is True

        trio.run(main)
