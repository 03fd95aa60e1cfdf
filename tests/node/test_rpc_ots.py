"""The explorer's RPC methods (`ots_*`) and its static route, on the real server over a real socket in front
of a small chain of real signed blocks: answers, paging caps, typed errors, and the page's security headers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.address import encode_address
from node.rpc import errors as E
from node.rpc.ots import MAX_RECENT_BLOCKS
from tests.node.rpc_harness import ServerThread
from tests.node.simchain import SimChain

pytestmark = pytest.mark.node

STATIC = Path(__file__).resolve().parents[2] / "node" / "explorer" / "static"


@pytest.fixture
def served():
    chain = SimChain()
    with ServerThread(chain) as s:
        yield s


def queue(served, make) -> object:
    """Build a transaction on the server's loop and put it in the chain's next block."""
    chain: SimChain = served.api

    def build() -> object:
        tx = make()
        chain.pending.append(tx)
        return tx

    return served.on_loop(build)


def rpc(url: str, method: str, params: object = None) -> dict:
    body: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    return httpx.post(url + "/", json=body, timeout=10).json()


def test_recent_blocks_are_newest_first_with_intervals_signers_and_a_capped_count(served) -> None:
    chain: SimChain = served.api
    to = chain.account_keys[1].address
    tx = queue(served, lambda: chain.transfer(0, to, 5))
    for _ in range(4):
        served.on_loop(chain.produce)
    blocks = rpc(served.url, "ots_recentBlocks", {"count": 3})["result"]
    assert [b["height"] for b in blocks] == [4, 3, 2]
    for b in blocks:
        h = b["height"]
        assert b["id"] == chain.blocks[h - 1].id.hex()
        assert b["interval"] == chain.blocks[h - 1].header.time - chain.blocks[h - 2].header.time
    first = rpc(served.url, "ots_recentBlocks", {"count": 100})["result"][-1]
    assert first["height"] == 1 and first["interval"] is None
    assert first["tx_hashes"] == [tx.hash.hex()] and first["txs"] == 1 and first["fees"] == tx.fee
    committed = rpc(served.url, "ots_recentBlocks", {"count": 4})["result"][1]
    signed = {s["validator"] for s in committed["signers"] if s["for_block"]}
    assert signed == {encode_address(v.address) for v in chain.validator_keys}
    for bad in (0, MAX_RECENT_BLOCKS + 1, "5", True):
        assert rpc(served.url, "ots_recentBlocks", {"count": bad})["error"]["code"] == E.INVALID_PARAMS


def test_tx_detail_decodes_an_inference_payload_and_reports_missing_txs(served) -> None:
    chain: SimChain = served.api
    tx = queue(served, lambda: chain.infer(0, [1.0, 2.0, 3.0]))
    served.on_loop(chain.produce)
    detail = rpc(served.url, "ots_txDetail", {"hash": tx.hash.hex()})["result"]
    payload = detail["payload"]
    assert payload["kind"] == "infer" and payload["model_id"] == "07" * 32
    assert payload["inputs"][0]["dtype"] == "float32" and payload["inputs"][0]["shape"] == [3]
    assert detail["height"] == 1 and detail["raw_tx"] == tx.encode().hex()
    assert rpc(served.url, "ots_txDetail", {"hash": "ab" * 32})["error"]["code"] == E.NOT_FOUND
    assert rpc(served.url, "ots_modelStats", {"model_id": "07" * 32})["error"]["code"] == E.NOT_FOUND


def test_search_names_heights_blocks_txs_and_accounts_and_refuses_oversized_queries(served) -> None:
    chain: SimChain = served.api
    to = chain.account_keys[1].address
    tx = queue(served, lambda: chain.transfer(0, to, 5))
    served.on_loop(chain.produce)
    served.on_loop(chain.produce)

    def search(q: str) -> dict:
        return rpc(served.url, "ots_search", {"query": q})["result"]

    assert search("2") == {"kind": "block", "height": 2}
    assert search("99") == {"kind": "none"}
    assert search("²") == {"kind": "none"} and search("9" * 20) == {"kind": "none"}
    assert search(chain.blocks[1].id.hex()) == {"kind": "block", "height": 2}
    assert search("0x" + tx.hash.hex().upper()) == {"kind": "tx", "hash": tx.hash.hex()}
    assert search(encode_address(to)) == {"kind": "account", "address": encode_address(to)}
    assert search("ic1notanaddress") == {"kind": "none"}
    assert search("no such model") == {"kind": "none"}
    assert rpc(served.url, "ots_search", {"query": "x" * 129})["error"]["code"] == E.INVALID_PARAMS
    assert rpc(served.url, "ots_search", {"query": "   "})["error"]["code"] == E.INVALID_PARAMS


def test_the_explorer_page_and_its_files_carry_a_strict_content_security_policy(served) -> None:
    page = httpx.get(served.url + "/explorer", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/explorer/app.js">' in page.text and "<script>" not in page.text
    script = httpx.get(served.url + "/explorer/app.js", timeout=10)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "content-security-policy" in script.headers
    # Our own scripts never turn data into markup or code (the vendored library is checked by its vectors).
    for path in sorted(STATIC.glob("*.js")):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"
    vendored = httpx.get(served.url + "/explorer/vendor/noble-ed25519.js", timeout=10)
    assert vendored.status_code == 200 and "verifyAsync" in vendored.text
    for missing in ("/explorer/nope.js", "/explorer/../node/rpc/server.py", "/explorer/%2e%2e/assets.py"):
        answer = httpx.get(served.url + missing, timeout=10)
        assert answer.status_code == 404, missing


def test_account_txs_pages_newest_first_from_the_index_and_caps_the_page(served) -> None:
    chain: SimChain = served.api
    to = chain.account_keys[1].address
    hashes = []
    for amount in range(1, 5):
        hashes.append(queue(served, lambda amount=amount: chain.transfer(0, to, amount)).hash.hex())
        served.on_loop(chain.produce)
    first = rpc(served.url, "ots_accountTxs", {"address": encode_address(to), "limit": 3})["result"]
    assert [t["hash"] for t in first["txs"]] == hashes[::-1][:3]
    assert first["txs"][0]["status"] == "ok" and first["txs"][0]["kind"] == 1
    rest = rpc(served.url, "ots_accountTxs", {"address": encode_address(to), "before": first["next"]})["result"]
    assert [t["hash"] for t in rest["txs"]] == [hashes[0]] and rest["next"] is None
    for bad in ({"limit": 26}, {"before": [1]}, {"before": [-1, 0]}, {"limit": 0}):
        answer = rpc(served.url, "ots_accountTxs", {"address": encode_address(to), **bad})
        assert answer["error"]["code"] == E.INVALID_PARAMS, bad


def test_validators_carry_their_misses_in_the_slashing_window(served) -> None:
    chain: SimChain = served.api
    served.on_loop(chain.produce)
    body = rpc(served.url, "ots_validators")["result"]
    assert {v["address"] for v in body["validators"]} == {encode_address(k.address) for k in chain.validator_keys}
    assert all(v["window_misses"] == 0 for v in body["validators"])
    assert body["miss_window"] is None  # this chain publishes no parameters
