"""The committed models: files match the manifest, the chain accepts them as declared, golden vectors
reproduce, the PoI digest carries real entropy, the quantized classifier still classifies, and the
generator reproduces the committed bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vm.models import MODELS_DIR, POI_MODEL, load_model, manifest, model_names
from vm.sandbox.check import validate_model
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.spec import CompareMode

pytestmark = pytest.mark.vm


def run(name: str, inputs: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    model = load_model(name)
    pkg = ModelPackage(name.encode(), model.model_bytes, model.spec, model.golden)
    results = LocalExecutor().run_batch([InferJob(pkg, x) for x in inputs])
    assert all(r.outputs is not None for r in results)
    return [dict(r.outputs) for r in results if r.outputs is not None]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's bundled digits CSV, read without importing sklearn (seconds of import time)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations, "scikit-learn (the models extra): run make install"
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def test_manifest_lists_every_file_with_its_hash() -> None:
    assert set(model_names()) == {"digits_mlp", "digits_int8", "poi_mix"}
    for entry in manifest()["models"]:
        for key, file_key in (("sha256", "file"), ("golden_sha256", "golden")):
            data = (MODELS_DIR / entry[file_key]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry[key]
        assert len((MODELS_DIR / entry["file"]).read_bytes()) < 64 << 10  # small enough to commit


@pytest.mark.parametrize("name", ["digits_mlp", "digits_int8", "poi_mix"])
def test_chain_accepts_each_model_as_declared(name: str) -> None:
    model = load_model(name)
    info = validate_model(model.model_bytes, model.spec)
    assert (info.gas_per_call, info.macs, info.outputs) == (model.gas_per_call, model.macs, model.outputs)


def test_declared_classes() -> None:
    assert load_model("digits_mlp").spec.model_class is CompareMode.TOLERANT
    assert load_model("digits_int8").spec.model_class is CompareMode.EXACT
    assert load_model(POI_MODEL).spec.model_class is CompareMode.EXACT


def test_poi_digest_is_a_high_entropy_integer_tensor() -> None:
    model = load_model(POI_MODEL)
    (out,) = model.outputs
    assert out.dtype == "int32" and out.shape == (1, 16)  # 16 values of 31 bits: >= 64 bits
    rng = np.random.default_rng(99)
    challenges = [rng.integers(0, 256, size=(1, 64), dtype=np.uint8) for _ in range(64)]
    digests = np.stack([r["digest"][0] for r in run(POI_MODEL, [{"challenge": c} for c in challenges])])
    assert len({d.tobytes() for d in digests}) == 64
    assert len(set(digests.ravel().tolist())) == digests.size  # no repeated 31-bit value across 1024
    assert digests.min() >= 0 and digests.max() < 2**31 - 1
    bits = np.unpackbits(digests.astype(">u4").view(np.uint8)).reshape(-1, 32)[:, 1:]  # 31 payload bits
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.1)


def test_poi_digest_changes_everywhere_when_one_byte_changes() -> None:
    base = np.arange(64, dtype=np.uint8).reshape(1, 64)
    flipped = base.copy()
    flipped[0, 17] ^= 1
    a, b = (r["digest"] for r in run(POI_MODEL, [{"challenge": base}, {"challenge": flipped}]))
    assert np.all(a != b)


def test_quantized_classifier_agrees_with_the_float_model() -> None:
    pixels, labels = _digits()
    held_out = pixels[1500:1700]
    floats = run("digits_mlp", [{"x": (p / 16.0).astype(np.float32).reshape(1, 64)} for p in held_out])
    ints = run("digits_int8", [{"u": (p * 15).astype(np.uint8).reshape(1, 64)} for p in held_out])
    float_pred = np.array([int(np.argmax(o["probabilities"])) for o in floats])
    int_pred = np.array([int(np.argmax(o["scores"])) for o in ints])
    assert (float_pred == labels[1500:1700]).mean() > 0.85
    assert (int_pred == labels[1500:1700]).mean() > 0.85
    assert (int_pred == float_pred).mean() > 0.95


@pytest.mark.slow
def test_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    from tools.models import generate

    out = tmp_path
    regenerated = generate(out)
    assert regenerated == json.loads((MODELS_DIR / "manifest.json").read_text())
    for entry in regenerated["models"]:
        for key in ("file", "golden"):
            assert (out / entry[key]).read_bytes() == (MODELS_DIR / entry[key]).read_bytes()
