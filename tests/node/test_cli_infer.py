"""`inferchain infer`: inputs are matched to the registered model's spec strictly by name, dtype and shape;
every mismatch is a one-line error before anything is signed, and `--cast` opts in to safe casts. Through
the CLI, against a real RPC server on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from core.tensor import DType
from core.types import Address, Amount, Gas, Hash32, Height
from node.cli import cli
from node.rpc.api import ModelView
from tests.node.rpc_harness import Served, ServerThread
from tests.node.simchain import SimChain
from vm.state import ModelRecord
from vm.txs import Infer, ModelClass, ModelMeta, TensorSpec

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]


def spec(name: str, dtype: DType, *shape: int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))


def record(name: str, *inputs: TensorSpec) -> ModelRecord:
    meta = ModelMeta(name, inputs, (spec("y", DType.FLOAT32, 1),), ModelClass.TOLERANT, 20, 32, 200, Amount(0), ())
    return ModelRecord(Address(b"\x01" * 20), meta, Hash32(b"\x02" * 32), 1000, 1, Gas(100), Height(0), Gas(0))


TWO = record("two", spec("a", DType.FLOAT32, 1, 4), spec("b", DType.UINT8, 2))
ONE = record("one", spec("x", DType.FLOAT32, 1, 4))
IDS = {"two": Hash32(b"\x22" * 32), "one": Hash32(b"\x11" * 32)}


class ModelChain(SimChain):
    """The RPC test chain with two registered models (their records are all the CLI reads)."""

    def model(self, model_id: Hash32) -> ModelView | None:
        for name, rec in (("two", TWO), ("one", ONE)):
            if bytes(model_id) == bytes(IDS[name]):
                return ModelView(IDS[name], rec.encode(), rec)
        return None

    def models(self, after: Hash32 | None = None, limit: int = 100) -> list[ModelView]:
        return [ModelView(IDS[n], r.encode(), r) for n, r in (("two", TWO), ("one", ONE))]

    def model_name(self, name: str) -> Hash32 | None:
        return IDS.get(name)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModelChain, Served, CliRunner]]:
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    chain = ModelChain()
    runner = CliRunner()
    imported = runner.invoke(cli, ["keys", "import", "payer", "--seed", chain.account_keys[0].seed.hex()])
    assert imported.exit_code == 0, imported.output
    with ServerThread(chain) as s:
        yield chain, s, runner


def infer(runner: CliRunner, url: str, model: str, path: Path, *extra: str) -> Result:
    return runner.invoke(cli, ["infer", IDS[model].hex(), str(path), "--from", "payer", "--gas-limit", "100000",
                               "--fee", "100000", "--no-wait", "--node", url, *extra])


def refused(result: Result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    message = str(result.exception)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_inputs_are_matched_by_name_not_position(served: tuple[ModelChain, Served, CliRunner],
                                                 tmp_path: Path) -> None:
    chain, s, runner = served
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    b = np.array([7, 9], dtype=np.uint8)
    path = tmp_path / "swapped.npz"
    np.savez(path, b=b, a=a)  # stored in the other order: the names decide
    ok = infer(runner, s.url, "two", path)
    assert ok.exit_code == 0, ok.output
    sent = Infer.decode(chain.pending[-1].payload).inputs
    assert np.array_equal(sent[0].to_numpy(), a) and np.array_equal(sent[1].to_numpy(), b)

    positional = tmp_path / "positional.npz"
    np.savez(positional, a, b)  # arr_0, arr_1
    refused(infer(runner, s.url, "two", positional), "unknown input 'arr_0'", "'a', 'b'")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, a=a, c=b)
    refused(infer(runner, s.url, "two", wrong), "unknown input 'c'")
    missing = tmp_path / "missing.npz"
    np.savez(missing, a=a)
    refused(infer(runner, s.url, "two", missing), "missing input 'b'")
    lone = tmp_path / "lone.npy"
    np.save(lone, a)
    refused(infer(runner, s.url, "two", lone), "takes 2 inputs")
    assert len(chain.pending) == 1  # nothing was signed and sent for any refusal


def test_dtype_and_shape_must_match_and_cast_is_an_explicit_safe_opt_in(
        served: tuple[ModelChain, Served, CliRunner], tmp_path: Path) -> None:
    chain, s, runner = served
    f64 = tmp_path / "f64.npy"
    np.save(f64, np.array([[0.5, 1.5, 2.5, 3.25]], dtype=np.float64))
    refused(infer(runner, s.url, "one", f64), "float64", "float32", "--cast")
    assert infer(runner, s.url, "one", f64, "--cast").exit_code == 0
    assert Infer.decode(chain.pending[-1].payload).inputs[0].to_numpy().dtype == np.float32

    i64 = tmp_path / "i64.npy"
    np.save(i64, np.array([[1, 2, 3, 4]], dtype=np.int64))
    refused(infer(runner, s.url, "one", i64), "int64")
    big = tmp_path / "big.npy"
    np.save(big, np.array([[1, 2, 3, 2**40 + 1]], dtype=np.int64))
    refused(infer(runner, s.url, "one", big, "--cast"), "no exact float32")
    f16 = tmp_path / "f16.npy"
    np.save(f16, np.ones((1, 4), dtype=np.float16))
    refused(infer(runner, s.url, "one", f16), "float16")

    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(4, dtype=np.float32))  # [4] is not [1, 4]
    refused(infer(runner, s.url, "one", flat), "shape [4]", "[1, 4]")
    refused(infer(runner, s.url, "one", flat, "--cast"), "shape [4]")

    fractions = tmp_path / "fractions.npz"
    np.savez(fractions, a=np.ones((1, 4), dtype=np.float32), b=np.array([1.5, 2.0]))
    refused(infer(runner, s.url, "two", fractions, "--cast"), "uint8", "fractional")
    bools = tmp_path / "bools.npz"
    np.savez(bools, a=np.ones((1, 4), dtype=np.float32), b=np.array([True, False]))
    refused(infer(runner, s.url, "two", bools, "--cast"), "booleans")
    wide = tmp_path / "wide.npz"
    np.savez(wide, a=np.ones((1, 4), dtype=np.float32), b=np.array([1, 300], dtype=np.int64))
    refused(infer(runner, s.url, "two", wide, "--cast"), "out of its range")
    assert len(chain.pending) == 1


@pytest.mark.parametrize(("doc", "words"), [
    ({"a": [[1, 2, 3, True]], "b": [1, 2]}, ("'a'", "boolean")),
    ({"a": [[1, 2, 3, "4"]], "b": [1, 2]}, ("'a'", "a string")),
    ({"a": [[1, 2, 3, None]], "b": [1, 2]}, ("'a'", "null")),
    ({"a": [[1, 2, 3, {"v": 4}]], "b": [1, 2]}, ("'a'", "an object")),
    ({"a": [[1, 2, 3]], "b": [1, 2]}, ("'a'", "shape [1, 3]")),
    ({"a": [[1, 2], [3]], "b": [1, 2]}, ("'a'", "ragged")),
    ({"a": [[1, 2, 3, 1e39]], "b": [1, 2]}, ("'a'", "outside float32")),
    ({"a": [[1, 2, 3, 16777217]], "b": [1, 2]}, ("'a'", "cannot hold exactly")),
    ({"a": [[1, 2, 3, 4]], "b": [1, 256]}, ("'b'", "outside uint8")),
    ({"a": [[1, 2, 3, 4]], "b": [1, 2.5]}, ("'b'", "2.5", "integers")),
    ({"a": [[1, 2, 3, 4]], "b": [1, 2], "c": [0]}, ("unknown input 'c'",)),
    ([[1, 2, 3, 4]], ("takes 2 inputs",)),
])
def test_json_values_are_checked_for_the_declared_dtype(served: tuple[ModelChain, Served, CliRunner],
                                                        tmp_path: Path, doc: object, words: tuple[str, ...]) -> None:
    chain, s, runner = served
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(doc))
    refused(infer(runner, s.url, "two", path), *words)
    assert chain.pending == []


def test_json_numbers_are_parsed_for_each_input(served: tuple[ModelChain, Served, CliRunner],
                                                tmp_path: Path) -> None:
    chain, s, runner = served
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"b": [3, 255], "a": [[0.5, 1, -2, 1e-3]]}))
    ok = infer(runner, s.url, "two", path)
    assert ok.exit_code == 0, ok.output
    a, b = Infer.decode(chain.pending[-1].payload).inputs
    assert a.to_numpy().dtype == np.float32 and b.to_numpy().tolist() == [3, 255]
    path.write_text("[[1, 2, NaN, 4]]")
    refused(infer(runner, s.url, "one", path), "cannot read inputs", "NaN")


def test_the_real_entry_point_prints_one_line_and_no_traceback(served: tuple[ModelChain, Served, CliRunner],
                                                               tmp_path: Path) -> None:
    chain, s, _ = served
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"a": [["x", 1, 2, 3]], "b": [1, 2]}))
    done = subprocess.run([sys.executable, "-m", "node.cli", "infer", IDS["two"].hex(), str(path), "--from", "payer",
                           "--gas-limit", "100000", "--fee", "100000", "--no-wait", "--node", s.url], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "a string" in done.stderr and chain.pending == []


def test_model_register_refuses_a_taken_name_before_any_fee(served: tuple[ModelChain, Served, CliRunner],
                                                            tmp_path: Path) -> None:
    """Names are first come per chain (the VM refuses a taken one at the first chunk, for that chunk's fee);
    the CLI checks the registry first so the user pays nothing."""
    from vm.models import load_model

    chain, s, runner = served
    path = tmp_path / "m.onnx"
    path.write_bytes(load_model("digits_mlp").model_bytes)
    result = runner.invoke(cli, ["model", "register", str(path), "--name", "one", "--class", "tolerant",
                                 "--from", "payer", "--node", s.url])
    refused(result, "the model name 'one' is taken", "choose another --name")
    assert chain.pending == []
    shown = runner.invoke(cli, ["model", "show", "one", "--node", s.url])
    assert shown.exit_code == 0 and "fee per call:" in shown.output and "0 ifc" in shown.output
