"""`POST /` served straight from ASGI messages (node/rpc/server.py, `RpcPostRoute`), on a real socket: a body
in many chunks, the answer's headers, the routes it leaves to Starlette."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from node.rpc import errors as E
from node.rpc.server import MAX_BODY_BYTES
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node

JSON = {"content-type": "application/json"}


@pytest.fixture
def served() -> Iterator[ServerThread]:
    with ServerThread(SimChain()) as s:
        yield s


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_body_in_many_chunks_is_read_whole(served: ServerThread) -> None:
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "health"} for i in range(40)]).encode()
    response = httpx.post(served.url + "/", content=_chunks(body, 7), headers=JSON, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert [a["id"] for a in response.json()] == list(range(40))


def test_a_chunked_body_over_the_limit_is_refused_with_413(served: ServerThread) -> None:
    chunk = b" " * (1024 * 1024)
    response = httpx.post(served.url + "/", content=iter([chunk] * (MAX_BODY_BYTES // len(chunk) + 2)),
                          headers=JSON, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == E.INVALID_REQUEST


def test_notifications_only_get_204_without_a_body(served: ServerThread) -> None:
    response = httpx.post(served.url + "/", json={"jsonrpc": "2.0", "method": "health"}, timeout=10)
    assert response.status_code == 204
    assert response.content == b"" and "content-length" not in response.headers


def test_other_methods_and_paths_stay_with_starlette(served: ServerThread) -> None:
    assert httpx.get(served.url + "/", timeout=10).status_code == 405
    assert httpx.post(served.url + "/nope", json={}, timeout=10).status_code == 404
    assert httpx.get(served.url + "/health", timeout=10).json()["ok"] is True
    assert httpx.post(served.url + "/", content=b"{", headers=JSON, timeout=10).json()["error"]["code"] == \
        E.PARSE_ERROR
