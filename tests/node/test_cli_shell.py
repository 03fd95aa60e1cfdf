"""The CLI around the commands: the keyring's place and clashes, shell completion, and --json on every
command that prints a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from node.cli import cli
from tests.node.test_cli import REPO

pytestmark = pytest.mark.node


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("INFERCHAIN_KEYRING", raising=False)
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    return CliRunner()


def test_inferchain_home_moves_the_keyring_and_the_node_home(runner: CliRunner, tmp_path: Path) -> None:
    env = {"INFERCHAIN_HOME": str(tmp_path / "ic")}
    made = runner.invoke(cli, ["keys", "new", "alice", "--json"], env=env)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["path"] == str(tmp_path / "ic" / "keys" / "alice.json")
    init = runner.invoke(cli, ["init", "--no-validator-key"], env=env)
    assert init.exit_code == 0, init.output
    assert (tmp_path / "ic" / "node" / "config.toml").is_file()
    explicit = runner.invoke(cli, ["keys", "list", "--json", "--keyring", str(tmp_path / "other")], env=env)
    assert json.loads(explicit.output) == []


def test_a_name_clash_says_the_keyring_is_shared_and_never_overwrites(runner: CliRunner, tmp_path: Path) -> None:
    keyring = ["--keyring", str(tmp_path / "keys")]
    first = runner.invoke(cli, ["keys", "new", "alice", "--json", *keyring])
    address = json.loads(first.output)["address"]
    for again in (["keys", "new", "alice", *keyring], ["keys", "import", "alice", "--seed", "11" * 32, *keyring]):
        clash = runner.invoke(cli, again)
        assert clash.exit_code == 1
        message = str(clash.exception)
        assert "already exists" in message and "never overwrites" in message and "--keyring DIR" in message
    shown = runner.invoke(cli, ["keys", "show", "alice", "--json", *keyring])
    assert json.loads(shown.output)["address"] == address  # untouched


def test_keys_import_prints_json(runner: CliRunner, tmp_path: Path) -> None:
    from core.keys import PrivateKey

    seed = "22" * 32
    done = runner.invoke(cli, ["keys", "import", "bob", "--seed", seed, "--json", "--keyring", str(tmp_path)])
    assert json.loads(done.output)["address"] == str(PrivateKey(bytes.fromhex(seed)).address)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_complete_commands_through_the_real_entry_point(shell: str) -> None:
    script = subprocess.run([sys.executable, "-m", "node.cli", "completion", shell], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert "_INFERCHAIN_COMPLETE" in script
    env = {**os.environ, "_INFERCHAIN_COMPLETE": "bash_complete", "COMP_WORDS": "inferchain tx se",
           "COMP_CWORD": "2"}
    exe = Path(sys.executable).parent / "inferchain"
    words = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=env, check=False).stdout
    assert "plain,send" in words.splitlines()


def test_every_result_printing_command_has_json() -> None:
    """--json on every query and transaction command (and the key commands), for scripts."""
    ctx = click.Context(cli)
    missing = []
    for name in ("query", "tx", "model", "keys", "infer"):
        command = cli.get_command(ctx, name)
        assert command is not None
        subs = command.commands.values() if isinstance(command, click.Group) else [command]
        missing += [f"{name} {sub.name}" for sub in subs
                    if not any(isinstance(p, click.Option) and "--json" in p.opts for p in sub.params)]
    assert missing == []
