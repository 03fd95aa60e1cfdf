"""onnx's own backend test data as registrations: each model goes through the real client path (upgrade,
canonicalize with golden outputs, the chain's pre-check) and either registers or is refused with a reason.

Shared by tests/vm/test_onnx_backend_corpus.py, bench/corpus_handoff.py and `python -m tools.backend_corpus` (which rewrites
tests/vm/backend_refusals.json from what the code does now; every entry then needs its `why` checked by hand).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from core.errors import RemoteError
from core.types import Address
from node.cli.common import CliError
from node.cli.model_cmd import prepare_model
from node.modelprep import precheck, refusal, upgrade
from vm.sandbox.limits import DEFAULT_LIMITS
from vm.txs import ModelMeta

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
# `real` holds download links only; the other four folders ship models with their test data.
FOLDERS = ("pytorch-converted", "pytorch-operator", "simple", "light")
REFUSALS = Path(__file__).resolve().parents[1] / "tests" / "vm" / "backend_refusals.json"
GRID_K, TOL_ABS, TOL_REL_PPM = 16, 32, 200
OWNER = Address(bytes(20))


@dataclass(frozen=True, slots=True)
class Case:
    name: str  # folder/model
    model_bytes: bytes
    inputs: dict[str, np.ndarray]
    expected: list[np.ndarray]


@dataclass(frozen=True, slots=True)
class Registered:
    canonical: bytes
    meta: ModelMeta
    changes: tuple[str, ...]


def case_names() -> list[str]:
    names = []
    for folder in FOLDERS:
        root = DATA / folder
        if folder == "light":
            names += [f"light/{p.stem}" for p in sorted(root.glob("*.onnx"))]
        else:
            names += [f"{folder}/{p.name}" for p in sorted(root.iterdir()) if (p / "model.onnx").exists()]
    return names


def _tensor(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def _real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def load_case(name: str) -> Case:
    folder, model_name = name.split("/", 1)
    if folder == "light":
        model_bytes = (DATA / folder / f"{model_name}.onnx").read_bytes()
        model = onnx.load_from_string(model_bytes)
        from onnx.backend.test.runner import Runner  # onnx's own dummy inputs for these models

        inputs = {v.name: Runner.generate_dummy_data(v, seed=0, name=model_name) for v in _real_inputs(model)}
        expected = [_tensor(p) for p in sorted((DATA / folder).glob(f"{model_name}_output_*.pb"))]
        return Case(name, model_bytes, inputs, expected)
    root = DATA / folder / model_name
    model_bytes = (root / "model.onnx").read_bytes()
    model = onnx.load_from_string(model_bytes)
    data = root / "test_data_set_0"
    ins = [_tensor(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    outs = [_tensor(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    names = [v.name for v in _real_inputs(model)]
    return Case(name, model_bytes, dict(zip(names, ins, strict=False)), outs)


def register(case: Case) -> Registered | str:
    """The client's registration of a corpus model (tolerant, k=16, default tolerances, shapes pinned from
    the test inputs, the test inputs as golden inputs): what would be registered, or why it is refused."""
    try:
        up = upgrade(case.model_bytes, DEFAULT_LIMITS)
        canonical, meta = prepare_model(
            up.model_bytes, name=case.name[-64:], model_class="tolerant", grid_k=GRID_K, tol_abs=TOL_ABS,
            tol_rel_ppm=TOL_REL_PPM, fee_per_call=0,
            input_shapes={k: list(v.shape) for k, v in case.inputs.items()}, golden_inputs=[case.inputs])
    except (RemoteError, CliError) as exc:  # the model (InvalidModel), its outputs, its metadata's caps
        return f"{type(exc).__name__}: {exc}"
    why = refusal(precheck(canonical, meta, DEFAULT_LIMITS, OWNER))
    if why is not None:
        return f"chain: {why}"
    return Registered(canonical, meta, up.changes)


def load_refusals() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = json.loads(REFUSALS.read_text())
    return table


def _regenerate() -> None:
    old = load_refusals() if REFUSALS.exists() else {}
    table: dict[str, dict[str, str]] = {}
    for name in case_names():
        outcome = register(load_case(name))
        print(name, "->", outcome if isinstance(outcome, str) else f"registered {outcome.changes}", flush=True)
        if isinstance(outcome, str):
            table[name] = {"reason": outcome, "why": old.get(name, {}).get("why", "TODO")}
    REFUSALS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _regenerate()
    sys.exit(0)
