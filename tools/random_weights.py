"""Seeded random weights in a model's own architecture.

onnx's shipped `light` CNNs carry constant weights (every weight a ConstantOfShape of 0.02, or a constant
initializer), so their outputs are uniform and prove little numerically. `randomize_weights` keeps the graph
and replaces every float weight with seeded random values of a scale that keeps activations finite and
varied through a deep network:

  Conv / Gemm / MatMul weights   He normal: N(0, 2 / fan_in)
  their biases                   N(0, 0.01^2)
  BatchNormalization             scale 1 + N(0, 0.1^2), bias and mean N(0, 0.1^2), variance U(0.5, 1.5)
  any other float weight         N(0, 0.05^2)

Without batch statistics nothing renormalizes a deep network, so its logits can grow until the softmax is one
hot (ShuffleNet's do). Where the graph ends in a Softmax, the last Conv/Gemm/MatMul's weight and bias are
then scaled so the logits' standard deviation on a seeded normal input is `LOGIT_STD` (exact when only
positively homogeneous ops lie between them, such as Relu, pooling and reshapes, as in the light CNNs).

A weight is a float initializer, or the output of a ConstantOfShape whose shape is an initializer (the
light models materialize their weights this way): that node is replaced by an initializer of the shape it
would build. The model's IR and opset are kept (an IR < 4 graph lists its initializers among its inputs, so
new ones are listed too), so the result goes through `inferchain model register`'s conversion like the
shipped file. Integer tensors (shapes, indices) are never touched.

Materialized weights take their full size (4 bytes per float32), where a ConstantOfShape took a few bytes.
`max_bytes` bounds the float weights' bytes: the largest convolution weights then stay their shipped
ConstantOfShape nodes, as few as it takes (Inception v2's 44.9 MB of random weights are over what one
registration can pay on the default genesis: tests/e2e/test_real_models.py).

    python -m tools.random_weights IN.onnx OUT.onnx [--seed N] [--max-bytes B]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

_FLOATS: dict[int, np.dtype[Any]] = {TensorProto.FLOAT: np.dtype(np.float32), TensorProto.DOUBLE: np.dtype(np.float64),
                                     TensorProto.FLOAT16: np.dtype(np.float16)}
_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")
LOGIT_STD = 2.0


def _role(model: ModelProto, name: str) -> tuple[str, int, onnx.NodeProto | None]:
    """The first consumer's op type and the input slot `name` fills there."""
    for node in model.graph.node:
        for slot, inp in enumerate(node.input):
            if inp == name:
                return node.op_type, slot, node
    return "", -1, None


def _fan_in(op: str, shape: tuple[int, ...], node: onnx.NodeProto | None) -> int:
    if op == "Gemm" and node is not None:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return shape[1] if trans_b and len(shape) > 1 else shape[0]
    if op == "MatMul":
        return shape[-2] if len(shape) > 1 else shape[0]
    return int(np.prod(shape[1:])) if len(shape) > 1 else max(shape[0] if shape else 1, 1)


def random_weight(op: str, slot: int, node: onnx.NodeProto | None, shape: tuple[int, ...],
                  rng: np.random.Generator) -> np.ndarray:
    """Values for the weight in input `slot` of an `op` node (see the module docstring for the scales)."""
    if op in _LINEAR and slot == 1:
        return rng.normal(0.0, np.sqrt(2.0 / max(_fan_in(op, shape, node), 1)), shape)
    if op in _LINEAR and slot == 2:
        return rng.normal(0.0, 0.01, shape)
    if op == "BatchNormalization" and slot in (1, 2, 3, 4):
        if slot == 4:
            return rng.uniform(0.5, 1.5, shape)
        return (1.0 if slot == 1 else 0.0) + rng.normal(0.0, 0.1, shape)
    return rng.normal(0.0, 0.05, shape)


def randomize_weights(model_bytes: bytes, seed: int, *, max_bytes: int | None = None) -> bytes:
    """The model with every float weight replaced by seeded random values (same architecture, same IR and
    opset); the same bytes and seed always give the same model. `max_bytes` bounds the float weights' bytes
    after materialization: the largest convolution weights stay their shipped ConstantOfShape nodes until
    the rest fit (see `_kept_constant`)."""
    model = onnx.load_from_string(model_bytes)
    rng = np.random.default_rng(seed)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    listed = {i.name for i in graph.input}
    kept = _kept_constant(model, inits, max_bytes)
    # ConstantOfShape nodes whose shape is a constant become float initializers.
    for node in list(graph.node):
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits or node.output[0] in kept:
            continue
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        dtype = value.data_type if value is not None else TensorProto.FLOAT
        if dtype not in _FLOATS:
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        graph.node.remove(node)
        init = numpy_helper.from_array(np.zeros(shape, _FLOATS[dtype]), node.output[0])
        graph.initializer.append(init)
        inits[init.name] = init
        if model.ir_version < 4:
            graph.input.append(helper.make_tensor_value_info(init.name, dtype, list(shape)))
    # Shape initializers nothing reads any more go (with their input entries).
    used = {inp for n in graph.node for inp in n.input} | {o.name for o in graph.output}
    for name in [n for n in inits if n not in used]:
        graph.initializer.remove(inits.pop(name))
        if name in listed:
            graph.input.remove(next(i for i in graph.input if i.name == name))
    # Every float initializer, in graph order (deterministic), gets random values.
    for init in graph.initializer:
        if init.data_type not in _FLOATS:
            continue
        op, slot, consumer = _role(model, init.name)
        shape = tuple(int(d) for d in init.dims)
        values = random_weight(op, slot, consumer, shape, rng).astype(_FLOATS[init.data_type])
        init.CopyFrom(numpy_helper.from_array(values, init.name))
    _calibrate_logits(model, rng)
    return model.SerializeToString()


def _kept_constant(model: ModelProto, inits: dict[str, TensorProto], max_bytes: int | None) -> set[str]:
    """The ConstantOfShape weights left as they are so that the float weights take at most `max_bytes` once
    the others are materialized: convolution weights only (a constant last Gemm/MatMul would make every
    class's logit the same function of the input), largest first, as few as it takes. A constant convolution
    weight gives its output channels one value each window (the sum of the window times the constant); the
    layers around it are random, so the network's output still depends on the whole input."""
    if max_bytes is None:
        return set()
    floats = {i.name: int(np.prod(i.dims, dtype=np.int64)) * _FLOATS[i.data_type].itemsize
              for i in model.graph.initializer if i.data_type in _FLOATS}
    constants: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            continue
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        dtype = value.data_type if value is not None else TensorProto.FLOAT
        if dtype in _FLOATS:
            count = int(np.prod(numpy_helper.to_array(inits[node.input[0]]), dtype=np.int64))
            constants[node.output[0]] = count * _FLOATS[dtype].itemsize
    total = sum(floats.values()) + sum(constants.values())
    convs = sorted((n for n in constants if _role(model, n)[:2] == ("Conv", 1)), key=lambda n: (-constants[n], n))
    kept: set[str] = set()
    for name in convs:
        if total <= max_bytes:
            break
        kept.add(name)
        total -= constants[name]
    if total > max_bytes:
        raise ValueError(f"the float weights take {total} bytes with every convolution weight constant, "
                         f"over max_bytes {max_bytes}")
    return kept


def _calibrate_logits(model: ModelProto, rng: np.random.Generator) -> None:
    graph = model.graph
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    inits = {i.name: i for i in graph.initializer}
    last = [n for n in graph.node if n.op_type in _LINEAR and len(n.input) > 1 and n.input[1] in inits]
    if len(softmax) != 1 or not last:
        return
    import onnxruntime as ort

    probe = ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(softmax[0].input[0], TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # IR 3 graphs list initializers as inputs: ORT warns once per weight
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {i.name: rng.standard_normal([int(d) for d in i.shape]).astype(np.float32)
            for i in session.get_inputs() if i.name not in inits}
    logits = session.run([softmax[0].input[0]], feed)[0]
    std = float(np.std(logits))
    if not np.isfinite(std) or std == 0.0:
        return
    for name in last[-1].input[1:3]:
        scaled = numpy_helper.to_array(inits[name]) * (LOGIT_STD / std)
        inits[name].CopyFrom(numpy_helper.from_array(scaled.astype(scaled.dtype), name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="bound the float weights' bytes: the largest convolution weights stay constant")
    args = parser.parse_args()
    args.dst.write_bytes(randomize_weights(args.src.read_bytes(), args.seed, max_bytes=args.max_bytes))


if __name__ == "__main__":
    main()
