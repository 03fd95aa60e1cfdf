"""The committed demo and proof-of-inference models, with golden vectors and a manifest.

`load_model(name)` returns the bytes (sha256-checked against manifest.json), the registration spec and the
golden vectors; `tools.models` rebuilds them all deterministically. Names: digits_mlp (tolerant),
digits_int8 (exact), poi_mix (exact, the PoI model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vm.sandbox.golden import GoldenVectors, decode_golden
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

MODELS_DIR = Path(__file__).resolve().parent
POI_MODEL = "poi_mix"


@dataclass(frozen=True, slots=True)
class DemoModel:
    """A committed model: canonical bytes, the spec it registers with, golden vectors, declared outputs."""

    name: str
    model_bytes: bytes
    spec: ModelSpec
    golden: GoldenVectors
    outputs: tuple[ArraySpec, ...]
    gas_per_call: int
    macs: int


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MODELS_DIR / "manifest.json").read_text())
    return data


def model_names() -> tuple[str, ...]:
    return tuple(entry["name"] for entry in manifest()["models"])


def _specs(items: list[dict[str, Any]]) -> tuple[ArraySpec, ...]:
    return tuple(ArraySpec(t["name"], t["dtype"], tuple(t["shape"])) for t in items)


def load_model(name: str) -> DemoModel:
    """Load one committed model; raises ValueError if its files do not match the manifest."""
    entry = next((e for e in manifest()["models"] if e["name"] == name), None)
    if entry is None:
        raise KeyError(f"no committed model named {name!r}; have {model_names()}")
    model_bytes = (MODELS_DIR / entry["file"]).read_bytes()
    if hashlib.sha256(model_bytes).hexdigest() != entry["sha256"]:
        raise ValueError(f"{entry['file']} does not match its sha256 in manifest.json")
    golden_bytes = (MODELS_DIR / entry["golden"]).read_bytes()
    if hashlib.sha256(golden_bytes).hexdigest() != entry["golden_sha256"]:
        raise ValueError(f"{entry['golden']} does not match its sha256 in manifest.json")
    spec = ModelSpec(
        inputs=_specs(entry["inputs"]),
        model_class=CompareMode(entry["class"]),
        grid_k=entry["grid_k"],
        tolerance=Tolerance(entry["t_abs"], entry["t_rel_ppm"]),
    )
    return DemoModel(
        name=name,
        model_bytes=model_bytes,
        spec=spec,
        golden=decode_golden(golden_bytes),
        outputs=_specs(entry["outputs"]),
        gas_per_call=entry["gas_per_call"],
        macs=entry["macs"],
    )
