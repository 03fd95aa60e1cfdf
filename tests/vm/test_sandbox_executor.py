"""The in-process executor: canonical outputs, deterministic verdicts, golden checks, quarantine, cache bound.

The worker pool runs this same Runner; test_sandbox_worker.py covers what isolation adds.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InferenceError, InvalidModel, LocalFault
from tools.attacks import make_model, tensor
from vm.models import load_model, model_names
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.errors import (
    GoldenMismatch,
    InputMismatch,
    NonFiniteOutput,
    OffGridOutput,
    RuntimeFault,
    WorkerFault,
)
from vm.sandbox.executor import CheckJob, InferJob, LocalExecutor, ModelPackage, Runner
from vm.sandbox.golden import make_golden
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance
from vm.sandbox.worker import WorkerPool

pytestmark = pytest.mark.vm

F = TensorProto.FLOAT
TOL = Tolerance(2, 100)


def package(name: str) -> ModelPackage:
    model = load_model(name)
    return ModelPackage(name.encode(), model.model_bytes, model.spec, model.golden)


def _raw_package(model_id: bytes, model: object, inputs: tuple[ArraySpec, ...], cls: CompareMode = CompareMode.TOLERANT) -> ModelPackage:
    spec = ModelSpec(inputs, cls, 16 if cls is CompareMode.TOLERANT else 0, TOL if cls is CompareMode.TOLERANT else Tolerance())
    return ModelPackage(model_id, model.SerializeToString(), spec)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", model_names())
def test_golden_vectors_reproduce(name: str) -> None:
    pkg = package(name)
    assert pkg.golden is not None
    results = LocalExecutor().run_batch([InferJob(pkg, case.inputs) for case in pkg.golden.cases])
    for case, result in zip(pkg.golden.cases, results, strict=True):
        assert result.ok and result.outputs is not None
        assert list(result.outputs) == list(case.outputs)
        for key, value in case.outputs.items():
            assert result.outputs[key].dtype == value.dtype
            np.testing.assert_array_equal(result.outputs[key], value)


def test_float_outputs_come_back_on_the_grid() -> None:
    pkg = package("digits_mlp")
    x = np.zeros((1, 64), np.float32)
    result = LocalExecutor().run_batch([InferJob(pkg, {"x": x})])[0]
    assert result.outputs is not None
    q = result.outputs["probabilities"]
    assert q.dtype == np.int64 and q.shape == (1, 10)
    assert abs(int(q.sum()) - (1 << 20)) <= 10  # probabilities sum to 1 on the 2^-20 grid


@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {"x": np.zeros((1, 64), np.float64)},
        {"x": np.zeros((2, 64), np.float32)},
        {"x": np.zeros((1, 64), np.float32), "extra": np.zeros(1)},
        {"y": np.zeros((1, 64), np.float32)},
    ],
)
def test_wrong_inputs_are_a_verdict(inputs: dict[str, np.ndarray]) -> None:
    result = LocalExecutor().run_batch([InferJob(package("digits_mlp"), inputs)])[0]
    assert isinstance(result.error, InputMismatch) and result.outputs is None


def _gather_package() -> ModelPackage:
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "table")
    model = make_model(
        [helper.make_node("Gather", ["table", "i"], ["y"])],
        [tensor("i", TensorProto.INT64, (2,))],
        [tensor("y", F, (2, 3))],
        [table],
    )
    return _raw_package(b"gather", model, (ArraySpec("i", "int64", (2,)),))


def test_an_onnx_runtime_error_is_a_local_fault_never_a_verdict() -> None:
    """ORT's errors are not sorted by their text: a Gather index out of range (INVALID_ARGUMENT) and a thread
    or memory failure look alike from here, and a committed INFERENCE_FAILED for an exact model is evidence
    that slashes. Only our own checks are verdicts; whatever ORT raises is this node's fault."""
    pkg = _gather_package()
    executor = LocalExecutor()
    ok = executor.run_batch([InferJob(pkg, {"i": np.array([0, 3], np.int64)})])[0]
    assert ok.outputs is not None and ok.outputs["y"].tolist() == [[0, 65536, 131072], [589824, 655360, 720896]]
    with pytest.raises(RuntimeFault, match="runtime failed: InvalidArgument") as fault:
        executor.run_batch([InferJob(pkg, {"i": np.array([0, 99], np.int64)})])
    assert isinstance(fault.value, LocalFault) and not isinstance(fault.value, InferenceError)


def test_an_onnx_runtime_error_in_a_worker_is_a_local_fault_and_the_pool_recovers() -> None:
    pkg = _gather_package()
    with WorkerPool(size=1) as pool:
        with pytest.raises(WorkerFault, match="runtime failed: InvalidArgument"):
            pool.run_batch([InferJob(pkg, {"i": np.array([0, 99], np.int64)})])
        assert pool.run_batch([InferJob(pkg, {"i": np.array([1, 2], np.int64)})])[0].ok


def test_only_our_own_checks_are_inference_verdicts() -> None:
    """The closed list: wrong inputs (checked before the run), non-finite and off-grid outputs (after)."""
    pkg = _raw_package(b"exp", make_model([helper.make_node("Exp", ["x"], ["y"])], [tensor("x", F, (1, 2))],
                                          [tensor("y", F, (1, 2))]), (ArraySpec("x", "float32", (1, 2)),))
    results = LocalExecutor().run_batch([
        InferJob(pkg, {"x": np.zeros((1, 3), np.float32)}),
        InferJob(pkg, {"x": np.array([[1.0, 100.0]], np.float32)}),  # e^100 is inf in float32
        InferJob(pkg, {"x": np.array([[1.0, 40.0]], np.float32)}),  # e^40 * 2^16 does not fit int64
        InferJob(pkg, {"x": np.array([[0.0, 1.0]], np.float32)}),
    ])
    assert [type(r.error) for r in results] == [InputMismatch, NonFiniteOutput, OffGridOutput, type(None)]


def test_a_model_the_runtime_has_no_kernel_for_is_refused_at_registration() -> None:
    """ORT's refusal of the bytes (NOT_IMPLEMENTED here: no int16 Relu kernel) is on the closed list of
    registration verdicts; the same failure can then never reach inference."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", TensorProto.INT16, (2,))],
                       [tensor("y", TensorProto.INT16, (2,))])
    spec = ModelSpec((ArraySpec("x", "int16", (2,)),), CompareMode.EXACT)
    canonical = canonicalize(model.SerializeToString(), spec.input_shapes)
    result = LocalExecutor().run_batch([CheckJob(canonical, spec)])[0]
    assert isinstance(result.error, InvalidModel) and "runtime refuses the model" in str(result.error)
    assert "NOT_IMPLEMENTED" in str(result.error)


def test_non_finite_output_is_a_verdict() -> None:
    model = make_model([helper.make_node("Log", ["x"], ["y"])], [tensor("x", F, (1, 2))], [tensor("y", F, (1, 2))])
    pkg = _raw_package(b"log", model, (ArraySpec("x", "float32", (1, 2)),))
    result = LocalExecutor().run_batch([InferJob(pkg, {"x": np.array([[1.0, 0.0]], np.float32)})])[0]
    assert isinstance(result.error, NonFiniteOutput)


def test_check_jobs_return_info_or_verdict() -> None:
    model = load_model("poi_mix")
    good, bad = LocalExecutor().run_batch(
        [CheckJob(model.model_bytes, model.spec), CheckJob(model.model_bytes[:100], model.spec)]
    )
    assert good.info is not None and good.info.gas_per_call == model.gas_per_call
    assert bad.error is not None and bad.info is None


def _tampered(name: str) -> ModelPackage:
    pkg = package(name)
    assert pkg.golden is not None
    case = pkg.golden.cases[0]
    wrong = {k: v + 1 for k, v in case.outputs.items()}
    return ModelPackage(b"tampered-" + pkg.model_id, pkg.model_bytes, pkg.spec, make_golden([(case.inputs, wrong)]))


def test_golden_mismatch_quarantines_the_model() -> None:
    executor = LocalExecutor()
    bad = _tampered("poi_mix")
    job = InferJob(bad, bad.golden.cases[0].inputs)  # type: ignore[union-attr]
    with pytest.raises(GoldenMismatch) as raised:
        executor.run_batch([job])
    assert isinstance(raised.value, LocalFault) and raised.value.model_id == bad.model_id
    assert bad.model_id in executor.quarantined
    with pytest.raises(GoldenMismatch, match="quarantined"):
        executor.run_batch([job])
    good = package("poi_mix")
    assert executor.run_batch([InferJob(good, good.golden.cases[0].inputs)])[0].ok  # type: ignore[union-attr]


def test_tolerant_golden_within_tolerance_is_accepted() -> None:
    pkg = package("digits_mlp")
    assert pkg.golden is not None
    case = pkg.golden.cases[0]
    nudged = {k: v + pkg.spec.tolerance.t_abs for k, v in case.outputs.items()}
    near = ModelPackage(b"near", pkg.model_bytes, pkg.spec, make_golden([(case.inputs, nudged)]))
    assert LocalExecutor().run_batch([InferJob(near, case.inputs)])[0].ok


def test_session_cache_is_bounded_by_bytes() -> None:
    runner = Runner(cache_bytes=1)  # every load evicts the previous model
    a, b = package("poi_mix"), package("digits_int8")
    for pkg in (a, b, a):
        assert pkg.golden is not None
        assert runner.infer(pkg.model_id, pkg, pkg.golden.cases[0].inputs).ok
        assert runner.cached_ids() == frozenset({pkg.model_id})


def test_pinned_models_survive_eviction_within_a_batch() -> None:
    runner = Runner(cache_bytes=1)
    a, b = package("poi_mix"), package("digits_int8")
    pinned = frozenset({a.model_id, b.model_id})
    for pkg in (a, b):
        runner.infer(pkg.model_id, pkg, pkg.golden.cases[0].inputs, pinned)  # type: ignore[union-attr]
    assert runner.cached_ids() == pinned
    assert runner.infer(a.model_id, None, a.golden.cases[0].inputs, pinned).ok  # type: ignore[union-attr]
