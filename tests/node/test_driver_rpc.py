"""The devnet bench's own RPC client (bench/driver_rpc.py) against a real server: the same verdicts, status and
block hashes as the typed client, the server's errors as RpcError, a body that needs escaping still valid
JSON, no server a clear error."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.driver_rpc import DriverRpc
from node.client import Client, NodeUnreachable, RpcError
from node.rpc import errors as E
from node.rpc.methods import MAX_BROADCAST_BATCH
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node


@pytest.fixture
def served(chain: SimChain):
    with ServerThread(chain) as s:
        yield s


def test_verdicts_are_the_typed_clients(served, chain: SimChain) -> None:
    to = chain.account_keys[2].address
    good = [chain.transfer(0, to, 5, nonce=n).encode().hex() for n in range(3)]
    used = chain.transfer(1, to, 5, nonce=0)

    def commit_used() -> None:
        chain.pending.append(used)
        chain.produce()

    served.on_loop(commit_used)  # sender 1's nonce 0 is used: sent again, it is refused
    stale = used.encode().hex()
    with DriverRpc(served.url, timeout=10) as poster:
        answers = poster.broadcast([*good, stale])
        again = poster.broadcast(good[:1])  # the same kept-alive connection, a second call
    assert [a["accepted"] for a in answers] == [True, True, True, False]
    assert "nonce" in answers[3]["error"]
    assert [a["hash"] for a in answers[:3]] == [chain.pending[i].hash.hex() for i in range(3)]
    with Client(served.url) as client:
        typed = client.call("broadcast_txs", {"txs": good[:1], "mode": "sync"})
    assert again == typed


def test_status_and_block_hashes_are_the_typed_clients(served, chain: SimChain) -> None:
    def two_blocks() -> None:
        chain.produce()
        chain.pending.append(chain.transfer(0, chain.account_keys[2].address, 5))
        chain.produce()

    served.on_loop(two_blocks)
    with DriverRpc(served.url, timeout=10) as rpc, Client(served.url) as client:
        assert rpc.status() == client.status()
        for height in (1, 2, None):
            assert rpc.block_hashes(height) == client.block_hashes(height)
        assert len(rpc.block_hashes(2).tx_hashes) == 1
        with pytest.raises(RpcError) as missing:
            rpc.block_hashes(9)
        assert missing.value.code == E.NOT_FOUND


def test_server_errors_are_rpc_errors_and_odd_text_is_escaped(served, chain: SimChain) -> None:
    tx = chain.transfer(0, chain.account_keys[2].address, 5).encode().hex()
    with DriverRpc(served.url, timeout=10) as poster:
        with pytest.raises(RpcError) as too_many:
            poster.broadcast([tx] * (MAX_BROADCAST_BATCH + 1))
        assert too_many.value.code == E.INVALID_PARAMS
        # A quote, a backslash and a control character: still one valid JSON body, refused as a bad param
        # (a body joined without escaping would be a parse error instead).
        for odd in ('zz"cd', "zz\\cd", "zz\ncd"):
            with pytest.raises(RpcError) as bad:
                poster.broadcast([odd])
            assert bad.value.code == E.INVALID_PARAMS and "not hex" in str(bad.value)


def test_no_server_is_node_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with DriverRpc(f"http://127.0.0.1:{port}", timeout=2) as poster, pytest.raises(NodeUnreachable):
        poster.broadcast(["00"])
    with pytest.raises(ValueError):
        DriverRpc("https://127.0.0.1:1")


class _ClosesAfterEachAnswer(BaseHTTPRequestHandler):
    """Answers `status` as HTTP/1.1 without `Connection: close`, then drops the connection, as a server whose
    keep-alive timeout ran out while the client sat idle."""

    protocol_version = "HTTP/1.1"
    answered = 0

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).answered += 1
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": type(self).answered}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_kept_alive_connection_the_server_dropped_is_opened_again() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosesAfterEachAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with DriverRpc(f"http://127.0.0.1:{server.server_address[1]}", timeout=10) as rpc:
            assert [rpc.call("status") for _ in range(3)] == [1, 2, 3]  # each after the last connection dropped
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
