"""Governance on a real 4-validator devnet (real processes, tests/realnet): a parameter change (block gas
and a consensus timeout) and a PoI model addition pass and take effect at the same height on every node,
with the same state root, consensus reading the new values from state; the gov CLI works; a software
upgrade halts every node at its height with one line naming the version to run, and restarting them with
the upgrade enabled resumes the chain. One network serves the module; the tests run in file order."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner
from trio_websocket import open_websocket_url

from core.keys import PrivateKey
from core.types import Amount, Height
from node.cli import cli
from node.client import RpcError
from node.rpc.errors import INVALID_PARAMS, NOT_FOUND
from tests.realnet import RealNet, realnet_fixture
from vm.gov.types import (
    ParamChange,
    ParameterChangeProposal,
    PoiModelsProposal,
    SoftwareUpgradeProposal,
    SubmitProposal,
    Vote,
    VoteOption,
)
from vm.txs import build_tx

pytestmark = pytest.mark.e2e

VOTING = 10
MIN_DEPOSIT = 1_000
GAS = 100_000
NEW_MAX_BLOCK_GAS = 150_000_000

# max_tx_gas under the block gas the proposal lowers to (the calibrated default has them equal).
net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2,
                      genesis={"gov": {"voting_blocks": VOTING, "max_deposit_blocks": VOTING,
                                       "min_deposit": MIN_DEPOSIT},
                               "vm": {"max_tx_gas": 100_000_000}})


def signed(net: RealNet, key: PrivateKey, payload: Any, nonces: dict[bytes, int]) -> Any:
    address = bytes(key.address)
    if address not in nonces:
        nonces[address] = net.client(0).account(key.address).nonce
    tx = build_tx(key, payload, chain_id=net.chain_id, nonce=nonces[address], gas_limit=GAS, fee=GAS)
    nonces[address] += 1
    return tx


def submit_and_pass(net: RealNet, contents: list[Any]) -> list[dict[str, Any]]:
    """Submit each content (from accounts 4, 5, ...), have the four validator owners vote yes on all of
    them, wait past the end of their vote; the proposals as node 0 reports them."""
    nonces: dict[bytes, int] = {}
    proposals = [signed(net, net.account_key(4 + i), SubmitProposal(f"p{i}", "e2e", c, Amount(MIN_DEPOSIT)), nonces)
                 for i, c in enumerate(contents)]
    landed = net.client(0).broadcast_txs(proposals, mode="commit", timeout=60)
    ids = []
    for result in landed:
        assert result.result is not None and result.result.ok, result
        ids.append(int.from_bytes(result.result.data, "big"))
    votes = [signed(net, net.account_key(owner), Vote(pid, VoteOption.YES), nonces) for owner in range(4) for pid in ids]
    for result in net.client(0).broadcast_txs(votes, mode="commit", timeout=60):
        assert result.result is not None and result.result.ok, result
    docs = [net.client(0).call("proposal", {"id": pid}) for pid in ids]
    end = max(d["voting_end"] for d in docs)
    net.wait_height(end + 1, timeout=120)
    return [net.client(0).call("proposal", {"id": pid}) for pid in ids]


class GovEventListener:
    """A websocket subscriber to node `index`'s `gov_events` topic, in a thread of its own (trio), collecting
    notifications until `count` have arrived or `timeout_s` passes."""

    def __init__(self, net: RealNet, index: int, count: int, timeout_s: float = 120.0) -> None:
        self.url = net.spec(index).rpc_url.replace("http://", "ws://") + "/ws"
        self.count, self.timeout_s = count, timeout_s
        self.events: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self._listen,), daemon=True)
        self.thread.start()
        assert self.subscribed.wait(30), "no gov_events subscription"

    async def _listen(self) -> None:
        with trio.move_on_after(self.timeout_s):
            async with open_websocket_url(self.url) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                                  "params": {"topic": "gov_events"}}))
                assert "result" in json.loads(await ws.get_message())
                self.subscribed.set()
                while len(self.events) < self.count:
                    message = json.loads(await ws.get_message())
                    if message.get("method") == "subscription":
                        self.events.append(message["params"]["result"])

    def join(self) -> list[dict[str, Any]]:
        self.thread.join(self.timeout_s + 10)
        return self.events


def test_a_parameter_change_and_a_poi_model_take_effect_at_the_same_height_everywhere(net: RealNet) -> None:
    model_id = next(m.model_id for m in net.client(0).models() if m.name == "digits_int8")
    digits_int8 = model_id.hex()
    poi_before = net.client(0).call("params")["poi_models"]
    assert digits_int8 not in poi_before
    change = ParameterChangeProposal((ParamChange("consensus.max_block_gas", NEW_MAX_BLOCK_GAS),
                                      ParamChange("consensus.timeout_propose_ms", 4_000)))
    add = PoiModelsProposal((model_id,), ())
    listener = GovEventListener(net, 1, count=2)  # pushed as the proposals close, not polled
    done = submit_and_pass(net, [change, add])
    assert [d["status"] for d in done] == ["passed", "passed"], done
    end = done[0]["voting_end"]
    assert done[1]["voting_end"] == end  # submitted in one block: one tally height
    net.wait_height(end + 3, timeout=120)
    roots = {net.client(i).block(end).header.state_root for i in net.indices}
    assert len(roots) == 1
    for i in net.indices:
        params = net.client(i).call("params")
        assert params["consensus"]["max_block_gas"] == NEW_MAX_BLOCK_GAS
        assert params["poi_models"] == [*poi_before, digits_int8]
        assert [net.client(i).call("proposal", {"id": d["id"]})["result"] for d in done] == \
            ["passed and executed"] * 2
        assert net.client(i).call("gov_events", {"height": end}) == [
            {"proposal_id": d["id"], "status": "passed", "log": "passed and executed", "height": end} for d in done]
        # Consensus took the new timeout from state for the next height, on every node. (The block gas limit
        # is not a reap limit of the driver's: the builder and validators apply it from state, by gas used.)
        line = f"height {end + 1}: consensus parameters from state: timeout_propose_ms 3000 -> 4000\n"
        assert line in net.spec(i).log_path.read_text(), net.log_tail(i)
    assert listener.join() == net.client(0).call("gov_events", {"height": end})
    # Challenges that may now pick digits_int8 keep every validator correct (no node poses another one).
    for v in net.client(0).call("poi"):
        assert v["wrong"] == 0 and not v["jailed"], v


def test_the_gov_commands_propose_vote_and_read(net: RealNet, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    runner = CliRunner()
    url = ["--node", net.spec(0).rpc_url]
    for i in range(4):
        imported = runner.invoke(cli, ["keys", "import", f"dev{i}", "--seed", net.account_key(i).seed.hex()])
        assert imported.exit_code == 0, imported.output
    refused = runner.invoke(cli, ["gov", "propose", "param-change", "--set", "rewards.fee_burn_bps=20000",
                                  "--title", "too much", "--from", "dev0", *url])
    assert refused.exit_code == 1  # the CLI's one-line error (main() prints it; the runner keeps the exception)
    assert "invalid proposal: rewards.fee_burn_bps must be at most 10000" in str(refused.exception)
    made = runner.invoke(cli, ["gov", "propose", "text", "--title", "hello", "--from", "dev0", "--json", *url])
    assert made.exit_code == 0, made.output
    pid = json.loads(made.output)["proposal_id"]
    for i in range(3):  # into the mempool at once: the devnet's vote lasts only VOTING blocks
        voted = runner.invoke(cli, ["gov", "vote", str(pid), "yes", "--from", f"dev{i}", "--no-wait", *url])
        assert voted.exit_code == 0, voted.output

    def closed_doc() -> dict[str, Any] | None:
        shown = runner.invoke(cli, ["query", "proposal", str(pid), "--json", *url])
        doc: dict[str, Any] = json.loads(shown.output)
        return doc if doc["status"] != "voting_period" else None

    doc = net.wait_until("the vote closed", closed_doc, 60)
    assert doc["status"] == "passed" and doc["result"] == "passed and executed"
    assert doc["tally"]["yes"] * 4 == doc["tally"]["bonded"] * 3  # three of four equal validators
    listed = runner.invoke(cli, ["gov", "list", "--status", "passed", *url])
    assert f"{pid}  passed" in listed.output and "hello" in listed.output
    # Bad requests get a typed error with one line, never a crash.
    for params, code in (({"id": 10_000}, NOT_FOUND), ({"id": 0}, INVALID_PARAMS), ({"id": "1"}, INVALID_PARAMS)):
        with pytest.raises(RpcError) as err:
            net.client(0).call("proposal", params)
        assert err.value.code == code and "\n" not in str(err.value)
    with pytest.raises(RpcError) as err:
        net.client(0).call("proposals", {"status": "nonsense"})
    assert err.value.code == INVALID_PARAMS


def test_a_software_upgrade_halts_every_node_and_the_upgraded_nodes_resume(net: RealNet) -> None:
    height = net.height(0) + VOTING + 12
    (done,) = submit_and_pass(net, [SoftwareUpgradeProposal("v2", Height(height), "inferchain 0.2.0")])
    assert done["status"] == "passed", done
    assert net.client(0).call("upgrade")["plan"]["height"] == height
    net.wait_until("every node stopped at the upgrade height",
                   lambda: not any(net.is_running(i) for i in net.indices), 120)
    line = (f"upgrade 'v2' is scheduled at height {height}: this node cannot apply that block; "
            "stop and run inferchain 0.2.0")
    for i in net.indices:
        assert line in net.spec(i).log_path.read_text(), net.log_tail(i)
    # The old version restarted as it was refuses again, before it signs or stores anything of that height.
    net.devnet.start(0, extra_env=net.env)
    net.wait_until("the old version stopped again", lambda: not net.is_running(0), 60)
    assert net.spec(0).log_path.read_text().count(line) >= 2
    for i in net.indices:
        net.restart(i, env={"INFERCHAIN_UPGRADE": "v2"})
    net.wait_height(height + 2, timeout=120)
    upgrade = net.client(0).call("upgrade")
    assert upgrade == {"plan": None, "applied": [{"name": "v2", "height": height}]}
    assert len({net.client(i).block(height + 1).header.state_root for i in net.indices}) == 1
    # A node that syncs from genesis with the upgrade replays the chain across it to the same blocks.
    net.env["INFERCHAIN_UPGRADE"] = "v2"
    joined = net.add_node()
    target = net.height(0)
    net.wait_height(target, [joined], timeout=120)
    assert net.client(joined).block(target).block.id == net.client(0).block(target).block.id
