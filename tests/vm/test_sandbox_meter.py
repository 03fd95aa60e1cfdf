"""Static metering equals a hand count of multiply-accumulates, element work and activation bytes.

Hand counts are written from each architecture (layer sizes), not from the meter's own output; op weights
come from the op table (`w(op)`). Gas is per_call + sum over nodes of
per_node + ceil((MACs * per_mac + element work + output bytes * per_activation_byte) / work_units_per_gas).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import InvalidModel
from tools.attacks import canonical, make_model, tensor
from vm.models import load_model
from vm.sandbox.check import validate_model
from vm.sandbox.limits import DEFAULT_LIMITS, GasSchedule
from vm.sandbox.meter import meter
from vm.sandbox.ops import PRICED_OPS
from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

pytestmark = pytest.mark.vm

G = DEFAULT_LIMITS.gas


def w(op: str) -> int:
    return PRICED_OPS[op].weight


def _node_gas(m: int, e: int, b: int, g: GasSchedule = G) -> int:
    return g.per_node + -(-(m * g.per_mac + e + b * g.per_activation_byte) // g.work_units_per_gas)


def _gas(nodes: list[tuple[int, int, int]]) -> int:
    """Gas from per-node (macs, element work, output bytes) under the default schedule."""
    return G.per_call + sum(_node_gas(m, e, b) for m, e, b in nodes)


def test_digits_mlp_matches_hand_count() -> None:
    model = load_model("digits_mlp")
    report = meter(model.model_bytes)
    # 64-32-10 MLP: Cast(x), MatMul, Add, Relu, MatMul, Add, then the split Softmax and skl2onnx's Identity.
    f32 = 4
    nodes = [
        (0, w("Cast") * 64, 64 * f32),  # Cast float->float of the input
        (64 * 32, w("MatMul") * 64 * 32, 32 * f32),  # MatMul: MACs, and the [64,32] weights read
        (0, w("Add") * 32, 32 * f32),  # Add bias
        (0, w("Relu") * 32, 32 * f32),  # Relu
        (32 * 10, w("MatMul") * 32 * 10, 10 * f32),  # MatMul
        (0, w("Add") * 10, 10 * f32),  # Add bias
        (0, w("ReduceMax") * 10, 1 * f32),  # ReduceMax over 10 -> [1,1]
        (0, w("Sub") * 10, 10 * f32),  # Sub
        (0, w("Exp") * 10, 10 * f32),  # Exp
        (0, w("ReduceSum") * 10, 1 * f32),  # ReduceSum
        (0, w("Div") * 10, 10 * f32),  # Div
        (0, w("Identity") * 10, 10 * f32),  # Identity
    ]
    assert report.macs == 64 * 32 + 32 * 10 == 2368
    assert report.elementwise == sum(e for _, e, _ in nodes)
    assert report.activation_bytes == sum(b for _, _, b in nodes)
    assert report.gas == _gas(nodes) == model.gas_per_call


def test_poi_model_matches_hand_count() -> None:
    report = meter(load_model("poi_mix").model_bytes)
    # Three MatMulInteger layers 64->128, 256->64, 128->16.
    assert report.macs == 64 * 128 + 256 * 64 + 128 * 16
    i64, i32, u8 = 8, 4, 1

    def layer(k: int, n: int) -> list[tuple[int, int, int]]:
        # MatMulInteger (and its [k,n] weights read), Cast to int64, Mul, Add, Mod
        return [(k * n, w("MatMulInteger") * k * n, n * i32), (0, w("Cast") * n, n * i64),
                (0, w("Mul") * n, n * i64), (0, w("Add") * n, n * i64), (0, w("Mod") * n, n * i64)]

    def to_bytes(n: int) -> list[tuple[int, int, int]]:
        # Mod, Div, Mod, Concat (2n), Cast to uint8
        return [(0, w("Mod") * n, n * i64), (0, w("Div") * n, n * i64), (0, w("Mod") * n, n * i64),
                (0, w("Concat") * 2 * n, 2 * n * i64), (0, w("Cast") * 2 * n, 2 * n * u8)]

    nodes = (layer(64, 128) + to_bytes(128) + layer(256, 64) + to_bytes(64) + layer(128, 16)
             + [(0, w("Cast") * 16, 16 * i32)])
    assert [n.op_type for n in report.nodes][:5] == ["MatMulInteger", "Cast", "Mul", "Add", "Mod"]
    assert report.elementwise == sum(e for _, e, _ in nodes)
    assert report.activation_bytes == sum(b for _, _, b in nodes)
    assert report.gas == _gas(nodes)


def _conv_net(batch: int) -> tuple[bytes, ModelSpec]:
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"]),
    ]
    spec = ModelSpec(
        (ArraySpec("x", "float32", (batch, 1, 8, 8)),), CompareMode.TOLERANT, 16, Tolerance(2, 100)
    )
    model = make_model(nodes, [tensor("x", TensorProto.FLOAT, (batch, 1, 8, 8))], [tensor("y", TensorProto.FLOAT, (batch, 10))], [w, b, fc])
    return canonical(model, spec), spec


def test_small_conv_net_matches_hand_count() -> None:
    model_bytes, spec = _conv_net(1)
    report = meter(model_bytes)
    conv_out = 4 * 8 * 8
    nodes = [
        (conv_out * 1 * 3 * 3, w("Conv") * 4 * 1 * 3 * 3, conv_out * 4),  # Conv: prod(out) * prod(W[1:]); W read
        (0, w("Relu") * conv_out, conv_out * 4),  # Relu
        (0, w("MaxPool") * 4 * 4 * 4 * (2 * 2), 4 * 4 * 4 * 4),  # MaxPool: prod(out) * prod(kernel)
        (0, 0, 64 * 4),  # Flatten: a view
        (1 * 10 * 64, w("Gemm") * 64 * 10, 10 * 4),  # Gemm M*N*K; B read
    ]
    assert report.macs == 2304 + 640
    assert report.gas == _gas(nodes)
    assert validate_model(model_bytes, spec).gas_per_call == report.gas


def test_work_scales_exactly_with_batch() -> None:
    one = meter(_conv_net(1)[0])
    many = meter(_conv_net(32)[0])
    weights_read = w("Conv") * 4 * 9 + w("Gemm") * 64 * 10  # read once per call, whatever the batch
    assert many.macs == 32 * one.macs
    assert many.elementwise - weights_read == 32 * (one.elementwise - weights_read)
    assert many.activation_bytes == 32 * one.activation_bytes


def test_quantized_matmul_counts_like_matmul() -> None:
    scales = [numpy_helper.from_array(np.array(s, np.float32), n) for n, s in (("sa", 0.1), ("sb", 0.2), ("sy", 0.3))]
    zps = [numpy_helper.from_array(np.array(z, np.uint8), n) for n, z in (("za", 0), ("zb", 128), ("zy", 5))]
    w = numpy_helper.from_array(np.full((16, 8), 130, np.uint8), "w")
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "w", "sb", "zb", "sy", "zy"], ["y"])
    spec = ModelSpec((ArraySpec("a", "uint8", (3, 16)),), CompareMode.EXACT)
    model = make_model([node], [tensor("a", TensorProto.UINT8, (3, 16))], [tensor("y", TensorProto.UINT8, (3, 8))], [w, *scales, *zps])
    model_bytes = canonical(model, spec)
    assert meter(model_bytes).macs == 3 * 8 * 16
    assert validate_model(model_bytes, spec).macs == 3 * 8 * 16


def test_pinning_shapes_changes_the_price() -> None:
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", TensorProto.FLOAT, ("N", 4))], [tensor("y", TensorProto.FLOAT, ("N", 4))])
    small = meter(model.SerializeToString(), {"x": (1, 4)})
    large = meter(model.SerializeToString(), {"x": (100, 4)})
    assert (small.elementwise, large.elementwise) == (w("Relu") * 4, w("Relu") * 400)


def test_unpriced_op_is_refused() -> None:
    model = make_model([helper.make_node("Det", ["x"], ["y"])], [tensor("x", TensorProto.FLOAT, (2, 2))], [tensor("y", TensorProto.FLOAT, ())])
    with pytest.raises(InvalidModel, match="has no price"):
        meter(model.SerializeToString())


def test_custom_schedule_changes_only_prices() -> None:
    model_bytes = load_model("digits_mlp").model_bytes
    base = meter(model_bytes)
    from vm.sandbox.limits import SandboxLimits

    doubled = GasSchedule(per_call=0, per_node=0, per_mac=2)
    report = meter(model_bytes, limits=SandboxLimits(gas=doubled))
    assert report.macs == base.macs
    assert report.gas == sum(_node_gas(n.macs, n.elementwise, n.output_bytes, doubled) for n in base.nodes)
    assert report.gas > base.gas - G.per_call - len(base.nodes) * G.per_node
