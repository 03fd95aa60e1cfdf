"""Kernel machines and label mappings as scikit-learn users export them (skl2onnx, zipmap=False): SVC (linear
and RBF kernels, calibrated probabilities), SVR, OrdinalEncoder's LabelEncoders and a LabelEncoder of integer
labels, prepared by the client path, registered by chunk transactions and called on two nodes whose sandboxes
are real worker pools (node 1's started under a hostile threading environment); the committed outputs match
raw ONNX Runtime and scikit-learn. The discontinuous uses are refused with their reason (docs/sandbox.md,
"Ops added for the models people have")."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OrdinalEncoder
from sklearn.svm import SVC, SVR

from core.errors import InvalidModel
from core.hashing import sha256
from core.header import TxStatus
from core.tensor import Tensor
from core.types import Amount
from node.cli.model_cmd import prepare_model
from node.modelprep import upgrade
from tests.vm.devnet import Devnet
from tests.vm.helpers import upload_txs
from tests.vm.test_vm_worker import THREAD_ENV
from tools.attacks import canonical, make_model, spec
from tools.attacks import tensor as vi
from vm.genesis import Genesis
from vm.sandbox.check import validate_model
from vm.sandbox.executor import InferJob, ModelPackage
from vm.sandbox.meter import meter
from vm.sandbox.ops import LABEL_ENCODER_WEIGHT, SVM_COUPLING_WEIGHT, SVM_KERNEL_WEIGHT, SVM_LOOP_WEIGHT
from vm.sandbox.session import create_session
from vm.sandbox.spec import CompareMode, Tolerance
from vm.sandbox.worker import WorkerPool
from vm.state import RegistrationData
from vm.txs import Infer, ModelMeta

pytestmark = pytest.mark.vm

K = 20
ROWS = 4
ML = ("ai.onnx.ml", 3)
F, _I64 = TensorProto.FLOAT, TensorProto.INT64
TOLERANT = {"model_class": CompareMode.TOLERANT, "grid_k": K, "tolerance": Tolerance(32, 200)}


def _iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _export(estimator: Any, x: np.ndarray, zipmap: bool = True) -> onnx.ModelProto:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if zipmap else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) is deprecated in scikit-learn
        return to_onnx(estimator, x[:1], options=options, target_opset={"": 13, "ai.onnx.ml": 3})


def _without(model: onnx.ModelProto, output: str) -> bytes:
    keep = [o for o in model.graph.output if o.name != output]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model.SerializeToString()


def _prepare(model_bytes: bytes, name: str, golden: np.ndarray, exact: bool = False) -> tuple[bytes, ModelMeta]:
    up = upgrade(model_bytes)
    if exact:
        tolerance = {"model_class": "exact", "grid_k": 0, "tol_abs": 0, "tol_rel_ppm": 0}
    else:
        tolerance = {"model_class": "tolerant", "grid_k": K, "tol_abs": 32, "tol_rel_ppm": 200}
    return prepare_model(up.model_bytes, name=name, fee_per_call=0, input_shapes={"X": list(golden.shape)},
                         golden_inputs=[{"X": golden}], **tolerance)  # type: ignore[arg-type]


class Case:
    """One exported model: what the chain registers, what a call sends, and scikit-learn's answer."""

    def __init__(self, name: str, model_bytes: bytes, golden: np.ndarray, query: np.ndarray, expected: np.ndarray,
                 exact: bool = False) -> None:
        self.name, self.query, self.expected, self.exact = name, query, expected, exact
        self.canonical, self.meta = _prepare(model_bytes, name, golden, exact)


def _cases() -> list[Case]:
    x, y = _iris()
    golden, query = x[[0, 60, 120, 140]], x[[10, 70, 110, 149]]
    versicolor = (y == 1).astype(np.int64)  # not linearly separable from the rest: the RBF kernel matters
    rbf = SVC(kernel="rbf", gamma=0.5).fit(x, versicolor)
    ovo = SVC(kernel="linear", decision_function_shape="ovo").fit(x, y)
    svr = SVR(kernel="rbf", C=10.0).fit(x[:, :3], x[:, 3])
    calibrated = CalibratedClassifierCV(SVC(), ensemble=False).fit(x, versicolor)
    # OrdinalEncoder on float categories: skl2onnx emits one float-keyed LabelEncoder per column.
    cats = np.round(x * 2) / 2
    ordinal = make_pipeline(OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            LogisticRegression(max_iter=500)).fit(cats, y)
    labels = LabelEncoder().fit(np.array([3, 7, 11, 42], dtype=np.int64))
    int_golden, int_query = np.array([3, 7, 11, 42], np.int64), np.array([42, 3, 3, 11], np.int64)
    return [
        # Binary decisions: skl2onnx writes [s, -s] for scikit-learn's decision_function s.
        Case("svc-rbf", _without(_export(rbf, x), "label"), golden, query,
             np.stack([rbf.decision_function(query), -rbf.decision_function(query)], axis=1)),
        Case("svc-linear-ovo", _without(_export(ovo, x), "label"), golden, query, ovo.decision_function(query)),
        Case("svr-rbf", _export(svr, x[:, :3], zipmap=False).SerializeToString(), golden[:, :3], query[:, :3],
             svr.predict(query[:, :3])[:, None]),
        Case("svc-calibrated", _without(_export(calibrated, x), "label"), golden, query,
             calibrated.predict_proba(query)),
        Case("ordinal-logistic", _without(_export(ordinal, cats), "label"), cats[[0, 60, 120, 140]],
             cats[[10, 70, 110, 149]], ordinal.predict_proba(cats[[10, 70, 110, 149]])),
        Case("label-encoder", _export(labels, int_golden, zipmap=False).SerializeToString(), int_golden, int_query,
             labels.transform(int_query), exact=True),
    ]


@pytest.fixture
def pools(tmp_path: Path, genesis: Genesis,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Devnet, WorkerPool, WorkerPool]]:
    """Two nodes on real worker pools; node 1's worker inherits a hostile threading environment."""
    plain = WorkerPool(1)
    plain.start()
    with monkeypatch.context() as m:
        for key, value in THREAD_ENV.items():
            m.setenv(key, value)
        hostile = WorkerPool(1)
        hostile.start()
    net = Devnet.start(tmp_path, genesis, executors=[lambda: plain, lambda: hostile])
    try:
        yield net, plain, hostile
    finally:
        net.close()
        plain.close()
        hostile.close()


def test_svm_and_label_encoder_models_register_and_answer_alike_on_two_worker_pools(
        pools: tuple[Devnet, WorkerPool, WorkerPool]) -> None:
    net, plain, hostile = pools
    cases = _cases()
    owner, user = net.account(5), net.account(6)
    txs, nonce = [], 0
    for case in cases:
        upload = upload_txs(owner, case.canonical, case.meta, params=net.genesis.params,
                            chain_id=net.genesis.chain_id, first_nonce=nonce)
        txs += upload
        nonce += len(upload)
    block = net.step(txs)  # node 1 checks and golden-runs every registration in its own worker
    assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
    ids = [RegistrationData.decode(r.data).model_id for r in block.results]
    calls = [net.tx(user, Infer(model_id, (Tensor.from_numpy(case.query),), Amount(0)), gas_limit=2_000_000)
             for model_id, case in zip(ids, cases, strict=True)]
    block = net.step(calls)  # node 1 re-runs every call and must agree within the tolerance to accept
    assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
    assert net.alarms == []
    for case, result in zip(cases, block.results, strict=True):
        [committed] = result.outputs
        raw = ort.InferenceSession(case.canonical, providers=["CPUExecutionProvider"]).run(None, {"X": case.query})
        if case.exact:
            np.testing.assert_array_equal(committed.to_numpy(), raw[0], err_msg=case.name)
            np.testing.assert_array_equal(committed.to_numpy(), case.expected, err_msg=case.name)
            continue
        # The hostile environment changes no bit: the same job in both workers gives the same bytes.
        model_spec = spec(("X", str(case.query.dtype), case.query.shape), **TOLERANT)
        job = InferJob(ModelPackage(bytes(sha256(case.canonical)), case.canonical, model_spec), {"X": case.query})
        [mine], [theirs] = plain.run_batch([job]), hostile.run_batch([job])
        assert mine.outputs is not None and theirs.outputs is not None
        for name, value in mine.outputs.items():
            np.testing.assert_array_equal(theirs.outputs[name], value, err_msg=case.name)
        got = committed.to_numpy() / 2.0**K
        np.testing.assert_allclose(got, raw[0], atol=2.0**-K, rtol=0, err_msg=case.name)
        np.testing.assert_allclose(got, case.expected, atol=1e-4, rtol=1e-4, err_msg=case.name)


def test_svm_labels_probabilities_and_default_multiclass_decisions_are_refused_in_the_tolerant_class() -> None:
    x, y = _iris()
    golden = x[:ROWS]
    svc = SVC().fit(x, y)
    with pytest.raises(InvalidModel, match=r"reads the label of SVMClassifier .* commit the probabilities"):
        _prepare(_export(SVC(decision_function_shape="ovo").fit(x, y), x).SerializeToString(), "label", golden)
    # scikit-learn's default one-vs-rest decisions count votes: skl2onnx compares scores with Less.
    with pytest.raises(InvalidModel, match="discontinuous Less"):
        _prepare(_without(_export(svc, x), "label"), "ovr", golden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        probable = SVC(probability=True, random_state=0).fit(x, y)
    with pytest.raises(InvalidModel, match="pairwise coupling stops on a float test"):
        _prepare(_without(_export(probable, x), "label"), "proba", golden)


def _ml(nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> onnx.ModelProto:
    return make_model(nodes, inputs, outputs, extra_opsets=[ML])


def _svc(**attrs: Any) -> Any:
    base: dict[str, Any] = {
        "kernel_type": "LINEAR", "kernel_params": [0.0, 0.0, 0.0], "support_vectors": [1.0, -1.0],
        "vectors_per_class": [1, 1], "coefficients": [1.0, -1.0], "rho": [0.0], "classlabels_ints": [0, 1],
    }
    base.update(attrs)
    return helper.make_node("SVMClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
                            **{k: v for k, v in base.items() if v is not None})


def test_the_probability_coupling_jumps_where_the_refusal_says() -> None:
    """Why SVC probabilities are refused: libsvm's coupling solver (in ORT) stops when its error is below
    0.005 / classes, so two classes output exactly 0.5 until the pairwise probability leaves 0.5 +- 0.005,
    then jump. Measured on the pinned runtime: a step of 0.005, 1,000x the neighbouring ones."""
    model = _ml([_svc(prob_a=[-1.0], prob_b=[0.0])], [vi("x", F, (2001, 1))],
                [vi("label", TensorProto.INT64, None), vi("scores", F, None)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    xs = np.linspace(0.0, 0.02, 2001, dtype=np.float32).reshape(-1, 1)
    _, scores = session.run(None, {"x": xs})
    steps = np.abs(np.diff(scores[:, 0]))
    assert steps.max() > 0.004 and steps.max() > 500 * np.median(steps[steps > 0])
    s = spec(("x", "float32", (2001, 1)), **TOLERANT)
    unlabeled = _ml([_svc(prob_a=[-1.0], prob_b=[0.0])], [vi("x", F, (2001, 1))], [vi("scores", F, None)])
    with pytest.raises(InvalidModel, match="pairwise coupling"):
        validate_model(canonical(unlabeled, s), s)


def test_an_svm_label_is_refused_on_integer_inputs_too() -> None:
    """ORT casts integer features to float and sums kernels in float: the label is as discontinuous as on
    float inputs (the check used to look at ai.onnx.ml ops only when an input was a float)."""
    s = spec(("x", "int64", (2, 2)), **TOLERANT)
    model = _ml([_svc(support_vectors=[1.0, -1.0, 0.5, 0.5])], [vi("x", _I64, (2, 2))],
                [vi("label", _I64, None), vi("scores", F, None)])
    with pytest.raises(InvalidModel, match="reads the label of SVMClassifier"):
        validate_model(canonical(model, s), s)
    del model.graph.output[0]
    validate_model(canonical(model, s), s)


def test_label_encoder_forms_outside_the_safe_set_are_refused_with_their_reason() -> None:
    strings = LabelEncoder().fit(np.array(["a", "b", "c"]))
    with pytest.raises(InvalidModel, match="string tensor"):
        upgrade(_export(strings, np.array(["a"]), zipmap=False).SerializeToString())
    s = spec(("x", "float32", (2, 3)), **TOLERANT)
    scaled = _ml([helper.make_node("Scaler", ["x"], ["s"], domain="ai.onnx.ml", offset=[0.5], scale=[2.0]),
                  helper.make_node("LabelEncoder", ["s"], ["y"], domain="ai.onnx.ml", keys_floats=[0.0, 1.0],
                                   values_int64s=[5, 6])],
                 [vi("x", F, (2, 3))], [vi("y", TensorProto.INT64, None)])
    with pytest.raises(InvalidModel, match="LabelEncoder key lookups to computed float values"):
        validate_model(canonical(scaled, s), s)
    direct = _ml([helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_floats=[0.0, 1.0],
                                   values_int64s=[5, 6])],
                 [vi("x", F, (2, 3))], [vi("y", TensorProto.INT64, None)])
    validate_model(canonical(direct, s), s)  # keys looked up in the transaction's own (bit-exact) floats
    # A float -> int64 Cast of the same input stays refused: out-of-range values (NaN, 1e30) convert
    # differently on x86 (INT64_MIN) and ARM (saturation).
    cast = _ml([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)], [vi("x", F, (2, 3))],
               [vi("y", TensorProto.INT64, None)])
    with pytest.raises(InvalidModel, match="casts float values to int64"):
        validate_model(canonical(cast, s), s)


@pytest.mark.parametrize(("node", "expect", "runtime_accepts"), [
    (_svc(classlabels_ints=[4], vectors_per_class=[2], coefficients=[1.0, 1.0]), "2 to 4096 classes", True),
    (_svc(support_vectors=[1.0, -1.0, 0.5, 0.5, 1.0, 1.0]), "support vectors must be 2 x 2", True),
    (_svc(kernel_type="GAUSS"), "kernel_type", False),
    (_svc(kernel_params=None), "kernel_params", False),
    (_svc(rho=[0.0, 1.0]), "rho one per pair", True),
    (_svc(classlabels_ints=None, classlabels_strings=["a", "b"]), "dtype string", True),
    (helper.make_node("SVMRegressor", ["x"], ["y"], domain="ai.onnx.ml", kernel_params=[0.0, 0.0, 0.0],
                      n_supports=2, support_vectors=[1.0, 2.0], coefficients=[1.0, 1.0], rho=[0.0]),
     "n_supports x 2 support vectors", True),
    (helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_floats=[1.0, 1.0],
                      values_floats=[2.0, 3.0]), "keys must be distinct", True),
    (helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_floats=[1.0],
                      values_floats=[2.0], default_string="x"), "string keys, values or defaults", True),
], ids=["one-class", "short-vectors", "kernel-name", "no-kernel-params", "long-rho", "string-labels",
        "regressor-vectors", "duplicate-keys", "string-default"])
def test_svm_and_label_encoder_attributes_are_checked_before_the_runtime_sees_them(
        node: Any, expect: str, runtime_accepts: bool) -> None:
    """Each model breaks one attribute rule. Where ORT builds a session anyway (`runtime_accepts`), only the
    rule stands between the chain and uninitialized scores (one class), a feature count read off the
    attribute lengths rather than the input, or a map whose value depends on insertion order; elsewhere
    ORT fails generically when it builds the session, a local fault on every node."""
    out = vi("y", F, None) if node.op_type != "SVMClassifier" else vi("scores", F, None)
    outputs = [out] if node.op_type != "SVMClassifier" else [vi("label", _I64, None), out]
    model = _ml([node], [vi("x", F, (2, 2))], outputs)
    if node.op_type == "SVMClassifier":
        del model.graph.output[0]  # the tolerant class reads scores only
    s = spec(("x", "float32", (2, 2)), **TOLERANT)
    with pytest.raises(InvalidModel, match=expect):
        validate_model(canonical(model, s), s)
    if runtime_accepts:
        create_session(model.SerializeToString())


def test_svm_and_label_encoder_prices_are_their_hand_counts() -> None:
    """meter._svm_work and LabelEncoder's weight, counted by hand from ops' weights on 3 rows x 2 features."""
    rows, s = 3, spec(("x", "float32", (3, 2)), **TOLERANT)
    rbf = _svc(kernel_type="RBF", classlabels_ints=[0, 1, 2], vectors_per_class=[1, 2, 1],
               support_vectors=[0.5] * 8, coefficients=[1.0] * 8, rho=[0.0] * 3, prob_a=[-1.0] * 3, prob_b=[0.0] * 3)
    poly = helper.make_node("SVMRegressor", ["x"], ["r"], domain="ai.onnx.ml", kernel_type="POLY",
                            kernel_params=[1.0, 0.0, 2.0], n_supports=3, support_vectors=[0.5] * 6,
                            coefficients=[1.0] * 3, rho=[0.0])
    linear = helper.make_node("SVMClassifier", ["x"], ["l2", "c2"], domain="ai.onnx.ml", kernel_params=[0.0] * 3,
                              coefficients=[1.0] * 6, rho=[0.0], classlabels_ints=[0, 1, 2])
    lookup = helper.make_node("LabelEncoder", ["x"], ["e"], domain="ai.onnx.ml", keys_floats=[1.0], values_int64s=[1])
    model = _ml([rbf, poly, linear, lookup], [vi("x", F, (rows, 2))],
                [vi("scores", F, None), vi("r", F, None), vi("c2", F, None), vi("e", TensorProto.INT64, None)])
    counts = [(n.macs, n.elementwise) for n in meter(canonical(model, s), limits=s.limits).nodes]
    assert sorted(counts) == sorted([
        (0, rows * (8 * SVM_LOOP_WEIGHT + 8 * SVM_LOOP_WEIGHT + 4 * SVM_KERNEL_WEIGHT + 9 * SVM_COUPLING_WEIGHT)),
        (rows * 6, rows * (3 * SVM_LOOP_WEIGHT + 3 * SVM_KERNEL_WEIGHT)),
        (rows * 6, 0),
        (0, rows * 2 * LABEL_ENCODER_WEIGHT),
    ])
