"""The grid q = round_half_even(y * 2^k) and the integer agreement rule, at their edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm.sandbox.errors import NonFiniteOutput, OffGridOutput
from vm.sandbox.numeric import (
    TINY_GRID,
    _tiny_grid,
    canonical_outputs,
    find_disagreement,
    outputs_agree,
    quantize,
    within_tolerance,
)
from vm.sandbox.spec import ArraySpec, CompareMode, Tolerance

pytestmark = pytest.mark.vm


def test_ties_round_half_to_even() -> None:
    y = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.5], dtype=np.float32)
    assert quantize(y, 0).tolist() == [0, 2, 2, 0, -2, -2, 0, 4]


def test_grid_scaling_is_exact() -> None:
    y = np.array([1.0, -0.75, 2.0**-20, 3.0 * 2.0**-21], dtype=np.float32)
    assert quantize(y, 20).tolist() == [1 << 20, -786432, 1, 2]  # 1.5 grid steps -> 2 (even)


def test_float64_outputs_use_the_same_rule() -> None:
    assert quantize(np.array([2.5, 1e-300, -7.25]), 2).tolist() == [10, 0, -29]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_fail(bad: float) -> None:
    with pytest.raises(NonFiniteOutput):
        quantize(np.array([1.0, bad], np.float32), 8)


def test_values_beyond_int64_fail() -> None:
    assert quantize(np.array([-(2.0**63)]), 0).tolist() == [-(2**63)]
    with pytest.raises(OffGridOutput):
        quantize(np.array([2.0**63]), 0)
    with pytest.raises(OffGridOutput):
        quantize(np.array([2.0**30], np.float32), 40)  # 2^70 on the grid
    with pytest.raises(OffGridOutput):
        quantize(np.array([1e300]), 40)  # finite, but y * 2^k overflows float64


def _grid_reference(values: list[float], k: int) -> list[int] | type[Exception]:
    """The grid rule in Python integers: round half to even of the exact y * 2^k, or the verdict's type."""
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        return NonFiniteOutput  # whatever else the output holds
    out = []
    for v in values:
        q = round(v * 2.0**k)  # float64 product of a float32 is exact here; round() ties to even
        if not -(2**63) <= q < 2**63:
            return OffGridOutput
        out.append(q)
    return out


@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=40),
       st.sampled_from([0, 1, 8, 16, 24, 40, 63, 64, 100, 128, 129]))
def test_float32_fast_path_matches_the_rule(values: list[float], k: int) -> None:
    y = np.array(values, np.float32)
    want = _grid_reference([float(v) for v in y], k)
    if isinstance(want, list):
        assert quantize(y, k).tolist() == want
        assert quantize(y, k).dtype == np.int64
    else:
        with pytest.raises(want):
            quantize(y, k)


def test_float32_fast_path_edges() -> None:
    assert quantize(np.array([2.0**62, -(2.0**63)], np.float32), 0).tolist() == [2**62, -(2**63)]
    with pytest.raises(OffGridOutput):
        quantize(np.array([2.0**63], np.float32), 0)
    with pytest.raises(NonFiniteOutput):
        quantize(np.array([np.inf, 2.0**70], np.float32), 0)
    assert quantize(np.array([[-0.0, 0.5], [1.5, -2.5]], np.float32), 0).tolist() == [[0, 0], [2, -2]]


def test_canonical_outputs_keep_integers_and_order() -> None:
    specs = (ArraySpec("s", "float32", (2,)), ArraySpec("n", "int32", (2,)))
    raw = {"n": np.array([3, -4], np.int32), "s": np.array([0.25, -0.125], np.float32)}
    out = canonical_outputs(raw, specs, 3)
    assert list(out) == ["s", "n"]
    assert out["s"].dtype == np.int64 and out["s"].tolist() == [2, -1]
    assert out["n"].dtype == np.int32 and out["n"].tolist() == [3, -4]


def _reference(claim: list[int], local: list[int], tol: Tolerance) -> bool:
    return all(abs(c - v) * 10**6 <= tol.t_abs * 10**6 + tol.t_rel_ppm * abs(v) for c, v in zip(claim, local, strict=True))


def test_tolerance_boundary_is_inclusive() -> None:
    tol = Tolerance(t_abs=2, t_rel_ppm=100)
    local = np.array([1_000_000, -1_000_000, 0], np.int64)  # t_rel * |q| = 100 grid units
    assert within_tolerance(local + np.array([102, -102, 2]), local, tol)
    assert not within_tolerance(local + np.array([103, 0, 0]), local, tol)
    assert not within_tolerance(local + np.array([0, 0, 3]), local, tol)


def test_tolerance_is_relative_to_the_local_value() -> None:
    tol = Tolerance(0, 500_000)  # 50 %
    assert within_tolerance(np.array([15]), np.array([10]), tol)
    assert not within_tolerance(np.array([10]), np.array([15]) * 0 + 6, tol)


int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    st.lists(st.tuples(int64s, int64s), min_size=1, max_size=8),
    st.integers(0, 2**62),
    st.integers(0, 10**6),
)
def test_tolerance_equals_exact_integer_formula(pairs: list[tuple[int, int]], t_abs: int, ppm: int) -> None:
    tol = Tolerance(t_abs, ppm)
    claim = [c for c, _ in pairs]
    local = [v for _, v in pairs]
    assert within_tolerance(np.array(claim, np.int64), np.array(local, np.int64), tol) == _reference(claim, local, tol)


@given(st.lists(st.tuples(st.integers(-(2**39), 2**39), st.integers(-(2**39), 2**39)), min_size=1, max_size=8), st.integers(0, 2**30), st.integers(0, 10**6))
def test_fast_path_equals_exact_integer_formula(pairs: list[tuple[int, int]], t_abs: int, ppm: int) -> None:
    tol = Tolerance(t_abs, ppm)
    claim = [c for c, _ in pairs]
    local = [v for _, v in pairs]
    assert within_tolerance(np.array(claim, np.int64), np.array(local, np.int64), tol) == _reference(claim, local, tol)


def test_disagreement_rules_by_class() -> None:
    specs = (ArraySpec("s", "float32", (2,)), ArraySpec("n", "int64", (2,)))
    tol = Tolerance(1, 100)
    local = {"s": np.array([100, 200], np.int64), "n": np.array([7, 8], np.int64)}
    near = {"s": np.array([101, 199], np.int64), "n": np.array([7, 8], np.int64)}
    assert outputs_agree(specs, CompareMode.TOLERANT, tol, near, local)
    int_off = {"s": local["s"], "n": np.array([7, 9], np.int64)}
    assert find_disagreement(specs, CompareMode.TOLERANT, tol, int_off, local) == "output 'n' differs"
    far = {"s": np.array([102, 200], np.int64), "n": local["n"]}
    assert "tolerance" in (find_disagreement(specs, CompareMode.TOLERANT, tol, far, local) or "")
    exact_specs = (ArraySpec("n", "int64", (2,)),)
    assert not outputs_agree(exact_specs, CompareMode.EXACT, Tolerance(), {"n": np.array([7, 9])}, {"n": local["n"]})


def test_disagreement_on_dtype_shape_or_names() -> None:
    specs = (ArraySpec("n", "int32", (2,)),)
    good = {"n": np.array([1, 2], np.int32)}
    assert outputs_agree(specs, CompareMode.EXACT, Tolerance(), good, good)
    assert not outputs_agree(specs, CompareMode.EXACT, Tolerance(), {"n": np.array([1, 2], np.int64)}, good)
    assert not outputs_agree(specs, CompareMode.EXACT, Tolerance(), {"n": np.array([[1, 2]], np.int32)}, good)
    assert not outputs_agree(specs, CompareMode.EXACT, Tolerance(), {"m": good["n"]}, good)


def _numpy_grid(y: np.ndarray, k: int) -> np.ndarray | type[Exception]:
    """The grid by numpy's float64 rint (the rule as numeric.quantize computes it for many values)."""
    with np.errstate(over="ignore", invalid="ignore"):
        grid = np.rint(y.astype(np.float64) * float(2**k))
    if not np.isfinite(grid).all():
        return NonFiniteOutput if not np.isfinite(y).all() else OffGridOutput
    if grid.min() < -(2.0**63) or grid.max() >= 2.0**63:
        return OffGridOutput
    return grid.astype(np.int64)


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=TINY_GRID),
       st.sampled_from([(1, -1), (-1,), (-1, 1)]), st.integers(0, 128))
def test_tiny_grid_equals_numpys_bit_for_bit(bits: list[int], shape: tuple[int, ...], k: int) -> None:
    """A few float32 values (any bit pattern: denormals, ties, NaN, Inf, the largest) go on the grid in Python
    numbers (`_tiny_grid`): the same int64 values and shape as numpy's rint, or the same verdict."""
    y = np.array(bits, np.uint32).view(np.float32).reshape(shape)
    want = _numpy_grid(y, k)
    if isinstance(want, np.ndarray):
        got = quantize(y, k)
        assert got.dtype == np.int64 and got.shape == y.shape and got.tobytes() == want.tobytes()
        tiny = _tiny_grid(y, k)
        assert tiny is not None and tiny.dtype == np.int64 and tiny.tobytes() == want.tobytes()
    else:
        with pytest.raises(want):
            quantize(y, k)
        assert _tiny_grid(y, k) is None  # the full rule gives the verdict


def test_tiny_grid_ties_and_edges() -> None:
    y = np.array([[0.5, 1.5, 2.5, -0.5, -2.5, 2.0**-149, -0.0, 2.0**62, -(2.0**63)]], np.float32)
    assert _tiny_grid(y, 0) is not None
    assert _tiny_grid(y, 0).tolist() == [[0, 2, 2, 0, -2, 0, 0, 2**62, -(2**63)]]  # type: ignore[union-attr]
    assert _tiny_grid(np.array([2.0**63], np.float32), 0) is None
    assert _tiny_grid(np.array([np.nan], np.float32), 3) is None
