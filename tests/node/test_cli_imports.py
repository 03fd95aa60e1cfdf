"""A local CLI command imports only what it uses: `keys show` and `--help` never load libp2p, ONNX Runtime,
numpy, the HTTP client or the RPC server (issue 11: those imports made every command take ~1 s). Each case
runs the real entry point in a fresh child process and reads its `sys.modules` after the command finished."""

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
from node.cli.root import COMMANDS, summary_command

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]

# Top-level packages a local command must not load.
HEAVY = ("libp2p", "onnxruntime", "onnx", "numpy", "trio", "httpx", "hypercorn", "starlette", "plyvel")

CHILD = """
import json, sys
from node.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted({m.split('.')[0] for m in sys.modules})}), file=sys.stderr)
"""


def loaded_by(args: list[str], env: dict[str, str]) -> tuple[int, set[str], str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, check=False)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["exit"], set(report["modules"]), proc.stdout


@pytest.fixture
def keyring(tmp_path: Path) -> dict[str, str]:
    env = {"INFERCHAIN_KEYRING": str(tmp_path / "keys")}
    made = CliRunner().invoke(cli, ["keys", "import", "alice", "--seed", "01" * 32], env=env)
    assert made.exit_code == 0, made.output
    return env


@pytest.mark.parametrize("args", [["--help"], ["keys", "show", "alice"], ["keys", "show", "alice", "--json"],
                                  ["keys", "list"], ["keys", "--help"]])
def test_local_commands_load_no_heavy_package(args: list[str], keyring: dict[str, str]) -> None:
    code, modules, out = loaded_by(args, keyring)
    assert code in (0, None), out
    assert out.strip()
    assert modules & set(HEAVY) == set(), f"{args} imported {sorted(modules & set(HEAVY))}"
    assert "click" in modules  # the probe sees what the command imported


def test_the_probe_sees_a_heavy_import(keyring: dict[str, str]) -> None:
    """The check above can fail: `query --help` loads its command module, which imports the HTTP client."""
    code, modules, _ = loaded_by(["query", "--help"], keyring)
    assert code in (0, None)
    assert "httpx" in modules


def test_help_summaries_are_the_commands_own() -> None:
    """`inferchain --help` lists the summaries of node.cli.root without importing the commands; each equals
    what the imported command itself would show, at any width."""
    group = cli
    assert isinstance(group, click.Group)
    ctx = click.Context(group)
    assert group.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        for limit in (30, 45, 200):
            assert summary_command(name).get_short_help_str(limit) == command.get_short_help_str(limit)


@pytest.mark.parametrize("group", ["tx", "query", "model", "gov"])
def test_a_remote_command_group_does_not_load_the_node_or_the_server(group: str, keyring: dict[str, str]) -> None:
    """A command that talks to a node needs the HTTP client, never the node's own stack: libp2p, ONNX
    Runtime, the RPC server and its methods (the client once imported the server's page size from them)."""
    code, modules, out = loaded_by([group, "--help"], keyring)
    assert code in (0, None), out
    assert modules & {"libp2p", "onnxruntime", "onnx", "hypercorn", "starlette", "plyvel"} == set()
    child = subprocess.run([sys.executable, "-c", "import sys; from node.cli import main\ntry:\n"
                            f"    main([{group!r}, '--help'])\nexcept SystemExit:\n    pass\n"
                            "print('node.rpc.methods' in sys.modules, file=sys.stderr)"],
                           cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **keyring},
                           check=False)
    assert child.stderr.strip().splitlines()[-1] == "False"


def test_devnet_status_and_up_load_neither_libp2p_nor_onnx(tmp_path: Path, keyring: dict[str, str]) -> None:
    """`devnet status` and `devnet up --detach`'s own process (it writes every home, node keys included, and
    starts the nodes) compute peer ids without libp2p (p2p.peerid) and leave ONNX to the nodes' sandbox
    workers. (In the foreground `devnet up` imports both on purpose, once, to fork its nodes from itself:
    node.devnet_fork, tests/e2e/test_devnet_cli.py.) The nodes `devnet up --detach` started are real and are
    stopped here. (Fails with node.devnet computing peer ids through p2p.identity, or node.client importing
    core.block at the top.)"""
    from node.devnet import Devnet

    root = tmp_path / "dn"
    Devnet(root, validators=1, base_port=0).prepare()
    code, modules, out = loaded_by(["devnet", "status", "--dir", str(root)], keyring)
    assert code in (0, None), out
    assert "p2p /ip4/127.0.0.1/tcp/" in out and "/p2p/12D3KooW" in out
    assert "down (not running)" in out
    # A stopped devnet is reported from refused connections (node.devnet_status): no HTTP client (httpx, and
    # trio through httpcore), so none of the heavy packages at all.
    assert modules & set(HEAVY) == set(), f"devnet status imported {sorted(modules & set(HEAVY))}"

    fresh = tmp_path / "fresh"
    try:
        code, modules, out = loaded_by(["devnet", "up", "--dir", str(fresh), "--validators", "1", "--base-port", "0",
                                        "--detach"], keyring)
        assert code in (0, None), out
        assert "detached" in out
        assert modules & {"libp2p", "onnxruntime", "onnx", "plyvel"} == set()
    finally:
        Devnet(fresh).down()
    assert not Devnet(fresh).running_pids()


def test_devnet_status_asks_a_listening_node_and_skips_a_closed_port(tmp_path: Path,
                                                                     keyring: dict[str, str]) -> None:
    """`devnet status` decides by a plain connect whether to ask a node: a port something listens on (here a
    real socket that accepts and never answers, as a hung node) is asked through the RPC client and reported
    as not answering within the timeout; a closed port is reported as unreachable without the client. (Fails
    if the connect check skipped a listening node, or if a stopped node's row lost its reason.)"""
    import socket

    from node.devnet import Devnet

    root = tmp_path / "dn"
    net = Devnet(root, validators=2, base_port=0)
    net.prepare()
    hung = socket.socket()
    try:
        hung.bind(("127.0.0.1", net.spec(0).rpc_port))
        hung.listen(8)
        code, modules, out = loaded_by(["devnet", "status", "--dir", str(root), "--json"], keyring)
    finally:
        hung.close()
    assert code in (0, None), out
    rows = {row["node"]: row for row in json.loads(out)["nodes"]}
    assert "did not answer in time" in rows[0]["error"]
    assert "cannot reach" in rows[1]["error"] and "refused" in rows[1]["error"].lower()
    assert "httpx" in modules  # the listening node was asked through the RPC client
