"""Golden vectors (docs/design.md §2.7): inputs and their canonical outputs, checked when a node loads a model.

Stored as .npz with members `case<i>.in.<name>` and `case<i>.out.<name>`, written with fixed zip timestamps
so that regenerating them gives the same bytes. Outputs are canonical: float outputs already on the grid.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vm.sandbox.numeric import find_disagreement
from vm.sandbox.spec import ArraySpec, CompareMode, Tolerance

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
MAX_GOLDEN_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class GoldenCase:
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class GoldenVectors:
    cases: tuple[GoldenCase, ...]


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.asarray(array, order="C").copy()
    out.flags.writeable = False
    return out


def make_golden(cases: list[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]) -> GoldenVectors:
    return GoldenVectors(
        tuple(
            GoldenCase({k: _frozen(v) for k, v in ins.items()}, {k: _frozen(v) for k, v in outs.items()})
            for ins, outs in cases
        )
    )


def encode_golden(golden: GoldenVectors) -> bytes:
    """Deterministic .npz bytes (fixed timestamps, stored members, declared order)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, case in enumerate(golden.cases):
            for kind, values in (("in", case.inputs), ("out", case.outputs)):
                for name, array in values.items():
                    member = io.BytesIO()
                    np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)
                    info = zipfile.ZipInfo(f"case{i}.{kind}.{name}.npy", date_time=_FIXED_TIME)
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, member.getvalue())
    return buf.getvalue()


def decode_golden(data: bytes) -> GoldenVectors:
    if len(data) > MAX_GOLDEN_BYTES:
        raise ValueError("golden vectors too large")
    cases: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            head, kind, name = key.split(".", 2)
            index = int(head.removeprefix("case"))
            slot = cases.setdefault(index, ({}, {}))
            if kind not in ("in", "out"):
                raise ValueError(f"bad golden member {key!r}")
            slot[0 if kind == "in" else 1][name] = npz[key]
    if sorted(cases) != list(range(len(cases))):
        raise ValueError("golden cases are not numbered 0..n-1")
    return make_golden([cases[i] for i in range(len(cases))])


def save_golden(path: Path, golden: GoldenVectors) -> None:
    path.write_bytes(encode_golden(golden))


def load_golden(path: Path) -> GoldenVectors:
    return decode_golden(path.read_bytes())


def golden_mismatch(
    golden: GoldenVectors,
    outputs: tuple[ArraySpec, ...],
    model_class: CompareMode,
    tolerance: Tolerance,
    actual: Sequence[Mapping[str, np.ndarray]],
) -> str | None:
    """Why this node's canonical outputs for the golden inputs disagree with the expected ones, or None."""
    if len(actual) != len(golden.cases):
        return "wrong number of golden results"
    for i, (case, got) in enumerate(zip(golden.cases, actual, strict=True)):
        why = find_disagreement(outputs, model_class, tolerance, case.outputs, got)
        if why is not None:
            return f"case {i}: {why}"
    return None


# How far beyond its tolerance a registration's golden output may be and still be a local fault, not a verdict.
GOLDEN_MARGIN = 2


def wider_tolerance(tolerance: Tolerance) -> Tolerance:
    """The band in which a registration's golden mismatch is this node's fault (vm/engine.py): honest nodes
    drift well inside the tolerance, so a golden output beyond GOLDEN_MARGIN x the tolerance is wrong on
    every one of them, while one just outside it may be within it on another CPU."""
    return Tolerance(tolerance.t_abs * GOLDEN_MARGIN, min(tolerance.t_rel_ppm * GOLDEN_MARGIN, 1_000_000))
