"""Registration is a total function: whatever bytes and metadata arrive, the canonicalizer and the checker
answer with a model or with InvalidModel (one line), never another exception and never a worker fault.

The property test mutates real models at the protobuf wire level (tests/vm/protomut.py): numbers made
negative or huge, strings made non-UTF-8, empty or duplicated, fields duplicated, deleted, reordered, added
or given the wrong wire type, bytes truncated or flipped. A sample goes through a real worker process too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel, LocalFault
from tests.vm import protomut
from vm.models import load_model
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model, validate_spec
from vm.sandbox.executor import CheckJob, Runner
from vm.sandbox.limits import DEFAULT_LIMITS
from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

F, U8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT32
TOLERANT: dict[str, Any] = {"model_class": CompareMode.TOLERANT, "grid_k": 16, "tolerance": Tolerance(2, 100)}
R = TypeVar("R")


def _value(name: str, elem: int, shape: list[int | str]) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: Sequence[Any] = (), **kw: Any) -> bytes:
    graph = helper.make_graph(nodes, "main", inputs, outputs, initializer=list(inits))
    opsets = kw.pop("opsets", [helper.make_opsetid("", 17)])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8, **kw).SerializeToString()


def relu_model(shape: list[int | str]) -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", F, shape)], [_value("y", F, shape)])


@functools.cache
def seeds() -> tuple[tuple[bytes, ModelSpec], ...]:
    """Small real models that reach every step: canonical ones, ones the canonicalizer must rewrite (Constant,
    folding, Dropout, Softmax, int8 operands, a local function) and a committed model."""
    rng = np.random.default_rng(3)
    x14 = ModelSpec((ArraySpec("x", "float32", (1, 4)),), **TOLERANT)
    x18 = ModelSpec((ArraySpec("x", "float32", (1, 8)),), **TOLERANT)
    a216 = ModelSpec((ArraySpec("a", "uint8", (2, 16)),), CompareMode.EXACT)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((3,)).astype(np.float32), "b")
    affine = _model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
                    [_value("x", F, [1, 4])], [_value("y", F, [1, 3])], [w, b])
    w8 = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w")
    rewrites = _model([
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["w", "two"], ["w2"], name="scale"),
        helper.make_node("MatMul", ["x", "w2"], ["h"]),
        helper.make_node("Dropout", ["h"], ["d"]),
        helper.make_node("Softmax", ["d"], ["p"], axis=-1),
    ], [_value("x", F, ["N", 8])], [_value("p", F, ["N", 5])], [w8])
    wi = numpy_helper.from_array(rng.integers(-127, 128, (16, 4), dtype=np.int8), "w")
    integer = _model([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], [_value("a", U8, [2, 16])],
                     [_value("y", I32, [2, 4])], [wi])
    consts = [numpy_helper.from_array(np.array(v, np.int64), n) for v, n in (([1, 4], "s"), ([0, 2], "i"), ([2, 1], "r"))]
    attributes = _model([
        helper.make_node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("Add", ["x", "c"], ["t"]),
        helper.make_node("Gather", ["t", "i"], ["g"], axis=1),
        helper.make_node("Reshape", ["g", "r"], ["y"]),
    ], [_value("x", F, [1, 4])], [_value("y", F, [2, 1])], consts)
    double = helper.make_function("local", "double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                  [helper.make_opsetid("", 17)])
    function = _model([helper.make_node("double", ["x"], ["y"], domain="local")], [_value("x", F, [1, 4])],
                      [_value("y", F, [1, 4])], functions=[double],
                      opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    ml = _model([
        helper.make_node("ArrayFeatureExtractor", ["x", "idx"], ["f"], domain="ai.onnx.ml"),
        helper.make_node("TreeEnsembleRegressor", ["x"], ["t"], domain="ai.onnx.ml", n_targets=1,
                         nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[1, 0, 0],
                         nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0],
                         nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], target_treeids=[0, 0],
                         target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[-1.0, 1.0]),
        helper.make_node("Scaler", ["x"], ["s"], domain="ai.onnx.ml", offset=[0.5], scale=[2.0]),
        helper.make_node("LinearClassifier", ["s"], ["label", "p"], domain="ai.onnx.ml", classlabels_ints=[0, 1],
                         coefficients=[1.0, -1.0, 0.5, 0.0, -1.0, 1.0, -0.5, 0.0], intercepts=[0.0, 0.1],
                         post_transform="SOFTMAX"),
    ], [_value("x", F, [1, 4])], [_value("f", F, [1, 2]), _value("t", F, [1, 1]), _value("p", F, [1, 2])],
        [numpy_helper.from_array(np.array([0, 2], np.int64), "idx")],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    new_ops = _model([
        helper.make_node("LRN", ["x"], ["a"], size=3), helper.make_node("InstanceNormalization", ["a", "s", "b"], ["c"]),
        helper.make_node("ConvTranspose", ["c", "w"], ["d"]),
        helper.make_node("Resize", ["d", "", "sc"], ["e"], mode="linear"),
        helper.make_node("Shrink", ["e"], ["f"], bias=0.5, lambd=0.5),
        helper.make_node("TopK", ["f", "k"], ["g", "gi"], axis=-1),
        helper.make_node("Einsum", ["g", "g"], ["y"], equation="nchw,nchw->nch"),
    ], [_value("x", F, [1, 2, 3, 3])], [_value("y", F, [1, 2, 8])], [
        numpy_helper.from_array(rng.standard_normal((2, 2, 2, 2)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([2], np.int64), "k"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc"),
        numpy_helper.from_array(np.ones(2, np.float32), "s"), numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    kernels = _model([
        helper.make_node("SVMClassifier", ["x"], ["label", "c"], domain="ai.onnx.ml", kernel_type="RBF",
                         kernel_params=[0.5, 0.0, 3.0], vectors_per_class=[1, 1, 1], classlabels_ints=[0, 1, 2],
                         support_vectors=rng.standard_normal(12).astype(np.float32).tolist(),
                         coefficients=[1.0, -1.0, 0.5, 0.5, -0.5, 1.0], rho=[0.1, -0.1, 0.2]),
        helper.make_node("SVMRegressor", ["x"], ["r"], domain="ai.onnx.ml", kernel_type="POLY",
                         kernel_params=[0.5, 1.0, 2.0], n_supports=2, coefficients=[1.0, -1.0], rho=[0.5],
                         support_vectors=rng.standard_normal(8).astype(np.float32).tolist()),
        helper.make_node("LabelEncoder", ["x"], ["e"], domain="ai.onnx.ml", keys_floats=[0.0, 1.0, 2.0],
                         values_floats=[5.0, 6.0, 7.0], default_float=0.5),
    ], [_value("x", F, [1, 4])], [_value("c", F, [1, 3]), _value("r", F, [1, 1]), _value("e", F, [1, 4])],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    x2 = ModelSpec((ArraySpec("x", "float32", (1, 2, 3, 3)),), **TOLERANT)
    digits = load_model("digits_int8")
    return (
        (canonicalize(relu_model([1, 4]), x14.input_shapes), x14),
        (canonicalize(affine, x14.input_shapes), x14),
        (rewrites, x18),
        (integer, a216),
        (attributes, x14),
        (function, x14),
        (digits.model_bytes, digits.spec),
        (canonicalize(ml, x14.input_shapes), x14),
        (canonicalize(new_ops, x2.input_shapes), x2),
        (canonicalize(kernels, x14.input_shapes), x14),
    )


def verdict(call: Callable[[], R]) -> R | InvalidModel:
    """The call's result or its InvalidModel (one line); any other exception fails the test."""
    try:
        return call()
    except InvalidModel as exc:
        text = str(exc)
        assert text and "\n" not in text and len(text) <= 400, text
        return exc


def mutated(seed: int, mutations: list[tuple[str, int, int, int]], damage: tuple[int, int, int] | None) -> bytes:
    tree = protomut.clone(_parsed(seed))
    for kind, pick, choice, extra in mutations:
        protomut.mutate(tree, kind, pick, choice, extra)
    data = protomut.serialize(tree)
    return data if damage is None else protomut.damage(data, *damage)


@functools.cache
def _parsed(seed: int) -> protomut.Msg:
    return protomut.parse(seeds()[seed][0])


MUTATION = st.tuples(st.sampled_from(protomut.KINDS), st.integers(0, 1 << 16), st.integers(0, 1 << 16),
                     st.integers(0, 1 << 20))
DAMAGE = st.none() | st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255))


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 9), st.lists(MUTATION, min_size=1, max_size=3), DAMAGE)
def test_mutated_models_are_accepted_or_refused_with_a_typed_error(
        seed: int, mutations: list[tuple[str, int, int, int]], damage: tuple[int, int, int] | None) -> None:
    spec = seeds()[seed][1]
    data = mutated(seed, mutations, damage)
    result = verdict(lambda: validate_model(data, spec))
    assert isinstance(result, ModelInfo | InvalidModel)
    canonical = verdict(lambda: canonicalize(data, spec.input_shapes))
    if isinstance(canonical, bytes) and (canonical, seed) not in _CHECKED:  # many mutations canonicalize alike
        _CHECKED.add((canonical, seed))
        assert isinstance(verdict(lambda: validate_model(canonical, spec)), ModelInfo | InvalidModel)


_CHECKED: set[tuple[bytes, int]] = set()


def test_mutated_models_through_a_real_worker_get_verdicts_not_faults(pool: WorkerPool) -> None:
    """A sample of the same mutations in one hand-off to a worker process: every job gets a result."""
    rng = np.random.default_rng(10)
    jobs = []
    for _ in range(150):
        seed = int(rng.integers(0, 7))
        muts = [(protomut.KINDS[int(rng.integers(0, len(protomut.KINDS)))], int(rng.integers(0, 1 << 16)),
                 int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 20))) for _ in range(int(rng.integers(1, 4)))]
        jobs.append(CheckJob(mutated(seed, muts, None), seeds()[seed][1]))
    restarts = pool.restarts
    results = pool.run_batch(jobs)
    assert pool.restarts == restarts
    assert len(results) == len(jobs)
    assert all((r.info is None) != (r.error is None) for r in results)
    assert all(isinstance(r.error, InvalidModel) for r in results if r.error is not None)
    assert sum(r.error is not None for r in results) > 50


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(size=1) as shared:
        yield shared


def _non_utf8_names() -> bytes:
    return relu_model([1, 4]).replace(b"\n\x01x", b"\n\x01\xff")


@pytest.mark.parametrize(("data", "expect"), [
    (relu_model([1, -4]), "declares dimension -4"),
    (relu_model([1, 1 << 40]), "declares dimension 1099511627776"),
    (_non_utf8_names(), "is not valid UTF-8"),
    (_model([helper.make_node("Relu", ["x"], ["y"])], [_value("", F, [1, 4])], [_value("y", F, [1, 4])]), "empty name"),
    (_model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", F, [1, 4]), _value("x", F, [1, 4])],
            [_value("y", F, [1, 4])]), "declared twice"),
    (_model([helper.make_node("Relu", [], ["y"])], [_value("x", F, [1, 4])], [_value("y", F, [1, 4])]),
     "Relu has 0 inputs"),
    (_model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", 99, [1, 4])], [_value("y", F, [1, 4])]),
     "unknown element type 99"),
], ids=["negative-dim", "huge-dim", "non-utf8-name", "empty-name", "duplicate-input", "arity", "dtype"])
def test_malformed_declarations_are_refused_before_any_type_is_built(data: bytes, expect: str) -> None:
    """The 102-byte models of the report: a negative dimension and non-UTF-8 names raised ValueError."""
    spec = ModelSpec((ArraySpec("x", "float32", (1, 4)),), **TOLERANT)
    with pytest.raises(InvalidModel, match=expect):
        validate_model(data, spec)
    with pytest.raises(InvalidModel, match=expect):
        canonicalize(data, {"x": (1, 4)})


def test_malformed_declarations_in_a_worker_are_verdicts_and_the_worker_lives(pool: WorkerPool) -> None:
    spec = ModelSpec((ArraySpec("x", "float32", (1, 4)),), **TOLERANT)
    good = canonicalize(relu_model([1, 4]), spec.input_shapes)
    restarts = pool.restarts
    results = pool.run_batch([CheckJob(relu_model([1, -4]), spec), CheckJob(_non_utf8_names(), spec),
                              CheckJob(good, spec)])
    assert pool.restarts == restarts
    assert [type(r.error) for r in results] == [InvalidModel, InvalidModel, type(None)]
    assert results[2].info is not None


def test_a_bug_in_the_checker_is_a_local_fault_not_a_crash_or_a_verdict(pool: WorkerPool) -> None:
    """A spec the VM should never build (limits of the wrong type) makes the checker itself fail: that is
    this node's fault (typed), never a verdict on the model and never an untyped exception."""
    spec = ModelSpec((ArraySpec("x", "float32", (1, 4)),), limits=None, **TOLERANT)  # type: ignore[arg-type]
    with pytest.raises(LocalFault, match="checker failed"):
        Runner(0).check(relu_model([1, 4]), spec)
    with pytest.raises(LocalFault, match="checker failed"):
        pool.run_batch([CheckJob(relu_model([1, 4]), spec)])
    good = ModelSpec((ArraySpec("x", "float32", (1, 4)),), **TOLERANT)
    assert pool.run_batch([CheckJob(canonicalize(relu_model([1, 4]), good.input_shapes), good)])[0].ok


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, (1 << 32) - 1), min_size=0, max_size=8), st.integers(0, 255),
       st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1), st.sampled_from(list(CompareMode)))
def test_any_chain_spec_gets_a_verdict(shape: list[int], k: int, t_abs: int, t_rel: int, cls: CompareMode) -> None:
    """Registration metadata as the chain can carry it (U32 dims, U8 k, U32 tolerances): never a crash."""
    spec = ModelSpec((ArraySpec("x", "float32", tuple(shape)),), cls, k, Tolerance(t_abs, t_rel), DEFAULT_LIMITS)
    verdict(lambda: validate_spec(spec))
    verdict(lambda: validate_model(relu_model(list(shape)), spec))


def test_input_sizes_do_not_wrap_around() -> None:
    """(2^16)^4 elements is 2^64, which an int64 product wraps to 0: the cap must see the true size."""
    spec = ModelSpec((ArraySpec("x", "float32", (1 << 16,) * 4),), **TOLERANT)
    assert spec.inputs[0].size == 1 << 64
    with pytest.raises(InvalidModel, match="over the tensor cap"):
        validate_spec(spec)


def _function_chain(depth: int, cyclic: bool) -> bytes:
    """Model-local functions f0 -> f1 -> ... (onnx's inliner raised ValidationError through the CLI)."""
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    functions = []
    for i in range(depth):
        callee, domain = (f"f{i + 1}", "local") if i < depth - 1 else (("f0", "local") if cyclic else ("Relu", ""))
        functions.append(helper.make_function("local", f"f{i}", ["a"], ["b"],
                                              [helper.make_node(callee, ["a"], ["b"], domain=domain)], opsets))
    return _model([helper.make_node("f0", ["x"], ["y"], domain="local")], [_value("x", F, [1, 4])],
                  [_value("y", F, [1, 4])], functions=functions, opsets=opsets)


@pytest.mark.parametrize(("data", "expect"), [
    (_non_utf8_names(), "not valid UTF-8"),
    (relu_model([1, -4]), "declares dimension -4"),
    (_function_chain(500, cyclic=False), "depth exceeds"),
    (_function_chain(3, cyclic=True), "must not be recursive"),
    (b"\x08\x01\x12\xff\xff", "not an ONNX model"),
], ids=["non-utf8-name", "negative-dim", "deep-functions", "recursive-functions", "garbage"])
def test_model_register_refuses_bad_models_in_one_line(
        tmp_path: Any, capsys: pytest.CaptureFixture[str], data: bytes, expect: str) -> None:
    """`inferchain model register` on hostile files: one line on stderr, exit 1, no traceback (the model is
    refused while it is prepared, before any key or node is needed)."""
    from node.cli import main

    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(SystemExit) as exited:
        main(["model", "register", str(path), "--name", "m", "--class", "tolerant",
              "--from", str(tmp_path / "no-key.json")])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert exited.value.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), out
    assert expect in lines[0] and "Traceback" not in out.err + out.out
