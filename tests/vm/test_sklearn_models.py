"""scikit-learn models as people export them (skl2onnx, zipmap=False): prepared by the client path (upgrade,
canonicalize, the chain's checks), registered by chunk transactions in the in-process VM devnet, validated by
a second node, and called; the committed outputs match scikit-learn's own predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import InvalidModel
from core.header import TxStatus
from core.tensor import Tensor
from core.types import Amount
from node.cli.model_cmd import prepare_model
from node.modelprep import upgrade
from tests.vm.devnet import Devnet
from tests.vm.helpers import upload_txs
from vm.state import RegistrationData
from vm.txs import Infer, ModelMeta, split_model

pytestmark = pytest.mark.vm

K = 20
ROWS = 4


def _iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _export(estimator: Any, final: Any, x: np.ndarray) -> onnx.ModelProto:
    return to_onnx(estimator, x[:1], options={id(final): {"zipmap": False}},
                   target_opset={"": 13, "ai.onnx.ml": 3})


def _logistic() -> tuple[Any, onnx.ModelProto]:
    x, y = _iris()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipe.fit(x, y)
    return pipe, _export(pipe, pipe.steps[-1][1], x)


def _forest() -> tuple[Any, onnx.ModelProto]:
    x, y = _iris()
    forest = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0)
    forest.fit(x, y)
    return forest, _export(forest, forest, x)


def _without(model: onnx.ModelProto, output: str) -> bytes:
    keep = [o for o in model.graph.output if o.name != output]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model.SerializeToString()


def _prepare(model_bytes: bytes, name: str, golden: np.ndarray) -> tuple[bytes, ModelMeta]:
    up = upgrade(model_bytes)
    return prepare_model(up.model_bytes, name=name, model_class="tolerant", grid_k=K, tol_abs=32, tol_rel_ppm=200,
                         fee_per_call=0, input_shapes={"X": [ROWS, 4]}, golden_inputs=[{"X": golden}])


def test_tolerant_logistic_regression_refuses_its_label_and_zipmap_with_a_hint() -> None:
    _, model = _logistic()
    x, _ = _iris()
    with pytest.raises(InvalidModel, match="commit the probabilities, not the label"):
        _prepare(model.SerializeToString(), "lr", x[:ROWS])
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, _iris()[1])
    zipped = to_onnx(pipe, x[:1], target_opset={"": 13, "ai.onnx.ml": 3})
    with pytest.raises(InvalidModel, match="export with zipmap=False"):
        _prepare(_without(zipped, "output_label"), "zip", x[:ROWS])


def test_sklearn_pipelines_register_on_chain_and_answer_like_sklearn(net: Devnet) -> None:
    x, _ = _iris()
    rows = x[[0, 60, 120, 140]]
    logistic, lr_model = _logistic()
    forest, rf_model = _forest()
    owner, user = net.account(5), net.account(6)
    prepared = [_prepare(_without(lr_model, "label"), "iris-logistic", rows),
                _prepare(rf_model.SerializeToString(), "iris-forest", rows)]
    txs, nonce = [], 0
    for canonical, meta in prepared:
        upload = upload_txs(owner, canonical, meta, params=net.genesis.params, chain_id=net.genesis.chain_id,
                            first_nonce=nonce)
        txs += upload
        nonce += len(upload)
    block = net.step(txs)  # node 1 validates the same registrations with its own engine
    assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
    ids = [RegistrationData.decode(r.data).model_id for r in block.results]
    assert ids == [split_model(c, m)[0].model_id for c, m in prepared]
    queries = x[[10, 70, 110, 149]]
    call = Tensor.from_numpy(queries)
    block = net.step([net.tx(user, Infer(model_id, (call,), Amount(0)), gas_limit=2_000_000) for model_id in ids])
    assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
    [lr_probs] = block.results[0].outputs
    np.testing.assert_allclose(lr_probs.to_numpy() / 2.0**K, logistic.predict_proba(queries), atol=1e-5)
    labels, rf_probs = block.results[1].outputs
    # Tree decisions on the transaction's own float input are bit-exact: the label is committed as is.
    np.testing.assert_array_equal(labels.to_numpy(), forest.predict(queries))
    np.testing.assert_allclose(rf_probs.to_numpy() / 2.0**K, forest.predict_proba(queries), atol=1e-6)


def test_tree_decisions_on_computed_floats_are_refused_in_the_tolerant_class() -> None:
    """A forest after a scaler compares thresholds with values computed in floating point: near a threshold
    honest CPUs could take different branches, so the tolerant class refuses it (on the raw input it is fine)."""
    x, y = _iris()
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0))
    pipe.fit(x, y)
    model = _export(pipe, pipe.steps[-1][1], x)
    with pytest.raises(InvalidModel, match="TreeEnsembleClassifier decisions to computed float values"):
        _prepare(model.SerializeToString(), "scaled-forest", x[:ROWS])
