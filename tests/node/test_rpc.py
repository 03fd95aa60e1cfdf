"""The JSON-RPC server on a real socket: methods, error objects, malformed requests, OpenRPC, websockets."""

from __future__ import annotations

import inspect
import json

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from core.address import encode_address
from core.types import Address
from node.rpc import errors as E
from node.rpc.server import build_registry
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import CHAIN_ID, SimChain

pytestmark = pytest.mark.node

JSON = {"content-type": "application/json"}


@pytest.fixture
def served(chain: SimChain):
    def auto() -> None:
        if chain.pending:
            chain.produce()

    with ServerThread(chain, autoproduce=auto) as s:
        yield s


def rpc(url: str, method: str, params: object = None, *, req_id: object = 1) -> dict:
    body = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        body["params"] = params
    return httpx.post(url + "/", json=body, timeout=10).json()


def test_status_reports_chain_position(served) -> None:
    served.on_loop(served.api.produce)
    result = rpc(served.url, "status")["result"]
    assert result["chain_id"] == CHAIN_ID
    assert result["height"] == 1
    assert result["block_id"] == served.api.blocks[0].id.hex()
    assert rpc(served.url, "health")["result"]["ok"] is True
    assert httpx.get(served.url + "/health").json()["ok"] is True


def test_block_by_height_and_latest_carry_raw_encoding_and_commit(served) -> None:
    for _ in range(3):
        served.on_loop(served.api.produce)
    latest = rpc(served.url, "block")["result"]
    assert latest["height"] == 3
    second = rpc(served.url, "block", {"height": 2})["result"]
    assert second["id"] == served.api.blocks[1].id.hex()
    assert bytes.fromhex(second["raw"]) == served.api.blocks[1].encode()
    assert bytes.fromhex(second["commit"]) == served.api.commits[2].encode()
    positional = rpc(served.url, "block", [2])["result"]
    assert positional["id"] == second["id"]


def test_block_without_summaries_carries_only_the_raw_block_and_commit(served) -> None:
    for _ in range(2):
        served.on_loop(served.api.produce)
    full = rpc(served.url, "block", {"height": 2})["result"]
    bare = rpc(served.url, "block", {"height": 2, "summaries": False})["result"]
    assert bare == {"height": 2, "id": full["id"], "raw": full["raw"], "commit": full["commit"]}
    assert rpc(served.url, "block", {"height": 2, "summaries": True})["result"] == full
    refused = rpc(served.url, "block", {"height": 2, "summaries": "no"})["error"]
    assert refused["code"] == E.INVALID_PARAMS and "summaries" in refused["message"]


def test_block_with_hashes_carries_the_tx_hashes_and_the_last_commit_figures_only(served, chain: SimChain) -> None:
    served.on_loop(chain.produce)  # block 1: no last commit, no transaction
    def transfers_then_produce() -> None:  # on the loop, in one go: the autoproducer cannot split the block
        for i in range(3):  # senders 0, 1, 0 (the pending one counted in the nonce) to account 2
            chain.pending.append(chain.transfer(i % 2, chain.account_keys[2].address, 7))
        chain.produce()

    served.on_loop(transfers_then_produce)  # block 2: three transfers
    block = chain.blocks[1]
    assert len(block.txs) == 3 and block.last_commit is not None
    got = rpc(served.url, "block", {"height": 2, "hashes": True, "summaries": True})["result"]
    assert got == {"height": 2, "id": block.id.hex(), "time": int(block.header.time),
                   "tx_hashes": "".join(tx.hash.hex() for tx in block.txs),
                   "tx_bytes": sum(len(tx.encode()) for tx in block.txs),
                   "last_commit": {"round": int(block.last_commit.round),
                                   "precommits": len(block.last_commit.precommits)}}
    first = rpc(served.url, "block", {"height": 1, "hashes": True})["result"]
    assert first["tx_hashes"] == "" and first["tx_bytes"] == 0 and first["last_commit"] is None
    assert "tx_hashes" not in rpc(served.url, "block", {"height": 2, "hashes": False})["result"]
    refused = rpc(served.url, "block", {"height": 2, "hashes": 1})["error"]
    assert refused["code"] == E.INVALID_PARAMS and "hashes" in refused["message"]
    missing = rpc(served.url, "block", {"height": 9, "hashes": True})["error"]
    assert missing["code"] == E.NOT_FOUND


def test_missing_things_are_not_found_errors(served) -> None:
    assert rpc(served.url, "block", {"height": 99})["error"]["code"] == E.NOT_FOUND
    assert rpc(served.url, "tx", {"hash": "ab" * 32})["error"]["code"] == E.NOT_FOUND
    assert rpc(served.url, "inference", {"hash": "ab" * 32})["error"]["code"] == E.NOT_FOUND
    assert rpc(served.url, "model", {"model_id": "cd" * 32})["error"]["code"] == E.NOT_FOUND


def test_broadcast_sync_then_commit_mode_reports_the_block(served, chain: SimChain) -> None:
    to = chain.account_keys[2].address
    tx = served.on_loop(lambda: chain.transfer(0, to, 7))
    answer = rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex(), "mode": "commit", "timeout": 10})["result"]
    assert answer["accepted"] is True
    assert answer["hash"] == tx.hash.hex()
    assert answer["result"]["status"] == "ok"
    assert answer["height"] >= 1
    found = rpc(served.url, "tx", {"hash": tx.hash.hex()})["result"]
    assert found["height"] == answer["height"]
    assert bytes.fromhex(found["raw_tx"]) == tx.encode()


def test_broadcast_refusal_is_an_error_with_the_mempool_reason(served, chain: SimChain) -> None:
    served.api.refuse_reason = "fee below the minimum gas price"
    tx = served.on_loop(lambda: chain.transfer(0, chain.account_keys[1].address, 1))
    err = rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex()})["error"]
    assert err["code"] == E.TX_REJECTED
    assert "fee below the minimum gas price" in err["message"]
    assert "\n" not in err["message"]


def test_broadcast_batch_gives_one_verdict_each(served, chain: SimChain) -> None:
    to = chain.account_keys[1].address
    good = served.on_loop(lambda: chain.transfer(0, to, 1, nonce=0))
    wrong_chain = served.on_loop(lambda: chain.transfer(1, to, 1)).replace(chain_id="other")
    answer = rpc(served.url, "broadcast_txs", {"txs": [good.encode().hex(), wrong_chain.encode().hex()]})
    first, second = answer["result"]
    assert first["accepted"] is True
    assert second["accepted"] is False and "chain" in second["error"]


def test_commit_mode_times_out_with_a_timeout_error(chain: SimChain) -> None:
    with ServerThread(chain) as served:  # nothing produces blocks
        tx = served.on_loop(lambda: chain.transfer(0, chain.account_keys[1].address, 1))
        err = rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex(), "mode": "commit", "timeout": 0.3})
        assert err["error"]["code"] == E.TIMEOUT
        assert served.on_loop(lambda: chain.events.waiting) == 0


def test_commit_mode_reports_a_rejection_after_mempool_entry(chain: SimChain) -> None:
    with ServerThread(chain) as served:  # nothing produces blocks; the node evicts the transaction instead
        tx = served.on_loop(lambda: chain.transfer(0, chain.account_keys[1].address, 1))

        def evict() -> None:
            chain.reject(tx.hash, "rejected: validators disagreed")

        import threading
        timer = threading.Timer(0.3, lambda: served.on_loop(evict))
        timer.start()
        try:
            err = rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex(), "mode": "commit", "timeout": 10})
        finally:
            timer.cancel()
        assert err["error"]["code"] == E.TX_REJECTED
        assert "rejected: validators disagreed" in err["error"]["message"]


def test_tx_status_tells_committed_pending_rejected_and_unknown_apart(chain: SimChain) -> None:
    with ServerThread(chain) as served:  # blocks only when the test produces one
        to = chain.account_keys[2].address
        landed, waiting, evicted = served.on_loop(lambda: [chain.transfer(i, to, 1) for i in range(3)])
        for tx in (landed, waiting, evicted):
            assert rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex()})["result"]["accepted"] is True
        served.on_loop(lambda: chain.reject(evicted.hash, "evicted: mempool full"))
        served.on_loop(lambda: setattr(chain, "pending", [t for t in chain.pending if t.hash != waiting.hash]))
        block = served.on_loop(chain.produce)
        served.on_loop(lambda: chain.pending.append(waiting))
        hashes = [landed.hash.hex(), waiting.hash.hex(), evicted.hash.hex(), "ab" * 32]
        got = rpc(served.url, "tx_status", {"hashes": hashes})["result"]
        assert [g["hash"] for g in got] == hashes
        assert got[0] == {"hash": hashes[0], "status": "committed", "height": int(block.height), "index": 0}
        assert got[1] == {"hash": hashes[1], "status": "pending", "gapped": False}
        assert got[2] == {"hash": hashes[2], "status": "rejected", "reason": "evicted: mempool full"}
        assert got[3] == {"hash": hashes[3], "status": "unknown"}
        too_many = rpc(served.url, "tx_status", {"hashes": ["ab" * 32] * 257})["error"]
        assert too_many["code"] == E.INVALID_PARAMS and "at most 256" in too_many["message"]
        bad = rpc(served.url, "tx_status", {"hashes": ["ab" * 32, "xyz"]})["error"]
        assert bad["code"] == E.INVALID_PARAMS and "hashes[1]" in bad["message"]


def test_account_has_a_state_proof(served, chain: SimChain) -> None:
    served.on_loop(chain.produce)
    addr = str(chain.account_keys[0].address)
    result = rpc(served.url, "account", {"address": addr})["result"]
    assert result["exists"] is True and result["balance"] == 10**12
    absent = rpc(served.url, "account", {"address": encode_address(Address(b"\x00" * 20))})["result"]
    assert absent["exists"] is False and absent["value"] is None and absent["proof"]


def test_validators_and_poi(served, chain: SimChain) -> None:
    vals = rpc(served.url, "validators")["result"]
    assert len(vals["validators"]) == 4 and vals["total_power"] == 400
    scores = rpc(served.url, "poi")["result"]
    assert {s["address"] for s in scores} == {v["address"] for v in vals["validators"]}
    one = rpc(served.url, "poi", {"address": vals["validators"][0]["address"]})["result"]
    assert len(one) == 1
    stranger = str(chain.account_keys[0].address)
    assert rpc(served.url, "poi", {"address": stranger})["error"]["code"] == E.NOT_FOUND


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", E.PARSE_ERROR),
    (b"", E.PARSE_ERROR),
    (b"\xff\xfe\x00", E.PARSE_ERROR),
    (b"[" * 100_000 + b"]" * 100_000, E.PARSE_ERROR),
    (b"[]", E.INVALID_REQUEST),
    (b"42", E.INVALID_REQUEST),
    (b'"status"', E.INVALID_REQUEST),
    (b'{"id": 1, "method": "status"}', E.INVALID_REQUEST),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "status"}', E.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', E.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "status"}', E.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "no_such"}', E.METHOD_NOT_FOUND),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": "x"}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"height": -1}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"height": true}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"height": 1e400}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"heigth": 1}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "block", "params": [1, 2]}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tx", "params": {"hash": "zz"}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tx", "params": {}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "account", "params": {"address": "ic1qqqq"}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx", "params": {"tx": "00"}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx", "params": {"tx": "nothex"}}', E.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "broadcast_txs", "params": {"txs": []}}', E.INVALID_PARAMS),
])
def test_malformed_requests_get_error_objects_and_the_server_keeps_serving(served, body: bytes,
                                                                          code: int) -> None:
    response = httpx.post(served.url + "/", content=body, headers=JSON, timeout=10)
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and "\n" not in error["message"]
    assert rpc(served.url, "health")["result"]["ok"] is True


def test_bad_tx_mode_and_timeout_are_invalid_params(served, chain: SimChain) -> None:
    tx = served.on_loop(lambda: chain.transfer(0, chain.account_keys[1].address, 1))
    for params in ({"mode": "async"}, {"timeout": 0}, {"timeout": 10_000}, {"timeout": "5"}):
        err = rpc(served.url, "broadcast_tx", {"tx": tx.encode().hex(), **params})["error"]
        assert err["code"] == E.INVALID_PARAMS


def test_batch_answers_each_request_and_skips_notifications(served) -> None:
    body = [
        {"jsonrpc": "2.0", "id": "a", "method": "health"},
        {"jsonrpc": "2.0", "method": "health"},  # notification: no answer
        {"jsonrpc": "2.0", "id": "c", "method": "nope"},
        17,
    ]
    answer = httpx.post(served.url + "/", json=body, timeout=10).json()
    assert [a.get("id") for a in answer] == ["a", "c", None]
    assert "result" in answer[0]
    assert answer[1]["error"]["code"] == E.METHOD_NOT_FOUND
    assert answer[2]["error"]["code"] == E.INVALID_REQUEST
    only_notifications = httpx.post(served.url + "/", json=[{"jsonrpc": "2.0", "method": "health"}])
    assert only_notifications.status_code == 204
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "health"} for i in range(101)]
    assert httpx.post(served.url + "/", json=too_many).json()["error"]["code"] == E.INVALID_REQUEST


def test_oversized_body_is_refused(served) -> None:
    response = httpx.post(served.url + "/", content=b" " * (9 * 1024 * 1024), headers=JSON, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == E.INVALID_REQUEST


def test_openrpc_document_lists_every_registered_method_with_its_params(served) -> None:
    registry = build_registry()
    served_doc = httpx.get(served.url + "/openrpc.json").json()
    discovered = rpc(served.url, "rpc.discover")["result"]
    for doc in (served_doc, discovered):
        assert doc["openrpc"].startswith("1.")
        by_name = {m["name"]: m for m in doc["methods"]}
        assert set(by_name) == set(registry.methods)
        for name, method in registry.methods.items():
            assert [p["name"] for p in by_name[name]["params"]] == [p.name for p in method.params]
    # Every handler takes exactly the declared params (plus the bound api), so a parameter
    # cannot be added to the code without being in the spec.
    for name, method in registry.methods.items():
        signature = list(inspect.signature(method.handler).parameters)
        assert signature == ["api", *(p.name for p in method.params)], name


def test_metrics_expose_height_round_peers_mempool_and_histograms(served, chain: SimChain) -> None:
    for _ in range(3):
        served.on_loop(chain.produce)
    text = httpx.get(served.url + "/metrics").text
    assert "inferchain_height 3.0" in text
    for name in ("inferchain_round", "inferchain_peers 3.0", "inferchain_mempool_size 0.0",
                 "inferchain_poi_score 0.75", "inferchain_block_interval_seconds_count 2.0",
                 "inferchain_inference_seconds"):
        assert name in text, name


def test_websocket_subscriptions_deliver_blocks_and_tx_results(served, chain: SimChain) -> None:
    ws_url = served.url.replace("http://", "ws://") + "/ws"
    tx = served.on_loop(lambda: chain.transfer(1, chain.account_keys[0].address, 3))
    before = served.on_loop(lambda: chain.events.subscribers)  # the server's block metrics read one stream

    async def main() -> None:
        with trio.fail_after(15):
            async with open_websocket_url(ws_url) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                                  "params": {"topic": "new_blocks"}}))
                blocks_sub = json.loads(await ws.get_message())["result"]
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "subscribe",
                                                  "params": {"topic": "tx_results", "hash": tx.hash.hex()}}))
                tx_sub = json.loads(await ws.get_message())["result"]
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "subscribe",
                                                  "params": {"topic": "nope"}}))
                assert json.loads(await ws.get_message())["error"]["code"] == E.INVALID_PARAMS
                await ws.send_message("{garbage")
                assert json.loads(await ws.get_message())["error"]["code"] == E.PARSE_ERROR
                # Plain methods work over the websocket too.
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 4, "method": "health"}))
                assert json.loads(await ws.get_message())["result"]["ok"] is True
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "broadcast_tx",
                                                  "params": {"tx": tx.encode().hex()}}))
                seen: dict[str, dict] = {}
                while len(seen) < 2:
                    msg = json.loads(await ws.get_message())
                    if msg.get("method") == "subscription":
                        seen.setdefault(msg["params"]["subscription"], msg["params"]["result"])
                assert seen[tx_sub]["hash"] == tx.hash.hex()
                assert seen[tx_sub]["result"]["status"] == "ok"
                assert seen[blocks_sub]["height"] == seen[tx_sub]["height"]
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 6, "method": "unsubscribe",
                                                  "params": {"subscription": blocks_sub}}))
                while True:
                    msg = json.loads(await ws.get_message())
                    if msg.get("id") == 6:
                        assert msg["result"] is True
                        break

    trio.run(main)
    # The connection closed: its subscriptions leave the node's hub (as soon as the server sees the close).
    served.on_loop_async(chain.events.wait_subscribers, before, limit_s=10)
    assert served.on_loop(lambda: chain.events.subscribers) == before
