"""Generate the committed demo and PoI models, their golden vectors and manifest.json.

Regenerate with `make models` or `python -m tools.models [--out DIR]` (needs the `models` extra:
scikit-learn, skl2onnx). Everything is seeded and single-threaded, so a run with the pinned versions
reproduces the committed bytes (tests/vm/test_models.py checks this). The models:

  digits_mlp      tolerant  float MLP 64-32-10 trained on sklearn's bundled digits; output: class scores
                            (probabilities) only, no ArgMax/ZipMap; Softmax split by the canonicalizer.
  digits_int8     exact     the same MLP quantized to integer-only form: uint8 input, MatMulInteger with
                            uint8 weights (zero point 128), int32 bias, integer requantization; output:
                            int32 class scores.
  poi_mix         exact     proof-of-inference mixer: uint8[1,64] challenge -> three MatMulInteger layers
                            with modular int64 mixing -> int32[1,16] digest (16 x 31 bits).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

from vm.models import MODELS_DIR
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.check import validate_model
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.golden import encode_golden, make_golden
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

OPSET = 17
SEED = 20240601
# Digits pixels are 0..16; the integer models take them scaled to 0..240 as uint8.
PIXEL_SCALE = 15
MOD_PRIME = 2_147_483_647  # 2^31 - 1


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[TensorProto]) -> ModelProto:
    graph = helper.make_graph(nodes, "main", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


def _train_mlp(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a small demo model, deliberately few epochs
        return MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(x[:1500] / 16.0, y[:1500])


def build_digits_mlp(clf: Any) -> bytes:
    """skl2onnx export stripped to the score tensor (no label output, so no ArgMax/ZipMap), canonicalized."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        clf,
        initial_types=[("x", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    keep = [o for o in onx.graph.output if o.name == "probabilities"]
    del onx.graph.output[:]
    onx.graph.output.extend(keep)
    return canonicalize(onx.SerializeToString(), {"x": (1, 64)})


def build_digits_int8(clf: Any, x_train: np.ndarray) -> bytes:
    """Integer-only quantization of the MLP: exact class, uint8 activations, uint8 weights (zp 128)."""
    w1, w2 = (np.asarray(c, dtype=np.float64) for c in clf.coefs_)
    b1, b2 = (np.asarray(c, dtype=np.float64) for c in clf.intercepts_)
    # Input: u = pixels * 15 (0..240) so the float input is u / 240.
    s_w1 = np.abs(w1).max() / 127.0
    w1q = np.clip(np.rint(w1 / s_w1), -127, 127).astype(np.int8)
    # acc1 = sum(u * w1q) = z1 * 240 / s_w1 (without bias): bias in the same units.
    b1q = np.rint(b1 * 240.0 / s_w1).astype(np.int32)
    u_train = np.rint(x_train * PIXEL_SCALE)
    r = np.maximum(u_train @ w1q.astype(np.float64) + b1q, 0)
    z1_max = float(r.max()) * s_w1 / 240.0
    s_a = z1_max / 255.0
    # a1 = round(r * s_w1 / (240 * s_a)) in fixed point with 16 fraction bits.
    mult = int(np.rint(s_w1 / (240.0 * s_a) * 65536.0))
    s_w2 = np.abs(w2).max() / 127.0
    w2q = np.clip(np.rint(w2 / s_w2), -127, 127).astype(np.int8)
    b2q = np.rint(b2 / (s_a * s_w2)).astype(np.int32)

    def i64(v: int) -> np.ndarray:
        return np.array(v, dtype=np.int64)

    nodes = [
        helper.make_node("MatMulInteger", ["u", "w1", "", "w1_zp"], ["acc1"]),
        helper.make_node("Add", ["acc1", "b1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["r1"]),
        helper.make_node("Cast", ["r1"], ["r1_64"], to=TensorProto.INT64),
        helper.make_node("Mul", ["r1_64", "mult"], ["m1"]),
        helper.make_node("Add", ["m1", "half"], ["m1r"]),
        helper.make_node("Div", ["m1r", "one16"], ["q1"]),
        helper.make_node("Clip", ["q1", "lo", "hi"], ["q1c"]),
        helper.make_node("Cast", ["q1c"], ["a1"], to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", ["a1", "w2", "", "w2_zp"], ["acc2"]),
        helper.make_node("Add", ["acc2", "b2"], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(w1q, "w1"),
        numpy_helper.from_array(np.array(0, np.int8), "w1_zp"),
        numpy_helper.from_array(b1q, "b1"),
        numpy_helper.from_array(i64(mult), "mult"),
        numpy_helper.from_array(i64(1 << 15), "half"),
        numpy_helper.from_array(i64(1 << 16), "one16"),
        numpy_helper.from_array(i64(0), "lo"),
        numpy_helper.from_array(i64(255), "hi"),
        numpy_helper.from_array(w2q, "w2"),
        numpy_helper.from_array(np.array(0, np.int8), "w2_zp"),
        numpy_helper.from_array(b2q, "b2"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("u", TensorProto.UINT8, [1, 64])],
        [helper.make_tensor_value_info("scores", TensorProto.INT32, [1, 10])],
        inits,
    )
    # The canonicalizer moves the int8 weights to uint8 with zero point 128.
    return canonicalize(model.SerializeToString(), {"u": (1, 64)})


def build_poi_mix() -> bytes:
    """Integer mixer with a high-entropy digest: MatMulInteger layers joined by x*P + C mod (2^31 - 1)."""
    rng = np.random.default_rng(SEED)
    nodes: list[Any] = []
    inits: list[TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def layer(tag: str, src: str, fan_in: int, fan_out: int) -> str:
        """uint8 [1,fan_in] -> MatMulInteger -> int64 -> (x * P + C) mod p in [0, p)."""
        w = const(f"{tag}_w", rng.integers(0, 256, size=(fan_in, fan_out), dtype=np.uint8))
        zp = const(f"{tag}_zp", np.array(128, np.uint8))
        p = const(f"{tag}_p", rng.integers(1 << 20, 1 << 31, size=(1, fan_out), dtype=np.int64))
        c = const(f"{tag}_c", rng.integers(0, MOD_PRIME, size=(1, fan_out), dtype=np.int64))
        nodes.extend(
            [
                helper.make_node("MatMulInteger", [src, w, "", zp], [f"{tag}_acc"]),
                helper.make_node("Cast", [f"{tag}_acc"], [f"{tag}_acc64"], to=TensorProto.INT64),
                helper.make_node("Mul", [f"{tag}_acc64", p], [f"{tag}_mul"]),
                helper.make_node("Add", [f"{tag}_mul", c], [f"{tag}_add"]),
                helper.make_node("Mod", [f"{tag}_add", "prime"], [f"{tag}_h"]),
            ]
        )
        return f"{tag}_h"

    def to_bytes(tag: str, h: str) -> str:
        """Low byte and bits 16..23 of each value, side by side, as the next layer's uint8 input."""
        nodes.extend(
            [
                helper.make_node("Mod", [h, "b256"], [f"{tag}_lo"]),
                helper.make_node("Div", [h, "b65536"], [f"{tag}_shr"]),
                helper.make_node("Mod", [f"{tag}_shr", "b256"], [f"{tag}_hi"]),
                helper.make_node("Concat", [f"{tag}_lo", f"{tag}_hi"], [f"{tag}_cat"], axis=1),
                helper.make_node("Cast", [f"{tag}_cat"], [f"{tag}_u8"], to=TensorProto.UINT8),
            ]
        )
        return f"{tag}_u8"

    const("prime", np.array(MOD_PRIME, np.int64))
    const("b256", np.array(256, np.int64))
    const("b65536", np.array(65536, np.int64))
    h1 = layer("l1", "challenge", 64, 128)
    h2 = layer("l2", to_bytes("l1", h1), 256, 64)
    h3 = layer("l3", to_bytes("l2", h2), 128, 16)
    nodes.append(helper.make_node("Cast", [h3], ["digest"], to=TensorProto.INT32))
    model = _model(
        nodes,
        [helper.make_tensor_value_info("challenge", TensorProto.UINT8, [1, 64])],
        [helper.make_tensor_value_info("digest", TensorProto.INT32, [1, 16])],
        inits,
    )
    return canonicalize(model.SerializeToString(), {"challenge": (1, 64)})


def _golden(model_bytes: bytes, spec: ModelSpec, cases: list[dict[str, np.ndarray]]) -> bytes:
    package = ModelPackage(b"generate", model_bytes, spec)
    results = LocalExecutor().run_batch([InferJob(package, inputs) for inputs in cases])
    outputs = []
    for result in results:
        if result.outputs is None:
            raise RuntimeError(f"golden input failed: {result.error}")
        outputs.append(dict(result.outputs))
    return encode_golden(make_golden(list(zip(cases, outputs, strict=True))))


def _entry(name: str, model_bytes: bytes, spec: ModelSpec, golden: bytes, about: str) -> dict[str, Any]:
    info = validate_model(model_bytes, spec)
    return {
        "name": name,
        "about": about,
        "file": f"{name}.onnx",
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "class": str(spec.model_class),
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in info.outputs],
        "grid_k": spec.grid_k,
        "t_abs": spec.tolerance.t_abs,
        "t_rel_ppm": spec.tolerance.t_rel_ppm,
        "golden": f"{name}.golden.npz",
        "golden_sha256": hashlib.sha256(golden).hexdigest(),
        "gas_per_call": info.gas_per_call,
        "macs": info.macs,
    }


def generate(out_dir: Path) -> dict[str, Any]:
    """Build, check and write every model, its golden vectors and the manifest; returns the manifest."""
    x, y = _digits()
    clf = _train_mlp(x, y)
    held_out = x[1500:1504]
    rng = np.random.default_rng(SEED + 1)
    builds: list[tuple[str, Callable[[], bytes], ModelSpec, list[dict[str, np.ndarray]], str]] = [
        (
            "digits_mlp",
            lambda: build_digits_mlp(clf),
            ModelSpec((ArraySpec("x", "float32", (1, 64)),), CompareMode.TOLERANT, 20, Tolerance(32, 200)),
            [{"x": (row / 16.0).astype(np.float32).reshape(1, 64)} for row in held_out],
            "float MLP on sklearn digits (pixels / 16); outputs class probabilities on the 2^-20 grid",
        ),
        (
            "digits_int8",
            lambda: build_digits_int8(clf, x[:1500]),
            ModelSpec((ArraySpec("u", "uint8", (1, 64)),), CompareMode.EXACT),
            [{"u": (row * PIXEL_SCALE).astype(np.uint8).reshape(1, 64)} for row in held_out],
            "integer-only quantized digits MLP (pixels * 15 as uint8); outputs int32 class scores",
        ),
        (
            "poi_mix",
            build_poi_mix,
            ModelSpec((ArraySpec("challenge", "uint8", (1, 64)),), CompareMode.EXACT),
            [{"challenge": rng.integers(0, 256, size=(1, 64), dtype=np.uint8)} for _ in range(4)],
            "proof-of-inference mixer: uint8[1,64] challenge -> int32[1,16] digest",
        ),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, build, spec, cases, about in builds:
        model_bytes = build()
        golden = _golden(model_bytes, spec, cases)
        (out_dir / f"{name}.onnx").write_bytes(model_bytes)
        (out_dir / f"{name}.golden.npz").write_bytes(golden)
        entries.append(_entry(name, model_bytes, spec, golden, about))
    manifest = {"format": 1, "opset": OPSET, "models": entries}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output directory (default: vm/models)")
    args = parser.parse_args()
    manifest = generate(args.out)
    for entry in manifest["models"]:
        print(f"{entry['name']:12} {entry['class']:9} gas {entry['gas_per_call']:>9}  sha256 {entry['sha256'][:16]}")


if __name__ == "__main__":
    main()
