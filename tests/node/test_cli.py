"""The CLI's local commands (init, keys) through click's runner, and its one-line error contract."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.keyfile import load_key
from node.cli import cli, main
from node.home import NodeHome

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    return CliRunner()


def run_main(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process: what a user sees on stderr and the exit status."""
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_keys_new_show_list(runner: CliRunner, tmp_path: Path) -> None:
    created = runner.invoke(cli, ["keys", "new", "alice", "--json"])
    assert created.exit_code == 0, created.output
    doc = json.loads(created.output)
    path = tmp_path / "keys" / "alice.json"
    assert doc["path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(load_key(path).address) == doc["address"]
    shown = runner.invoke(cli, ["keys", "show", "alice", "--json"])
    assert json.loads(shown.output)["address"] == doc["address"]
    assert "seed" not in shown.output.lower()
    listed = runner.invoke(cli, ["keys", "list"])
    assert "alice" in listed.output and doc["address"] in listed.output


def test_encrypted_key_needs_its_passphrase(runner: CliRunner, tmp_path: Path) -> None:
    made = runner.invoke(cli, ["keys", "new", "sealed", "--encrypt"], env={"INFERCHAIN_PASSPHRASE": "correct horse"})
    assert made.exit_code == 0, made.output
    doc = json.loads((tmp_path / "keys" / "sealed.json").read_text())
    assert doc["encryption"] != "none" and "seed" not in doc
    ok = runner.invoke(cli, ["keys", "show", "sealed"], env={"INFERCHAIN_PASSPHRASE": "correct horse"})
    assert ok.exit_code == 0 and "(encrypted)" not in ok.output
    assert "\nencrypted:  yes\n" in ok.output and "True" not in ok.output
    listed = runner.invoke(cli, ["keys", "list"])
    assert "(encrypted)" in listed.output


def test_keys_import_is_the_derived_devnet_key(runner: CliRunner) -> None:
    from core.keys import PrivateKey

    key = PrivateKey.derive("some published seed", "account", 3)
    out = runner.invoke(cli, ["keys", "import", "acc3", "--seed", key.seed.hex(), ])
    assert out.exit_code == 0, out.output
    assert str(key.address) in out.output


def test_key_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    env = {"INFERCHAIN_KEYRING": str(tmp_path / "keys"), "INFERCHAIN_PASSPHRASE": "right"}
    assert run_main(["keys", "new", "bob"], env).returncode == 0
    again = run_main(["keys", "new", "bob"], env)
    assert again.returncode == 1
    assert again.stderr.startswith(f"error: a key named 'bob' already exists at {tmp_path / 'keys' / 'bob.json'}; ")
    assert again.stderr.count("\n") == 1 and "never overwrites" in again.stderr
    missing = run_main(["keys", "show", "nobody"], env)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    bad_name = run_main(["keys", "new", "../escape"], env)
    assert bad_name.returncode == 1 and "Traceback" not in bad_name.stderr
    # A key file readable by others is refused with the fix in the message.
    (tmp_path / "keys" / "bob.json").chmod(0o644)
    loose = run_main(["keys", "show", "bob"], env)
    assert loose.returncode == 1 and "chmod 600" in loose.stderr
    # Wrong passphrase on an encrypted key.
    assert run_main(["keys", "new", "carol", "--encrypt"], env).returncode == 0
    wrong = run_main(["keys", "show", "carol"], {**env, "INFERCHAIN_PASSPHRASE": "wrong"})
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr


def test_encrypted_key_without_a_terminal_or_env_is_a_clear_error(runner: CliRunner) -> None:
    runner.invoke(cli, ["keys", "new", "locked", "--encrypt"], env={"INFERCHAIN_PASSPHRASE": "pw"})
    result = runner.invoke(cli, ["keys", "show", "locked"])
    assert result.exit_code != 0
    assert "INFERCHAIN_PASSPHRASE" in str(result.exception)


def test_init_creates_a_complete_home(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(cli, ["init", "--home", str(home), "--moniker", "n1", "--rpc", "127.0.0.1:36657"])
    assert result.exit_code == 0, result.output
    h = NodeHome.at(home)
    h.check()
    assert h.load_config().moniker == "n1" and h.load_config().rpc.port == 36657
    assert h.load_genesis()["chain_id"] == json.loads((REPO / "genesis.json").read_text())["chain_id"]
    key = h.load_validator_key()
    assert key is not None and str(key.address) in result.output
    assert stat.S_IMODE(h.node_key_path.stat().st_mode) == 0o600


def test_init_refuses_an_existing_home_and_force_keeps_keys(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert runner.invoke(cli, ["init", "--home", str(home)]).exit_code == 0
    before = (home / "validator_key.json").read_bytes()
    again = runner.invoke(cli, ["init", "--home", str(home)])
    assert again.exit_code != 0 and "already initialised" in str(again.exception)
    forced = runner.invoke(cli, ["init", "--home", str(home), "--force", "--moniker", "renamed"])
    assert forced.exit_code == 0, forced.output
    assert (home / "validator_key.json").read_bytes() == before
    assert NodeHome.at(home).load_config().moniker == "renamed"


def test_init_full_node_and_given_validator_key(runner: CliRunner, tmp_path: Path) -> None:
    full = runner.invoke(cli, ["init", "--home", str(tmp_path / "full"), "--no-validator-key"])
    assert full.exit_code == 0 and not (tmp_path / "full" / "validator_key.json").exists()
    runner.invoke(cli, ["keys", "new", "v"])
    given = runner.invoke(cli, ["init", "--home", str(tmp_path / "val"), "--validator-key",
                                str(tmp_path / "keys" / "v.json")])
    assert given.exit_code == 0, given.output
    assert load_key(tmp_path / "val" / "validator_key.json").address == load_key(tmp_path / "keys" / "v.json").address


def test_init_errors_are_one_line(tmp_path: Path) -> None:
    missing = run_main(["init", "--home", str(tmp_path / "h"), "--genesis", str(tmp_path / "nope.json")])
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "genesis" in missing.stderr
    (tmp_path / "bad.json").write_text("{not json")
    bad = run_main(["init", "--home", str(tmp_path / "h2"), "--genesis", str(tmp_path / "bad.json")])
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "not JSON" in bad.stderr
    wrong_rpc = run_main(["init", "--home", str(tmp_path / "h3"), "--rpc", "localhost"])
    assert wrong_rpc.returncode == 1 and "rpc.address" in wrong_rpc.stderr


def test_commands_that_need_a_node_say_which_node_they_could_not_reach(tmp_path: Path) -> None:
    result = run_main(["query", "status", "--node", "http://127.0.0.1:9"])
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot reach the node at http://127.0.0.1:9")
    bad_addr = run_main(["query", "account", "ic1notanaddress", "--node", "http://127.0.0.1:9",
                         "--keyring", str(tmp_path)])
    assert bad_addr.returncode == 1 and "neither an address nor a key" in bad_addr.stderr
    bad_hash = run_main(["query", "tx", "abc", "--node", "http://127.0.0.1:9"])
    assert bad_hash.returncode == 1 and "not a hash" in bad_hash.stderr


def test_without_node_the_cli_uses_the_running_devnet_of_this_checkout(tmp_path: Path) -> None:
    """A devnet's pid file names its nodes' RPC URLs: with a live supervisor the CLI talks to node0; with
    none alive it falls back to the standard address (and says which one it could not reach)."""
    env = {"INFERCHAIN_DEVNET_DIR": str(tmp_path)}
    env_without_node = {k: v for k, v in os.environ.items() if k != "INFERCHAIN_NODE"}
    pid_file = tmp_path / "devnet.pid"
    pid_file.write_text(json.dumps({"supervisor": os.getpid(), "nodes": {}, "rpc": {"0": "http://127.0.0.1:9"}}))
    live = subprocess.run([sys.executable, "-m", "node.cli", "query", "status"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**env_without_node, **env}, check=False)
    assert live.returncode == 1 and "cannot reach the node at http://127.0.0.1:9" in live.stderr
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file.write_text(json.dumps({"supervisor": dead.pid, "nodes": {}, "rpc": {"0": "http://127.0.0.1:9"}}))
    stale = subprocess.run([sys.executable, "-m", "node.cli", "query", "status"], cwd=REPO, capture_output=True,
                           text=True, timeout=120, env={**env_without_node, **env}, check=False)
    assert stale.returncode == 1 and "http://127.0.0.1:26657" in stale.stderr


def test_usage_errors_exit_2_with_clicks_message() -> None:
    result = run_main(["tx", "send"])
    assert result.returncode == 2 and "Usage" in result.stderr and "Traceback" not in result.stderr


def test_a_hex_address_is_refused_before_anything_is_signed(tmp_path: Path) -> None:
    """A `0x…` address is most likely another chain's: sending to the same 20 bytes read as an ic1… address
    would pay nobody the user meant, so it is a one-line error (before the key is even opened)."""
    for text in ("0x" + "ab" * 20, "ab" * 20):
        result = run_main(["tx", "send", text, "5", "--from", "nobody", "--keyring", str(tmp_path),
                           "--node", "http://127.0.0.1:9"])
        assert result.returncode == 1, result.stderr
        assert "hex address, not an Inferchain address" in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_amounts_beyond_u64_are_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_main(["tx", "send", "ic1w0950e8ll6d7j0xlhhvpvnvrpej6m7c7y545hx", str(2**64), "--from", "nobody",
                       "--keyring", str(tmp_path), "--node", "http://127.0.0.1:9"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "more than the largest amount, 18446744073709551615 uifc" in result.stderr


def test_main_maps_user_errors_to_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "show", str(tmp_path / "absent.json")])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_tx_send_and_queries_through_the_rpc(runner: CliRunner, tmp_path: Path) -> None:
    from tests.node.rpc_harness import ServerThread
    from tests.node.simchain import SimChain

    chain = SimChain()

    def auto() -> None:
        if chain.pending:
            chain.produce()

    sender = chain.account_keys[0]
    runner.invoke(cli, ["keys", "import", "payer", "--seed", sender.seed.hex()])
    to = str(chain.account_keys[1].address)
    with ServerThread(chain, autoproduce=auto) as served:
        node = ["--node", served.url]
        no_schedule = runner.invoke(cli, ["tx", "send", to, "5", "--from", "payer", *node])
        assert no_schedule.exit_code != 0 and "--gas-limit" in str(no_schedule.exception)
        sent = runner.invoke(cli, ["tx", "send", to, "5", "--from", "payer", "--gas-limit", "1000", "--fee", "1000",
                                   "--json", *node])
        assert sent.exit_code == 0, sent.output
        doc = json.loads(sent.output)
        assert doc["status"] == "ok" and doc["height"] >= 1
        account = runner.invoke(cli, ["query", "account", to, "--json", *node])
        acc = json.loads(account.output)
        assert acc["balance"] == 10**12 + 5 and acc["proof_verified"] is True
        by_name = runner.invoke(cli, ["query", "account", "payer", *node])
        assert "verified" in by_name.output and str(sender.address) in by_name.output
        tx = runner.invoke(cli, ["query", "tx", doc["hash"], "--json", *node])
        assert json.loads(tx.output)["height"] == doc["height"]
        block = runner.invoke(cli, ["query", "block", str(doc["height"]), *node])
        assert doc["hash"] in block.output
        vals = runner.invoke(cli, ["query", "validators", *node])
        assert vals.exit_code == 0 and "power=100" in vals.output and "/floor=" in vals.output
        poi = runner.invoke(cli, ["query", "poi", "--json", *node])
        assert len(json.loads(poi.output)) == 4
        refused = runner.invoke(cli, ["tx", "send", to, "5", "--from", "payer", "--gas-limit", "1000", "--fee", "1000",
                                      "--nonce", "0", *node])
        assert refused.exit_code != 0 and "nonce already used" in str(refused.exception)
