"""A node whose p2p or RPC address another program holds says which address in one line and exits non-zero
(it neither runs deaf nor prints a traceback)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from node.devnet import Devnet

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("taken", ["p2p", "rpc"])
def test_a_node_that_cannot_bind_names_the_address_in_one_line_and_exits(tmp_path: Path, taken: str) -> None:
    devnet = Devnet(tmp_path / "dn", validators=4, base_port=0)
    devnet.prepare()
    spec = devnet.spec(0)
    port = spec.p2p_port if taken == "p2p" else spec.rpc_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:  # another program serving on it
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = subprocess.run([sys.executable, "-m", "node.cli", "node", "run", "--home", str(spec.home)],
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    lines = done.stderr.strip().splitlines()
    address = f"/ip4/127.0.0.1/tcp/{port}" if taken == "p2p" else f"127.0.0.1:{port}"
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert lines[-1] == (f"error: cannot listen on {address} for "
                         f"{'p2p (p2p.listen_addrs)' if taken == 'p2p' else 'RPC (rpc.address)'}: "
                         "Address already in use"), done.stderr
