"""The client's model preparation (node/modelprep.py): old models upgraded with what changed listed, models it
cannot convert refused with the op that stopped it, the chain's registration verdict computed locally, and
`model register --dry-run` paying nothing. Also the registration golden rule of vm/engine.py: far off
refuses, near the tolerance is this node's fault."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel, LocalFault
from core.tensor import Tensor
from core.types import Address
from node.cli.model_cmd import prepare_model
from node.modelprep import check_graph, precheck, refusal, upgrade
from tools.attacks import make_model
from tools.attacks import tensor as vi
from tools.backend_corpus import DATA
from vm.engine import Engine
from vm.execute import RegisterWork
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model
from vm.sandbox.executor import LocalExecutor
from vm.sandbox.limits import DEFAULT_LIMITS
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.txs import GoldenVector, ModelMeta, split_model

pytestmark = pytest.mark.vm

F = TensorProto.FLOAT
OWNER = Address(bytes(20))


def _old_prelu() -> bytes:
    return (DATA / "pytorch-converted" / "test_PReLU_2d_multiparam" / "model.onnx").read_bytes()


def _matmul(opset: int = 13) -> bytes:
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", F, (1, 4))], [vi("y", F, None)],
                      [w], opset=opset, ir=8).SerializeToString()


def _prepared(model_bytes: bytes, model_class: str = "tolerant") -> tuple[bytes, ModelMeta]:
    return prepare_model(model_bytes, name="m", model_class=model_class, grid_k=20, tol_abs=32, tol_rel_ppm=200,
                         fee_per_call=0, input_shapes={}, golden_inputs=[])


def test_an_opset_6_model_is_upgraded_and_says_what_changed() -> None:
    up = upgrade(_old_prelu())
    model = onnx.load_from_string(up.model_bytes)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_LIMITS.min_opset]
    assert any("opset 6 -> 13" in c for c in up.changes)
    assert any("PRelu slope" in c and "[3, 1, 1]" in c for c in up.changes)  # per channel, as opset 6 meant
    assert upgrade(_matmul()).changes == ()  # already in range: nothing to say


def test_an_ir_version_above_the_range_is_lowered() -> None:
    raw = onnx.load_from_string(_matmul())
    raw.ir_version = 13  # what a newer onnx writes by default
    up = upgrade(raw.SerializeToString())
    assert onnx.load_from_string(up.model_bytes).ir_version <= DEFAULT_LIMITS.max_ir_version
    assert up.changes == ("IR version 13 -> 7",)


def test_too_old_or_unconvertible_models_are_refused_with_what_stopped_them() -> None:
    old = onnx.load_from_string(_matmul())
    old.opset_import[0].version = 5
    with pytest.raises(InvalidModel, match="opset 5 is too old"):
        upgrade(old.SerializeToString())
    # BatchNormalization with spatial=0 (per-element statistics) has no equivalent from opset 9 on.
    ones = numpy_helper.from_array(np.ones((1,), np.float32), "s")
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("BatchNormalization", ["a", "s", "s", "s", "s"], ["b"], spatial=0),
             helper.make_node("Relu", ["b"], ["y"])]
    up = make_model(nodes, [vi("x", F, (1, 1, 2, 2))], [vi("y", F, None)], [ones], opset=7, ir=4)
    with pytest.raises(InvalidModel, match=r"cannot convert opset 7 -> 13: op BatchNormalization \(opset 7\)"):
        upgrade(up.SerializeToString())


def test_the_chains_graph_rules_refuse_before_anything_runs() -> None:
    canonical, _ = _prepared(_matmul())
    with pytest.raises(InvalidModel, match="exact model has a float input"):
        check_graph(canonical, "exact", 0, 0, 0)
    with pytest.raises(InvalidModel, match="exact model has a float input"):
        _prepared(_matmul(), "exact")  # model register stops there: no session, no golden run, no fee


def test_precheck_is_the_vm_engines_verdict() -> None:
    canonical, meta = _prepared(_matmul())
    ok = precheck(canonical, meta, DEFAULT_LIMITS, OWNER)
    assert ok.accepted and ok.gas_per_call > 0 and ok.gas_load > 0
    bad = replace(meta, golden=(replace(meta.golden[0], outputs=(Tensor.from_numpy(
        meta.golden[0].outputs[0].to_numpy() + 10_000_000),)),))
    assert refusal(precheck(canonical, bad, DEFAULT_LIMITS, OWNER)) == "golden vectors do not reproduce"
    assert refusal(precheck(canonical, replace(meta, name=""), DEFAULT_LIMITS, OWNER)) == "a model needs a name"


def _with_golden_offset(meta: ModelMeta, offset: int) -> ModelMeta:
    case = meta.golden[0]
    shifted = Tensor.from_numpy(case.outputs[0].to_numpy() + offset)
    return replace(meta, golden=(GoldenVector(case.inputs, (shifted,)),))


def test_registration_golden_outputs_near_the_tolerance_are_a_local_fault_not_a_verdict() -> None:
    """Outputs within t_abs agree; beyond twice the tolerance every honest node refuses; between the two an
    honest node could land on either side, so it cannot decide (vm/engine.py)."""
    # A zero input gives zero outputs, where the tolerance is t_abs = 32 grid units exactly.
    canonical, meta = prepare_model(_matmul(), name="m", model_class="tolerant", grid_k=20, tol_abs=32,
                                    tol_rel_ppm=200, fee_per_call=0, input_shapes={},
                                    golden_inputs=[{"x": np.zeros((1, 4), np.float32)}])
    engine = Engine(LocalExecutor(), lambda _id: b"")

    def resolve(m: ModelMeta) -> object:
        work = RegisterWork(0, split_model(canonical, m)[0].model_id, OWNER, m, canonical, 1, gas_left=2**62)
        return engine.resolve_with_limits([work], DEFAULT_LIMITS)[0][0]

    assert resolve(_with_golden_offset(meta, 32)).accepted  # type: ignore[attr-defined]
    with pytest.raises(LocalFault, match="near the tolerance"):
        resolve(_with_golden_offset(meta, 50))
    far = resolve(_with_golden_offset(meta, 10_000))
    assert not far.accepted and far.log == "golden vectors do not reproduce"  # type: ignore[attr-defined]


def _unreachable_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_dry_run_prints_the_price_and_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import main

    path = tmp_path / "old.onnx"
    path.write_bytes(_old_prelu())
    with pytest.raises(SystemExit) as exited:
        main(["model", "register", str(path), "--name", "prelu", "--class", "tolerant", "--dry-run",
              "--from", str(tmp_path / "no-key.json"), "--node", _unreachable_url(), "--json"])
    out = capsys.readouterr()
    assert exited.value.code in (0, None), out.err
    doc = json.loads(out.out)
    assert doc["status"].startswith("would register") and doc["params_from"].startswith("genesis.json")
    assert doc["gas_per_call"] > 0 and doc["upload_fee"] > 0 and "opset 6 -> 13" in doc["converted"]
    assert "converted: opset 6 -> 13" in out.err


def test_dry_run_refuses_what_the_chain_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import main

    path = tmp_path / "m.onnx"
    path.write_bytes(_matmul())
    with pytest.raises(SystemExit) as exited:
        main(["model", "register", str(path), "--name", "", "--class", "tolerant", "--dry-run",
              "--from", str(tmp_path / "no-key.json"), "--node", _unreachable_url()])
    out = capsys.readouterr()
    assert exited.value.code == 1
    assert "the chain would refuse this registration: a model needs a name" in out.err


def test_an_opset_6_prelu_converted_without_the_repair_is_refused_by_the_chain() -> None:
    """What onnx's converter alone makes of pytorch's old PRelu passes ONNX's checks and shape inference, then
    fails in ONNX Runtime on every call: the checker's broadcast rule refuses it as a verdict, and the
    client's repair makes it register (the corpus test runs it)."""
    import onnx.version_converter

    converted = onnx.version_converter.convert_version(onnx.load_from_string(_old_prelu()), 13)
    canonical = canonicalize(converted.SerializeToString(), {"0": (2, 3, 4, 5)})
    spec = ModelSpec((ArraySpec("0", "float32", (2, 3, 4, 5)),), CompareMode.TOLERANT, 16, Tolerance(32, 200))
    with pytest.raises(InvalidModel, match=r"PRelu slope \[3\] does not broadcast to \[2, 3, 4, 5\]"):
        validate_model(canonical, spec)
    repaired = canonicalize(upgrade(_old_prelu()).model_bytes, {"0": (2, 3, 4, 5)})
    assert validate_model(repaired, spec).gas_per_call > 0
