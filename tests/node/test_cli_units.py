"""Amounts on the command line: typed with a unit (or as base units), shown in the display unit, JSON in base
units; malformed or oversized amounts are one-line errors before anything is signed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.cli import cli
from tests.node.test_cli import run_main

pytestmark = pytest.mark.node

TO = "ic1w0950e8ll6d7j0xlhhvpvnvrpej6m7c7y545hx"


def test_amounts_with_units_are_sent_exactly_and_shown_in_ifc(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.node.rpc_harness import ServerThread
    from tests.node.simchain import SimChain

    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    runner = CliRunner()
    chain = SimChain()

    def auto() -> None:
        if chain.pending:
            chain.produce()

    runner.invoke(cli, ["keys", "import", "payer", "--seed", chain.account_keys[0].seed.hex()])
    to = str(chain.account_keys[1].address)
    with ServerThread(chain, autoproduce=auto) as served:
        node = ["--node", served.url]
        common = ["--from", "payer", "--gas-limit", "1000", *node]
        sent = runner.invoke(cli, ["tx", "send", to, "2.5ifc", "--fee", "0.001ifc", *common])
        assert sent.exit_code == 0, sent.output
        assert "amount:" in sent.output and "2.5 ifc" in sent.output
        raw = runner.invoke(cli, ["tx", "send", to, "1500uifc", "--fee", "1000", "--json", *common])
        doc = json.loads(raw.output)
        assert doc["amount"] == 1500 and doc["status"] == "ok"
        shown_tx = runner.invoke(cli, ["query", "tx", doc["hash"], *node]).output
        assert "0.001 ifc" in shown_tx and "gas limit:" in shown_tx
        bare = runner.invoke(cli, ["tx", "send", to, "7", "--fee", "1000", *common])
        assert bare.exit_code == 0 and "0.000007 ifc" in bare.output
        account = json.loads(runner.invoke(cli, ["query", "account", to, "--json", *node]).output)
        assert account["balance"] == 10**12 + 2_500_000 + 1500 + 7 and account["denom"] == "uifc"
        shown = runner.invoke(cli, ["query", "account", to, *node]).output
        assert "balance: 1_000_002.501507 ifc" in shown
        payer = json.loads(runner.invoke(cli, ["query", "account", "payer", "--json", *node]).output)
        assert payer["balance"] == 10**12 - 2_500_000 - 1500 - 7 - 1000 * 3
        too_fine = runner.invoke(cli, ["tx", "send", to, "0.0000001ifc", "--fee", "1000", *common])
        assert too_fine.exit_code == 1 and "at most 6 decimals" in str(too_fine.exception)
        other_unit = runner.invoke(cli, ["tx", "send", to, "10eth", "--fee", "1000", *common])
        assert other_unit.exit_code == 1 and "unknown unit 'eth': use ifc or uifc" in str(other_unit.exception)
        assert chain.pending == [] and chain.height() == 3  # nothing signed for the refused amount


@pytest.mark.parametrize(("amount", "why"), [
    (str(2**64), "more than the largest amount, 18446744073709551615 uifc"),
    ("2.5", "a fraction needs its unit"),
    ("1,000", "is not an amount"),
])
def test_bad_amounts_are_one_line_usage_errors(tmp_path: Path, amount: str, why: str) -> None:
    result = run_main(["tx", "send", TO, amount, "--from", "nobody", "--keyring", str(tmp_path),
                       "--node", "http://127.0.0.1:9"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert why in result.stderr
