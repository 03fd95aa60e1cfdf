"""A lone validator with its RPC server on a free port, and a CLI runner whose keyring holds one key: the
setup of tests that drive `inferchain` commands against a real running node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.keys import PrivateKey
from node.cli.root import cli
from node.config import RPCSection
from node.service import Node
from tests.node.helpers import local_node, make_home


def validator_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, genesis: dict[str, Any], key: PrivateKey,
                      key_name: str) -> tuple[Node, CliRunner]:
    """Validator 0 of `genesis` (in-process sandbox, RPC on 127.0.0.1:0, not started) and a runner whose
    keyring (under `tmp_path`, no passphrase) holds `key` as `key_name`."""
    home = make_home(tmp_path, "validator", genesis, validator=0)
    node = local_node(home, config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")))
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    runner = CliRunner()
    imported = runner.invoke(cli, ["keys", "import", key_name, "--seed", key.seed.hex()])
    assert imported.exit_code == 0, imported.output
    return node, runner
