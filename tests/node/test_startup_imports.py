"""Starting a node loads neither onnx nor ONNX Runtime into the node process (issue 11: start-up time).

The genesis models' checks and the PoI challenge run in the sandbox worker, which imports them anyway; the
node process would only pay ~1 s of CPU per node for them. A fresh child process builds a real node over a
new devnet home (real LevelDB, a real sandbox worker that checks the genesis models) and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
if __name__ == "__main__":
    from node.devnet import Devnet
    from node.service import Node
    net = Devnet(sys.argv[1], base_port=0)
    net.prepare()
    node = Node(net.home(0), workers=1)
    try:
        report = {"height": node.app.last_height, "loaded": sorted(
            {m.split(".")[0] for m in sys.modules} & {"onnx", "onnxruntime"})}
    finally:
        node.close()
    print(json.dumps(report))
"""


def test_a_fresh_node_checks_its_genesis_models_without_loading_onnx(tmp_path: Path) -> None:
    script = tmp_path / "start_node.py"  # a file: the sandbox's spawned worker re-reads the parent's main
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "net")], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["height"] == 0  # the genesis state was written, models checked by the worker
    assert report["loaded"] == []
