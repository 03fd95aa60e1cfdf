"""The ops issue 12 added (docs/sandbox.md, "Ops added for the models people have"): each is priced by hand
count, computes what its definition says, keeps its determinism rule, and gives bit-identical outputs in a
worker started under a hostile threading environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from core.hashing import sha256
from tests.vm.test_vm_worker import THREAD_ENV
from tools.attacks import canonical, make_model, spec
from tools.attacks import tensor as vi
from vm.sandbox.check import validate_model
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.meter import meter
from vm.sandbox.ops import PRICED_OPS
from vm.sandbox.spec import CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

F, I32 = TensorProto.FLOAT, TensorProto.INT32
TOLERANT = {"model_class": CompareMode.TOLERANT, "grid_k": 20, "tolerance": Tolerance(32, 200)}
RNG = np.random.default_rng(12)



def _w(op: str) -> int:
    """The op's work weight in the calibrated schedule (the hand counts below are in work units)."""
    return PRICED_OPS[op].weight

@dataclass(frozen=True)
class OpCase:
    """One model around a new op: its spec, inputs, the hand-counted (MACs, element work) of the op's node,
    and a numpy reference of the op."""

    model_bytes: bytes
    spec: ModelSpec
    feeds: dict[str, np.ndarray]
    work: tuple[int, int]
    reference: Callable[[dict[str, np.ndarray]], np.ndarray]


def _init(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value, name)


def _conv_transpose() -> OpCase:
    w = RNG.standard_normal((2, 3, 2, 2)).astype(np.float32)  # C_in=2, C_out=3, 2x2 kernel
    model = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"])], [vi("x", F, (1, 2, 3, 3))],
                       [vi("y", F, None)], [_init("w", w)])

    def ref(f: dict[str, np.ndarray]) -> np.ndarray:
        x, out = f["x"][0], np.zeros((3, 4, 4), np.float64)
        for c in range(2):
            for i in range(3):
                for j in range(3):
                    out[:, i:i + 2, j:j + 2] += x[c, i, j] * w[c]
        return out[None]

    s = spec(("x", "float32", (1, 2, 3, 3)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((1, 2, 3, 3)).astype(np.float32)},
                  (18 * 12, w.size * _w("ConvTranspose")), ref)


def _einsum() -> OpCase:
    b = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    model = make_model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
                       [vi("a", F, (2, 3, 4))], [vi("y", F, None)], [_init("b", b)])
    s = spec(("a", "float32", (2, 3, 4)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"a": RNG.standard_normal((2, 3, 4)).astype(np.float32)},
                  (2 * 3 * 4 * 5, 0), lambda f: np.einsum("bij,bjk->bik", f["a"].astype(np.float64), b))


def _lrn() -> OpCase:
    model = make_model([helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.1, beta=0.75, bias=1.0)],
                       [vi("x", F, (1, 4, 2, 2))], [vi("y", F, None)])

    def ref(f: dict[str, np.ndarray]) -> np.ndarray:
        x = f["x"].astype(np.float64)
        sq = np.zeros_like(x)
        for c in range(4):
            sq[:, c] = (x[:, max(0, c - 1):min(4, c + 2)] ** 2).sum(axis=1)
        return x / (1.0 + 0.1 / 3 * sq) ** 0.75

    s = spec(("x", "float32", (1, 4, 2, 2)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((1, 4, 2, 2)).astype(np.float32)},
                  (0, 16 * 3 * _w("LRN")), ref)


def _instance_norm() -> OpCase:
    scale, bias = np.array([1.0, 2.0, 0.5], np.float32), np.array([0.0, 1.0, -1.0], np.float32)
    model = make_model([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)],
                       [vi("x", F, (1, 3, 4, 4))], [vi("y", F, None)], [_init("s", scale), _init("b", bias)])

    def ref(f: dict[str, np.ndarray]) -> np.ndarray:
        x = f["x"].astype(np.float64)
        mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * scale[None, :, None, None] + bias[None, :, None, None]

    s = spec(("x", "float32", (1, 3, 4, 4)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)},
                  (0, 48 * _w("InstanceNormalization")), ref)


def _soft_shrink() -> OpCase:
    model = make_model([helper.make_node("Shrink", ["x"], ["y"], bias=0.5, lambd=0.5)],
                       [vi("x", F, (2, 8))], [vi("y", F, None)])
    s = spec(("x", "float32", (2, 8)), **TOLERANT)

    def ref(f: dict[str, np.ndarray]) -> np.ndarray:
        x = f["x"].astype(np.float64)
        return np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0))

    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((2, 8)).astype(np.float32)}, (0, 16 * _w("Shrink")), ref)


def _topk_values() -> OpCase:
    k = _init("k", np.array([3], np.int64))
    model = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)],
                       [vi("x", F, (2, 6))], [vi("v", F, None)], [k])
    s = spec(("x", "float32", (2, 6)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((2, 6)).astype(np.float32)}, (0, 12 * _w("TopK")),
                  lambda f: -np.sort(-f["x"].astype(np.float64), axis=-1)[:, :3])


def _topk_exact_ties() -> OpCase:
    k = _init("k", np.array([2], np.int64))
    model = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)],
                       [vi("x", I32, (1, 5))], [vi("i", TensorProto.INT64, None)], [k])
    s = spec(("x", "int32", (1, 5)))
    # Equal values: the lower index first (the ONNX definition, which ORT follows).
    return OpCase(canonical(model, s), s, {"x": np.array([[3, 1, 3, 2, 3]], np.int32)}, (0, 5 * _w("TopK")),
                  lambda f: np.array([[0, 2]], np.int64))


def _resize_nearest() -> OpCase:
    scales = _init("scales", np.array([1, 1, 2, 2], np.float32))
    model = make_model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")],
                       [vi("x", F, (1, 1, 2, 3))], [vi("y", F, None)], [scales])
    s = spec(("x", "float32", (1, 1, 2, 3)), **TOLERANT)
    return OpCase(canonical(model, s), s, {"x": RNG.standard_normal((1, 1, 2, 3)).astype(np.float32)},
                  (0, 24 * _w("Resize")), lambda f: f["x"].repeat(2, axis=2).repeat(2, axis=3))


CASES: dict[str, Callable[[], OpCase]] = {
    "ConvTranspose": _conv_transpose, "Einsum": _einsum, "LRN": _lrn, "InstanceNormalization": _instance_norm,
    "Shrink": _soft_shrink, "TopK": _topk_values, "TopK-exact": _topk_exact_ties, "Resize": _resize_nearest,
}


def _run(executor: LocalExecutor | WorkerPool, case: OpCase) -> np.ndarray:
    package = ModelPackage(bytes(sha256(case.model_bytes)), case.model_bytes, case.spec)
    [result] = executor.run_batch([InferJob(package, case.feeds)])
    assert result.outputs is not None, result.error
    [out] = result.outputs.values()
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_op_is_priced_by_hand_count_and_computes_its_definition(name: str) -> None:
    case = CASES[name]()
    info = validate_model(case.model_bytes, case.spec)
    [node] = meter(case.model_bytes).nodes
    assert (node.macs, node.elementwise) == case.work
    assert info.macs == case.work[0]
    got = _run(LocalExecutor(), case)
    want = case.reference(case.feeds)
    if case.spec.model_class is CompareMode.EXACT:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got / 2.0**20, want, atol=1e-4, rtol=1e-4)


def test_new_ops_are_bit_identical_in_a_worker_under_a_hostile_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [make() for make in CASES.values()]
    with WorkerPool(1) as plain:
        expected = [_run(plain, c) for c in cases]
    with monkeypatch.context() as m:
        for key, value in THREAD_ENV.items():
            m.setenv(key, value)
        hostile = WorkerPool(1)
        hostile.start()
    with hostile:
        for case, want in zip(cases, expected, strict=True):
            np.testing.assert_array_equal(_run(hostile, case), want)


def _refused(model: object, s: ModelSpec) -> str:
    with pytest.raises(InvalidModel) as err:
        validate_model(canonical(model, s), s)  # type: ignore[arg-type]
    return str(err.value)


def test_discontinuous_uses_of_new_ops_are_refused_in_the_tolerant_class() -> None:
    s = spec(("x", "float32", (2, 6)), **TOLERANT)
    hard = make_model([helper.make_node("Shrink", ["x"], ["y"])], [vi("x", F, (2, 6))], [vi("y", F, None)])
    assert "discontinuous Shrink" in _refused(hard, s)
    k = _init("k", np.array([2], np.int64))
    indices = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"])], [vi("x", F, (2, 6))],
                         [vi("i", TensorProto.INT64, None)], [k])
    assert "discontinuous TopK" in _refused(indices, s)


def test_new_ops_need_static_geometry() -> None:
    s = spec(("x", "float32", (1, 1, 2, 2)), ("scales", "float32", (4,)), **TOLERANT)
    runtime_scales = make_model([helper.make_node("Resize", ["x", "", "scales"], ["y"])],
                                [vi("x", F, (1, 1, 2, 2)), vi("scales", F, (4,))], [vi("y", F, None)])
    with pytest.raises(InvalidModel):
        validate_model(canonical(runtime_scales, s), s)
    scales = _init("scales", np.array([1, 1, 2, 2], np.float32))
    linear_ints = make_model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
                             [vi("x", I32, (1, 1, 2, 2))], [vi("y", I32, None)], [scales])
    assert "nearest" in _refused(linear_ints, spec(("x", "int32", (1, 1, 2, 2))))
    ellipsis = make_model([helper.make_node("Einsum", ["a", "a"], ["y"], equation="...i,...i->...")],
                          [vi("a", F, (2, 3))], [vi("y", F, None)])
    assert "ellipsis" in _refused(ellipsis, spec(("a", "float32", (2, 3)), **TOLERANT))


@pytest.mark.parametrize(("node", "expect"), [
    (helper.make_node("LRN", ["x"], ["y"], size=2), "odd size"),
    (helper.make_node("LRN", ["x"], ["y"], size=3, alpha=-1.0), "positive alpha"),
    (helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="bogus"), "Resize mode"),
    (helper.make_node("Resize", ["x", "", "scales"], ["y"], coordinate_transformation_mode="x"), "coordinate"),
], ids=["lrn-even", "lrn-alpha", "resize-mode", "resize-coordinates"])
def test_attributes_the_runtime_would_fail_on_are_verdicts(node: object, expect: str) -> None:
    """ORT refuses these when it builds a session, with a generic failure (a local fault on every node):
    the checker refuses them first."""
    scales = _init("scales", np.array([1, 1, 2, 2], np.float32))
    model = make_model([node], [vi("x", F, (1, 3, 2, 2))], [vi("y", F, None)], [scales])
    assert expect in _refused(model, spec(("x", "float32", (1, 3, 2, 2)), **TOLERANT))
