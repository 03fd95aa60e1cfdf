"""`model register --output NAME`: a float classifier exported by skl2onnx with its label registers its
probabilities alone, and the tolerant class's refusal of the label names that flag. The real entry point
(`main`) on a real skl2onnx export; nothing here reaches a node (the refusals come first, each one line after the CLI's `converted:` notes, and --dry-run
prices from genesis.json when the node does not answer)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from node.cli import main

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    path = tmp_path_factory.mktemp("sk") / "iris_logistic.onnx"
    model = to_onnx(pipe, x[:1], options={id(pipe.steps[-1][1]): {"zipmap": False}})
    path.write_bytes(model.SerializeToString())
    return path


def _closed_port_url() -> str:
    """An RPC address where nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _register(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["model", "register", str(path), "--name", "iris", "--class", "tolerant", "--input-shape", "X=2,4",
              "--from", "nobody", "--node", _closed_port_url(), *extra])
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert all(line.startswith("converted: ") for line in lines[:-1]), out.err  # opset 22 -> 21
    return int(exited.value.code or 0), out.out, lines[-1] if lines else ""


def test_the_label_refusal_names_the_flag_that_keeps_the_probabilities(
        exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _register(capsys, exported, "--dry-run")
    assert code == 1
    assert err.startswith("error: tolerant model reads the label of LinearClassifier")
    assert "register the other outputs alone with --output probabilities (this model's outputs: 'label', " \
           "'probabilities')" in err


def test_an_unknown_output_is_refused_with_the_models_outputs(
        exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _register(capsys, exported, "--output", "proba", "--dry-run")
    assert code == 1
    assert err == "error: --output 'proba': the model's outputs are 'label', 'probabilities'"


def test_kept_probabilities_register_without_the_label(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _register(capsys, exported, "--output", "probabilities", "--dry-run", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"].startswith("would register") and doc["chunks"] == 1
