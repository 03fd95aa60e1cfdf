"""The numeric rules of docs/design.md §2.3-§2.4: float outputs on an integer grid, and agreement in integers.

Grid: q = round(y * 2^k), ties to even. y * 2^k is computed in float64, where multiplying a float32/float64
by a power of two is exact (k >= 0, no overflow for finite float32; float64 overflow shows up as Inf), and
`np.rint` rounds half to even in IEEE's default rounding mode, which nothing in the sandbox changes. So q is
a function of y's bits alone. NaN, +-Inf, or q outside int64 fail the inference with a typed error.

Agreement: exact outputs are equal bit for bit (dtype, shape and bytes); tolerant grid outputs elementwise
satisfy |q_claim - q_local| <= t_abs + t_rel_ppm * |q_local| / 10^6, evaluated as
10^6 * |q_claim - q_local| <= 10^6 * t_abs + t_rel_ppm * |q_local| in exact integer arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vm.sandbox.errors import NonFiniteOutput, OffGridOutput
from vm.sandbox.spec import FLOAT_DTYPES, GRID_DTYPE, ArraySpec, CompareMode, Tolerance

PPM = 1_000_000
_TWO_63 = float(2**63)
# Below this magnitude the tolerance check cannot overflow int64: 10^6 * 2^41 < 2^62.
_FAST_BOUND = 1 << 40
_FLOAT32_FAST_K = 128
# Float32 outputs of at most this many values go on the grid in Python numbers (`_tiny_grid`): fewer numpy
# calls, each of which costs more than a few values' arithmetic.
TINY_GRID = 32
_INT64_END = 1 << 63
_SCALES = tuple(float(2**k) for k in range(_FLOAT32_FAST_K + 1))
_FLOAT64, _INT64 = np.dtype(np.float64), np.dtype(np.int64)
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce
# The float dtypes as numpy dtypes: `dtype in _FLOATS` is a hash lookup, where `dtype.name` builds its string
# in Python each time (several µs per output on a single job's path: docs/performance-sandbox.md, "The hand-off goals,
# sixth round").
_FLOATS = frozenset(np.dtype(name) for name in FLOAT_DTYPES)


def quantize(y: np.ndarray, grid_k: int, name: str = "output") -> np.ndarray:
    """Grid values q = round_half_even(y * 2^k) as int64; NonFiniteOutput/OffGridOutput otherwise."""
    if y.dtype.kind != "f":
        raise TypeError(f"quantize expects floats, got {y.dtype}")
    if y.size == 0:
        return np.zeros(y.shape, np.int64)
    if type(y) is np.ndarray and y.dtype == np.float32 and 0 <= grid_k <= _FLOAT32_FAST_K:
        if y.size <= TINY_GRID:
            q = _tiny_grid(y, grid_k)
            if q is not None:
                return q
        # The usual case in fewer numpy calls (they dominate when a model's run has left the caches cold:
        # docs/performance-sandbox.md, "Single jobs: cold caches"): y * 2^k in float64 (exact, and no float32 times 2^k
        # for k <= 128 overflows float64), rounded half to even, then one reduction over the grid values: NaN
        # propagates through it, and anything at or beyond 2^63 (or non-finite) takes the full rule below for
        # its exact verdict. The same q as below bit for bit (tests/vm/test_sandbox_numeric.py).
        # (Written as a copy, then in-place calls, and reductions called directly: ufunc calls with `dtype=`
        # and ndarray.max go through more of numpy's code, ~25 µs of a conv job's cold path:
        # docs/performance-sandbox.md, "The hand-off goals, sixth round".) |q| < 2^63 <=> max < 2^63 and min > -2^63;
        # a NaN fails both comparisons.
        grid: np.ndarray = y.astype(_FLOAT64)
        grid *= _SCALES[grid_k]
        np.rint(grid, out=grid)
        if _MAX(grid, None) < _TWO_63 and _MIN(grid, None) > -_TWO_63:
            return grid.astype(_INT64)
    # One reduction answers both questions: NaN propagates through max, Inf stays Inf.
    peak = float(np.abs(y).max())
    if math.isnan(peak) or math.isinf(peak):
        raise NonFiniteOutput(f"{name} holds NaN or Inf")
    scale = float(2**grid_k)
    if peak * scale < _TWO_63:  # common case: nothing can overflow (float64 spacing at 2^63 is 2048)
        return np.rint(y.astype(np.float64) * scale).astype(np.int64)
    with np.errstate(over="ignore"):
        q = np.rint(y.astype(np.float64) * scale)
    if not (np.isfinite(q).all() and q.min() >= -_TWO_63 and q.max() < _TWO_63):
        raise OffGridOutput(f"{name} does not fit the int64 grid at k={grid_k}")
    return q.astype(np.int64)


def _tiny_grid(y: np.ndarray, grid_k: int) -> np.ndarray | None:
    """The grid of a few float32 values in Python's own numbers (`grid_values`), or None for the full rule's
    verdict. For ten values this is a third of the numpy calls' cost, and it touches far less code on cold
    caches (docs/sandbox.md, "The grid of a few floats")."""
    q = grid_values(y.ravel().tolist(), _SCALES[grid_k])
    return None if q is None else np.array(q, _INT64).reshape(y.shape)


def grid_values(values: Sequence[float], scale: float) -> list[int] | None:
    """round_half_even(v * scale) of float32 values as Python floats, scale = 2^k with 0 <= k <= 128; None
    when one is NaN or Inf or its grid value is outside int64 (the full rule then gives the verdict). A
    float32 converts to a Python float (float64) exactly, times 2^k it stays exact and finite, and `round` of
    a float rounds half to even to the exact integer: the integers np.rint gives, bit for bit
    (tests/vm/test_sandbox_numeric.py)."""
    try:
        q = [round(v * scale) for v in values]
    except (ValueError, OverflowError):  # NaN, Inf
        return None
    if not q or max(q) >= _INT64_END or min(q) < -_INT64_END:
        return None
    return q


def canonical_outputs(
    raw: Mapping[str, np.ndarray], outputs: Sequence[ArraySpec], grid_k: int
) -> dict[str, np.ndarray]:
    """Model outputs as committed: floats on the grid, integers unchanged (in declared order)."""
    result: dict[str, np.ndarray] = {}
    for spec in outputs:
        value = raw[spec.name]
        result[spec.name] = quantize(value, grid_k, spec.name) if spec.is_float else np.asarray(value, order="C")
    return result


def on_grid(raw: Mapping[str, np.ndarray], grid_k: int) -> dict[str, np.ndarray]:
    """`canonical_outputs` of outputs already in declared order, each float one told by its dtype (a session's
    outputs have their declared dtypes): the pool's form for a flat reply of raw outputs (vm/sandbox/flat.py)."""
    return {name: quantize(value, grid_k, name)
            if value.dtype in _FLOATS or (value.dtype.kind == "f" and value.dtype.name in FLOAT_DTYPES) else value
            for name, value in raw.items()}


def within_tolerance(q_claim: np.ndarray, q_local: np.ndarray, tolerance: Tolerance) -> bool:
    """Elementwise |q_claim - q_local| <= t_abs + t_rel*|q_local| over int64 arrays of equal shape."""
    if q_claim.shape != q_local.shape:
        return False
    if q_claim.size == 0:
        return True
    t_abs, ppm = tolerance.t_abs, tolerance.t_rel_ppm
    bound = max(int(np.abs(q_claim.astype(np.float64)).max()), int(np.abs(q_local.astype(np.float64)).max()))
    if bound < _FAST_BOUND and t_abs < _FAST_BOUND and ppm <= PPM:
        diff = np.abs(q_claim.astype(np.int64) - q_local.astype(np.int64))
        return bool((diff * PPM <= t_abs * PPM + ppm * np.abs(q_local.astype(np.int64))).all())
    for c, v in zip(q_claim.ravel().tolist(), q_local.ravel().tolist(), strict=True):
        if abs(c - v) * PPM > t_abs * PPM + ppm * abs(v):
            return False
    return True


def find_disagreement(
    outputs: Sequence[ArraySpec],
    model_class: CompareMode,
    tolerance: Tolerance,
    claimed: Mapping[str, np.ndarray],
    local: Mapping[str, np.ndarray],
) -> str | None:
    """Why committed outputs `claimed` disagree with this node's `local` ones (both canonical), or None."""
    if list(claimed) != [o.name for o in outputs] or list(local) != [o.name for o in outputs]:
        return "output names differ"
    for spec in outputs:
        c, v = claimed[spec.name], local[spec.name]
        want = np.dtype(spec.committed_dtype)
        if c.dtype != want or v.dtype != want or c.shape != spec.shape or v.shape != spec.shape:
            return f"output {spec.name!r} has the wrong dtype or shape"
        if spec.is_float and model_class is CompareMode.TOLERANT:
            if not within_tolerance(c, v, tolerance):
                return f"output {spec.name!r} is outside the tolerance"
        elif not np.array_equal(c, v):
            return f"output {spec.name!r} differs"
    return None


def outputs_agree(
    outputs: Sequence[ArraySpec],
    model_class: CompareMode,
    tolerance: Tolerance,
    claimed: Mapping[str, np.ndarray],
    local: Mapping[str, np.ndarray],
) -> bool:
    return find_disagreement(outputs, model_class, tolerance, claimed, local) is None


__all__ = [
    "GRID_DTYPE",
    "canonical_outputs",
    "find_disagreement",
    "grid_values",
    "on_grid",
    "outputs_agree",
    "quantize",
    "within_tolerance",
]
