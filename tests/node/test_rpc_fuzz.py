"""Fuzzing the JSON-RPC API from its own OpenRPC document against a real server in front of a real node (real
LevelDB and VM): every method gets parameters drawn from its declared schemas, their edges and arbitrary
JSON, by name or by position, with unknown extras. Every answer must be a JSON-RPC result or a typed error
(never -32603, never a 5xx), and nothing may reach the node's log as a traceback or an error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.config import RPCSection
from node.rpc import errors as E
from tests.node.helpers import genesis_doc, local_node, make_home
from tests.node.rpc_harness import Served, ServerThread

pytestmark = pytest.mark.node

JSON = {"content-type": "application/json"}
TYPED = set(E.CODE_NAMES) - {E.INTERNAL_ERROR}

# Limits raised as a load driver would (config.toml [rpc]): the fuzz sends hundreds of requests a second.
LOAD = RPCSection(address="127.0.0.1:0", requests_per_s=1e6, burst=1_000_000, concurrent_per_client=1000)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, Any]]]:
    node = local_node(make_home(Path(tmp_path_factory.mktemp("fuzz")), "solo", genesis_doc(1), validator=0))
    try:
        with ServerThread(node.queries, config=LOAD) as s:
            doc = httpx.get(s.url + "/openrpc.json", timeout=30).json()
            yield s, doc
    finally:
        node.app.close()
        node.db.close()


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
HEX_DIGITS = "0123456789abcdefABCDEF"


def schema_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that follow `schema`, values just outside it, and the edges of its types."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from([*schema["enum"], "", "SYNC", "bogus"])
    if kind == "integer":
        low, high = schema.get("minimum", -(2**64)), schema.get("maximum", 2**65)
        return st.integers(low - 3, min(high, low + 5000) + 3) | st.sampled_from(
            [0, 1, 2**31, 2**32, 2**63, 2**64, 2**64 + 1, -1, 3303])
    if kind == "number":
        return st.floats(-1e9, 1e9, allow_nan=False) | st.sampled_from([0, 1e308, -0.0, 121, 120])
    if kind == "string":
        return (st.text(HEX_DIGITS, min_size=60, max_size=68) | st.text(HEX_DIGITS, min_size=0, max_size=200)
                | st.text(max_size=80) | st.just("ic1" + "q" * 38) | st.just("0x" + "ab" * 32))
    if kind == "array":
        return st.lists(schema_values(schema.get("items", {})) | ANY_JSON, max_size=4)
    return ANY_JSON


@st.composite
def requests(draw: st.DrawFn, methods: list[dict[str, Any]]) -> dict[str, Any]:
    method = draw(st.sampled_from(methods))
    params: dict[str, Any] = {}
    for p in method["params"]:
        if draw(st.booleans()) or (p["required"] and draw(st.booleans())):
            params[p["name"]] = draw(schema_values(p["schema"]) | ANY_JSON)
    if draw(st.integers(0, 9)) == 0:
        params[draw(st.text(min_size=1, max_size=8))] = draw(ANY_JSON)
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(0, 2**31)), "method": method["name"]}
    shape = draw(st.sampled_from(["named", "positional", "none", "junk"]))
    if shape == "named":
        body["params"] = params
    elif shape == "positional":
        body["params"] = [params.get(p["name"]) for p in method["params"]][:draw(st.integers(0, 4))]
    elif shape == "junk":
        body["params"] = draw(ANY_JSON)
    return body


def check_answer(s: Served, body: dict[str, Any]) -> None:
    response = httpx.post(s.url + "/", json=body, headers=JSON, timeout=30)
    assert response.status_code == 200, (body, response.status_code, response.text[:300])
    answer = response.json()
    assert answer["id"] == body["id"]
    if "error" in answer:
        assert answer["error"]["code"] in TYPED, (body, answer)
        assert "\n" not in answer["error"]["message"]
    else:
        assert "result" in answer


def assert_quiet_log(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud[:3]]


def test_unknown_validator_heights_are_typed_not_found_without_a_traceback(
        served: tuple[Served, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    s, _ = served
    caplog.set_level(logging.INFO)
    for height in (0, 3303, 2**32):
        answer = httpx.post(s.url + "/", headers=JSON, timeout=30, json={
            "jsonrpc": "2.0", "id": 1, "method": "validators", "params": {"height": height}}).json()
        assert answer["error"]["code"] == E.NOT_FOUND, answer
    assert_quiet_log(caplog)


def test_every_bad_parameter_gets_a_typed_error_and_the_log_stays_quiet(
        served: tuple[Served, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    s, doc = served
    caplog.set_level(logging.INFO)
    methods = doc["methods"]
    assert {m["name"] for m in methods} >= {"status", "validators", "models", "broadcast_tx", "account"}

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(requests(methods))
    def fuzz(body: dict[str, Any]) -> None:
        check_answer(s, body)

    fuzz()
    assert_quiet_log(caplog)
