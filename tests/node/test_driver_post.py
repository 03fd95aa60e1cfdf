"""The devnet bench's batch sender (bench/driver_post.py) against a real server: the same verdicts as the typed
client, the server's errors as RpcError, a body that needs escaping still valid JSON, no server a clear error."""

from __future__ import annotations

import socket

import pytest

from bench.driver_post import BatchPoster
from node.client import Client, NodeUnreachable, RpcError
from node.rpc import errors as E
from node.rpc.methods import MAX_BROADCAST_BATCH
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node


@pytest.fixture
def chain() -> SimChain:
    return SimChain()


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
    with BatchPoster(served.url, timeout=10) as poster:
        answers = poster.broadcast([*good, stale])
        again = poster.broadcast(good[:1])  # the same kept-alive connection, a second call
    assert [a["accepted"] for a in answers] == [True, True, True, False]
    assert "nonce" in answers[3]["error"]
    assert [a["hash"] for a in answers[:3]] == [chain.pending[i].hash.hex() for i in range(3)]
    with Client(served.url) as client:
        typed = client.call("broadcast_txs", {"txs": good[:1], "mode": "sync"})
    assert again == typed


def test_server_errors_are_rpc_errors_and_odd_text_is_escaped(served, chain: SimChain) -> None:
    tx = chain.transfer(0, chain.account_keys[2].address, 5).encode().hex()
    with BatchPoster(served.url, timeout=10) as poster:
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
    with BatchPoster(f"http://127.0.0.1:{port}", timeout=2) as poster, pytest.raises(NodeUnreachable):
        poster.broadcast(["00"])
    with pytest.raises(ValueError):
        BatchPoster("https://127.0.0.1:1")
