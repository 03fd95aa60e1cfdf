"""The explorer in a real browser (headless Chromium driven by Playwright) against a real 4-validator devnet.

One network and one browser serve the module. Each test opens a page of the explorer served by a node and
checks what a person would see: the page loads without console errors and follows new blocks live, search
finds a transaction, an inference's proof is checked in the page ("verified by N of M validators' power"),
the page's Ed25519 and sign-bytes agree with tests/vectors, hostile text in a link is shown, not run, and a
proposal with its deposits, votes and tally, and an account's delegation, are shown as the chain holds them;
a node with rpc.auth_token serves the page, which asks for the token.
A screenshot of each page type is saved under the directory the module prints (docs/img holds copies).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from core.address import parse_address
from core.types import Amount, PublicKeyBytes
from node.config import load_config, write_config
from tests.realnet import RealNet, realnet_fixture
from vm.gov.types import Deposit, SubmitProposal, TextProposal, Vote, VoteOption
from vm.txs import Delegate, EditValidator, build_tx

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "wire"
WAIT_MS = 30_000
NO_BROWSER = "the explorer's browser tests need Chromium: apt-get install -y chromium (make test does it as root)"

VOTING = 30  # blocks (~6 s): the page is checked while the vote runs, with room for a slow browser
HOSTILE_SUMMARY = "A text proposal from the browser test <img src=x onerror=\"document.title='pwned'\">"
MIN_DEPOSIT = 1_000
# A short vote: the proposal below is seen open (deposits, votes) and then closed (tally) within seconds.
net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2,
                      genesis={"gov": {"voting_blocks": VOTING, "max_deposit_blocks": VOTING, "min_deposit": MIN_DEPOSIT}})


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path_factory.mktemp("explorer-screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nexplorer screenshots: {where}")
    return where


@pytest.fixture(scope="module")
def sent(net: RealNet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A transfer and an inference on digits_int8, sent through the CLI and final before the first test."""
    keyring = tmp_path_factory.mktemp("keys") / "keys"

    def cli(*args: str) -> str:
        env = {**os.environ, "INFERCHAIN_KEYRING": str(keyring), "INFERCHAIN_NODE": net.spec(0).rpc_url}
        done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=90, check=False)
        assert done.returncode == 0, f"inferchain {' '.join(args)} failed: {done.stderr.strip()}"
        return done.stdout

    cli("keys", "import", "dev0", "--seed", net.account_key(0).seed.hex())
    to = str(net.account_key(7).address)
    transfer = json.loads(cli("tx", "send", to, "4242", "--from", "dev0", "--json"))
    x = (np.arange(64) % 16 * 15).astype(np.uint8).reshape(1, 64)
    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, x)
    inference = json.loads(cli("infer", "digits_int8", str(path), "--from", "dev0", "--json"))
    floats = path.with_name("x.json")
    floats.write_text(json.dumps({"x": [[(i % 16) / 16 for i in range(64)]]}))
    tolerant = json.loads(cli("infer", "digits_mlp", str(floats), "--from", "dev0", "--json"))
    assert transfer["status"] == "ok" and inference["status"] == "ok" and tolerant["status"] == "ok"
    return {"transfer": transfer, "inference": inference, "tolerant": tolerant, "to": to, "input": x}


@pytest.fixture(scope="module")
def governed(net: RealNet) -> dict[str, Any]:
    """Signed transactions, as tests/e2e/test_governance.py sends them: account 4 submits a text proposal with
    the minimum deposit, account 6 adds to it, the four validator owners vote (three yes, one no); validator
    0's owner publishes commission terms and account 5 delegates to it. The vote is still open on return.
    The summary is markup with a script handler: anyone may put such text on chain (a proposal's title and summary
    are the proposer's)."""
    client = net.client(0)
    params = rpc(net, "params")
    gas = 2 * max(int(params["vm"]["gas_stake"]), int(params["gov"]["gas_submit_proposal"]),
                  int(params["gov"]["gas_vote"]), int(params["gov"]["gas_deposit"])) + 100_000
    fee = gas * int(params["vm"]["min_gas_price"])
    nonces: dict[int, int] = {}

    def signed(account: int, payload: Any) -> Any:
        key = net.account_key(account)
        if account not in nonces:
            nonces[account] = client.account(key.address).nonce
        nonces[account] += 1
        return build_tx(key, payload, chain_id=net.chain_id, nonce=nonces[account] - 1, gas_limit=gas, fee=fee)

    def commit(txs: list[Any]) -> list[Any]:
        landed = client.broadcast_txs(txs, mode="commit", timeout=60)
        for result in landed:
            assert result.result is not None and result.result.ok, result
        return landed

    owner = str(net.account_key(0).address)
    validator = next(v for v in rpc(net, "validators")["validators"] if v["owner"] == owner)
    terms = EditValidator(PublicKeyBytes(bytes.fromhex(validator["public_key"])), 500, 2_000, 100)
    submit = SubmitProposal("Explorer shows governance", HOSTILE_SUMMARY, TextProposal(), Amount(MIN_DEPOSIT))
    landed = commit([signed(4, submit), signed(0, terms)])
    pid = int.from_bytes(landed[0].result.data, "big")
    votes = [signed(i, Vote(pid, VoteOption.NO if i == 3 else VoteOption.YES)) for i in range(4)]
    commit([signed(6, Deposit(pid, Amount(250))), signed(5, Delegate(parse_address(validator["address"]), Amount(3_000))), *votes])
    doc = rpc(net, "proposal", {"id": pid})
    assert doc["status"] == "voting_period" and len(doc["votes"]) == 4 and doc["total_deposit"] == MIN_DEPOSIT + 250
    return {"proposal": doc, "validator": validator["address"], "delegator": str(net.account_key(5).address)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(NO_BROWSER, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """One browser tab on a node's explorer that records every console error and uncaught exception."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.tab = self.context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def open(self, route: str = "") -> Any:
        response = self.tab.goto(f"{self.base}/explorer{route}")
        self.ready(route.removeprefix("#/").split("/")[0] or "home")
        return response

    def ready(self, page: str) -> None:
        """Until the page of that kind (home, tx, block, ...) has been drawn."""
        self.tab.wait_for_selector(f"body[data-page='{page}'][data-ready='1']", timeout=WAIT_MS)

    def search(self, text: str, lands_on: str) -> None:
        self.tab.fill("#q", text)
        self.tab.press("#q", "Enter")
        self.ready(lands_on)

    def until(self, what: str, check: Any) -> None:
        """Poll `check()` from here (the page's policy forbids the string predicates of wait_for_function)."""
        for _ in range(WAIT_MS // 200):
            if check():
                return
            self.tab.wait_for_timeout(200)
        raise AssertionError(f"the explorer never showed {what} within {WAIT_MS // 1000} s")

    def number(self, selector: str) -> int:
        text = str(self.tab.inner_text(selector)).split()
        return int(text[-1]) if text and text[-1].isdigit() else -1

    def text(self) -> str:
        return str(self.tab.inner_text("main"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, net: RealNet) -> Iterator[Page]:
    p = Page(browser, net.spec(1).rpc_url.rstrip("/"))
    try:
        yield p
    finally:
        p.close()


def rpc(net: RealNet, method: str, params: dict[str, Any] | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    answer = httpx.post(net.spec(0).rpc_url, json=body, timeout=10).json()
    assert "error" not in answer, answer
    return answer["result"]


def test_the_index_scores_poi_exactly_as_the_chain_does(net: RealNet) -> None:
    """The heat strip's data (node/chainindex.py) against the validators' PoI counters in state: summed over
    every scored challenge, each validator's correct / wrong / absent outcomes equal its counters."""
    net.wait_height(6, [0])  # a few challenges scored
    vals = rpc(net, "validators")
    latest = vals["height"] - 1  # the records are read at this height: challenges up to latest - 2 are scored
    assert latest - 2 <= 100, "the chain outgrew one ots_recentBlocks page before this test ran"

    def indexed() -> list[dict[str, Any]] | None:
        blocks = rpc(net, "ots_recentBlocks", {"count": 100})
        scored = [b for b in blocks if b["height"] <= latest - 2]
        return scored if all(b["poi"] is not None for b in scored) else None

    scored = net.wait_until("the index to score every challenge up to the validators' height", indexed, 30)
    assert min(b["height"] for b in scored) == 1
    for v in vals["validators"]:
        outcomes = [p["outcome"] for b in scored for p in b["poi"] if p["validator"] == v["address"]]
        counted = {o: outcomes.count(o) for o in ("correct", "wrong", "absent")}
        assert counted == {"correct": v["poi"]["correct"], "wrong": v["poi"]["wrong"],
                           "absent": v["poi"]["missed"]}, v["address"]
    assert sum(v["poi"]["correct"] for v in vals["validators"]) > 0


def test_home_loads_without_console_errors_and_follows_new_blocks_live(page: Page, net: RealNet, sent: dict[str, Any],
                                                                      shots: Path) -> None:
    response = page.open()
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.tab.wait_for_selector("#live.live", timeout=WAIT_MS)
    page.tab.wait_for_selector("#head:has-text('head')", timeout=WAIT_MS)
    first = page.number("#head")
    page.until("three new heads", lambda: page.number("#head") > first + 2)
    # The list of latest blocks is redrawn from the live feed: its top row follows the head.
    page.until("a newer block in the list", lambda: page.number("table.blocks tbody tr td") > first)
    # The heat strip shows scored PoI answers (the index scores challenge h once block h+2 reveals it).
    assert page.tab.locator("svg.heat rect.cell.correct").count() > 0
    assert page.tab.locator("svg.chart").count() == 2
    assert "Latest transactions" in page.text()
    page.tab.screenshot(path=str(shots / "explorer-home.png"), full_page=True)
    assert page.errors == []


def test_search_finds_a_transaction_by_hash_and_its_block_by_height_and_hash(page: Page, net: RealNet,
                                                                           sent: dict[str, Any],
                                                                           shots: Path) -> None:
    transfer = sent["transfer"]
    page.open()
    page.search(transfer["hash"], "tx")
    assert page.tab.url.endswith(f"#/tx/{transfer['hash']}")
    text = page.text()
    assert transfer["hash"] in text and sent["to"] in text and "transfer" in text and "4242" in text
    page.tab.screenshot(path=str(shots / "explorer-tx.png"), full_page=True)

    page.search(str(transfer["height"]), "block")
    assert page.tab.url.endswith(f"#/block/{transfer['height']}")
    block_id = net.client(0).block(transfer["height"]).block.id.hex()
    assert block_id in page.text() and transfer["hash"][:16] in page.text()
    page.tab.screenshot(path=str(shots / "explorer-block.png"), full_page=True)
    page.open("#/tx/" + transfer["hash"])
    page.search(block_id, "block")
    assert page.tab.url.endswith(f"#/block/{transfer['height']}")
    page.tab.fill("#q", "no-such-thing")
    page.tab.press("#q", "Enter")
    page.tab.wait_for_selector("#search-note:has-text('nothing found')", timeout=WAIT_MS)
    assert page.errors == []


def test_an_inference_shows_its_inputs_outputs_and_a_proof_verified_in_the_page(page: Page, net: RealNet,
                                                                              sent: dict[str, Any],
                                                                              shots: Path) -> None:
    inference = sent["inference"]
    page.open(f"#/tx/{inference['hash']}")
    proof = page.tab.wait_for_selector("#proof.verified, #proof.failed", timeout=WAIT_MS)
    vals = net.client(0).validators(inference["height"])
    total = sum(v.power for v in vals.validators)
    shown = re.match(rf"verified by (\d+) of {total} validators' power", proof.inner_text())
    assert shown is not None, proof.inner_text()
    assert 3 * int(shown.group(1)) > 2 * total
    grids = page.tab.locator("table.grid")
    assert grids.count() == 2
    shown_in = [int(c) for c in grids.nth(0).locator("td").all_inner_texts()]
    assert shown_in == sent["input"].reshape(-1).tolist()
    shown_out = [float(c) for c in grids.nth(1).locator("td").all_inner_texts()]
    assert shown_out == [float(v) for v in np.asarray(inference["outputs"][0]["values"]).reshape(-1)]
    page.tab.screenshot(path=str(shots / "explorer-inference.png"), full_page=True)

    # A float model's outputs are committed on a grid; the page shows them as q / 2^k, as the CLI does.
    tolerant = sent["tolerant"]
    page.open(f"#/tx/{tolerant['hash']}")
    page.tab.wait_for_selector("#proof.verified", timeout=WAIT_MS)
    shown = [float(c) for c in page.tab.locator("table.grid").nth(1).locator("td").all_inner_texts()]
    assert shown == [float(v) for v in np.asarray(tolerant["outputs"][0]["values"]).reshape(-1)]
    assert "shown as q / 2^" in page.text()
    assert page.errors == []


def test_account_validator_and_model_pages(page: Page, net: RealNet, sent: dict[str, Any], shots: Path) -> None:
    page.open(f"#/account/{sent['to']}")
    balance = net.client(0).account(sent["to"]).balance
    assert str(balance) in page.text()
    # Its recent transactions come from the node's index: the transfer it received is listed.
    assert page.tab.locator(f"table.account-txs a[href='#/tx/{sent['transfer']['hash']}']").count() == 1
    page.tab.screenshot(path=str(shots / "explorer-account.png"), full_page=True)
    page.open("#/validators")
    assert page.tab.locator("table.validators tbody tr").count() == 4
    assert "misses in window" in page.tab.inner_text("table.validators thead")
    page.tab.screenshot(path=str(shots / "explorer-validators.png"), full_page=True)
    page.search("digits_int8", "model")
    assert "Model digits_int8" in page.text()
    assert sent["inference"]["model_id"] in page.text()
    calls = page.tab.locator("table.facts tr:has(th:text-is('calls')) td").inner_text()
    assert int(calls) >= 1  # the inference sent above, counted by the node's index
    page.tab.screenshot(path=str(shots / "explorer-model.png"), full_page=True)
    assert page.errors == []


def test_the_pages_ed25519_and_sign_bytes_match_the_spec_vectors(page: Page) -> None:
    """verify.js against tests/vectors: each vote's sign-bytes cut from its encoding, its signature checked,
    a flipped bit refused, and each transaction's hash."""
    page.open()
    votes = json.loads((VECTORS / "core.votes.Vote.json").read_text())["cases"]
    txs = json.loads((VECTORS / "core.tx.Transaction.json").read_text())["cases"]
    chain_id = json.loads((VECTORS / "core.header.Header.json").read_text())["cases"][0]["value"]["chain_id"]
    answer = page.tab.evaluate("""async ([votes, txs, chainId]) => {
        const v = await import('/explorer/verify.js');
        const m = await import('/explorer/msgpack.js');
        const ed = await import('/explorer/vendor/noble-ed25519.js');
        const out = [];
        for (const c of votes) {
            const bytes = v.fromHex(c.encoding.replaceAll(' ', ''));
            const node = m.decode(bytes);
            const sb = v.voteSignBytes(bytes, node, chainId);
            const sig = v.fromHex(c.value.signature), key = v.fromHex(c.value.validator);
            const bad = sb.slice(); bad[bad.length - 1] ^= 1;
            out.push([c.name, v.toHex(sb), await ed.verifyAsync(sig, sb, key), await ed.verifyAsync(sig, bad, key)]);
        }
        for (const c of txs) {
            out.push([c.name, v.toHex(await v.sha256(v.fromHex(c.encoding.replaceAll(' ', ''))))]);
        }
        return out;
    }""", [votes, txs, chain_id])
    for case, got in zip(votes, answer[:len(votes)], strict=True):
        assert got == [case["name"], case["sign_bytes"].replace(" ", ""), True, False]
    for case, got in zip(txs, answer[len(votes):], strict=True):
        assert got == [case["name"], case["ids"]["tx_hash"]]
    assert page.errors == []


def test_hostile_text_in_a_link_is_shown_as_text_never_run(page: Page) -> None:
    """Attack: a crafted explorer link whose address is markup; the node's error echoes it back. The page
    must show it as text (textContent), so no element is created and no handler runs."""
    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    page.open("#/account/" + hostile)
    page.tab.wait_for_selector("main p.error", timeout=WAIT_MS)
    assert page.tab.locator("main img").count() == 0
    assert page.tab.title() == "Inferchain explorer"
    assert page.tab.evaluate("document.querySelector('main').innerHTML.includes('<img')") is False
    # And were markup ever to get in, the content-security policy stops inline script: the browser refuses it.
    violated = page.tab.evaluate("""() => new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), {once: true});
        const s = document.createElement('script');
        s.textContent = "document.title = 'pwned'";
        document.body.append(s);
        setTimeout(() => resolve('no violation'), 5000);
    })""")
    assert violated.startswith("script-src") and page.tab.title() == "Inferchain explorer"


def test_governance_list_and_proposal_page_show_the_proposal_its_deposits_votes_and_tally(
        page: Page, net: RealNet, governed: dict[str, Any], shots: Path) -> None:
    p = governed["proposal"]
    page.open()
    page.tab.click("header nav a[href='#/governance']")
    page.ready("governance")
    row = page.tab.locator(f"table.proposals tbody tr:has(a[href='#/proposal/{p['id']}'])")
    assert row.locator("td").all_inner_texts() == [
        f"#{p['id']}", p["title"], "text", "voting period", str(p["total_deposit"]), str(p["voting_end"]), "voting"]

    # While the vote runs: its deposits and votes, and the tally so far.
    row.locator("a").first.click()
    page.ready("proposal")
    text = page.text()
    assert f"Proposal #{p['id']}: {p['title']}" in text and "Tally so far" in text
    # Attack: the proposer's summary is markup; the page shows it as text, creates no element, runs nothing.
    assert HOSTILE_SUMMARY in text and page.tab.locator("main img").count() == 0
    assert page.tab.title() == "Inferchain explorer"
    depositors = page.tab.locator("table.deposits tbody tr td:first-child a").evaluate_all(
        "links => links.map((a) => a.getAttribute('href'))")
    assert depositors == [f"#/account/{d['depositor']}" for d in p["deposits"]] and len(depositors) == 2
    options = page.tab.locator("table.votes tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(options) == ["no", "yes", "yes", "yes"]
    page.tab.screenshot(path=str(shots / "explorer-governance.png"), full_page=True)

    # Closed: the list and the page show the result and the final tally.
    net.wait_height(p["voting_end"] + 1, [1], timeout=60)
    closed = rpc(net, "proposal", {"id": p["id"]})
    tally = closed["tally"]
    assert closed["status"] == "passed" and tally["yes"] > 0 and tally["no"] > 0, closed
    page.open("#/governance")
    row = page.tab.locator(f"table.proposals tbody tr:has(a[href='#/proposal/{p['id']}'])")
    assert row.locator("td").all_inner_texts()[3:] == [
        "passed", str(p["total_deposit"]), str(p["voting_end"]),
        f"yes {tally['yes']}, no {tally['no']}, veto 0, abstain 0 of {tally['bonded']} bonded"]
    page.tab.screenshot(path=str(shots / "explorer-governance-list.png"), full_page=True)
    page.open(f"#/proposal/{p['id']}")
    assert "passed and executed" in page.text()
    assert int(page.tab.locator("table.facts tr:has(th:text-is('yes')) td").inner_text()) == tally["yes"]

    # The search box takes a proposal id with its prefix ('#3', 'proposal 3'); a bare number stays a height.
    page.search(f"#{p['id']}", "proposal")
    assert page.tab.url.endswith(f"#/proposal/{p['id']}")
    page.open()
    page.search(f"Proposal {p['id']}", "proposal")
    page.tab.fill("#q", "#999999")
    page.tab.press("#q", "Enter")
    page.tab.wait_for_selector("#search-note:has-text('nothing found')", timeout=WAIT_MS)
    assert page.errors == []


def test_an_accounts_page_lists_its_delegations(page: Page, net: RealNet, governed: dict[str, Any],
                                               shots: Path) -> None:
    page.open(f"#/account/{governed['delegator']}")
    rows = page.tab.locator("table.delegations tbody tr")
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()
    assert rows.first.locator(f"a[href='#/account/{governed['validator']}']").count() == 1
    assert cells[1] == "3000" and int(cells[2]) >= 0 and cells[3] == "5 %"
    assert "delegate" in page.tab.inner_text("table.account-txs")
    page.tab.screenshot(path=str(shots / "explorer-delegations.png"), full_page=True)
    # The validators view splits each validator's stake into its owner's and the delegated part.
    page.open("#/validators")
    row = page.tab.locator("table.list tbody tr", has=page.tab.locator(f"a[href='#/account/{governed['validator']}']"))
    stake, own, delegated, commission = row.first.locator("td").all_inner_texts()[2:6]
    assert int(own) + int(delegated) == int(stake) and int(delegated) >= 3000 and commission == "5 %"
    assert page.errors == []


def test_a_token_protected_nodes_explorer_asks_for_the_token_and_then_shows_the_chain(
        browser: Any, net: RealNet, shots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node with rpc.auth_token (a fourth-plus node of the same chain) serves the page, which asks for the
    token: a wrong one gets a clear refusal, the right one shows the chain, live over the websocket (the
    token in its subprotocol). The token is kept in sessionStorage, never in localStorage or the URL."""
    token = "explorer-browser-token-0123456789"
    index = net.add_node(start=False)
    config_path = net.spec(index).home / "config.toml"
    config = load_config(config_path)
    write_config(config_path, dataclasses.replace(config, rpc=dataclasses.replace(config.rpc, auth_token=token)))
    monkeypatch.setenv("INFERCHAIN_RPC_TOKEN", token)  # the harness's own client for this node
    net.restart(index)
    page = Page(browser, net.spec(index).rpc_url.rstrip("/"))
    try:
        assert httpx.post(net.spec(index).rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "status"},
                          timeout=10).status_code == 401
        page.tab.goto(f"{page.base}/explorer")
        page.ready("token")
        assert "requires its RPC token" in page.tab.inner_text("#token-note")
        page.tab.fill("#token", "not-the-token-not-the-token")
        page.tab.press("#token", "Enter")
        page.tab.wait_for_selector("#token-note:has-text('refused this token')", timeout=WAIT_MS)
        page.ready("token")
        page.tab.screenshot(path=str(shots / "explorer-token.png"), full_page=True)
        page.errors.clear()  # the refusals above are the node's 401s, as they should be
        page.tab.fill("#token", token)
        page.tab.press("#token", "Enter")
        page.ready("home")
        page.tab.wait_for_selector("#live.live", timeout=WAIT_MS)  # the websocket took the token too
        first = page.number("#head")
        page.until("a new head over the websocket", lambda: page.number("#head") > first)
        assert page.tab.locator("table.blocks tbody tr").count() > 0
        assert page.tab.evaluate("sessionStorage.getItem('inferchain.rpcToken')") == token
        assert page.tab.evaluate("localStorage.length") == 0
        assert token not in page.tab.url
        assert page.errors == []
    finally:
        page.close()
        net.stop(index)
