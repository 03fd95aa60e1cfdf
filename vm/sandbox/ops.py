"""The op table: which ONNX ops a canonical model may use, how each is priced, which are discontinuous.

An op absent from `PRICED_OPS` has no price and is refused (docs/design.md §2.9). The other sets exist only to give
a precise rejection message. All ops are in the default ONNX domain; `ai.onnx.ml` ops are refused (ONNX shape
inference loses their batch dimension, so they would need rules of their own).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Cost(enum.Enum):
    """How a node's work is counted from static shapes (docs/sandbox.md, "Metering")."""

    MATMUL = "matmul"  # MACs = prod(out) * K, K = A.shape[-1]
    GEMM = "gemm"  # MACs = M * N * K
    CONV = "conv"  # MACs = prod(out) * prod(W.shape[1:])
    CONV_TRANSPOSE = "conv_transpose"  # MACs = prod(in0) * prod(W.shape[1:]) (each input scatters a kernel)
    EINSUM = "einsum"  # MACs = product of the sizes of every distinct index letter
    ELEMENTWISE = "elementwise"  # work = prod(out) * weight
    REDUCE = "reduce"  # work = prod(in0) * weight
    POOL = "pool"  # work = prod(out) * prod(kernel attribute) * weight
    VIEW = "view"  # no element work (shape change only)


@dataclass(frozen=True, slots=True)
class OpRule:
    cost: Cost
    weight: int = 1
    # Index of the weight input for CONV (whose shape[1:] is the per-output reduction).
    weight_input: int = 1
    # The window attribute of a POOL op (ints, or one int: LRN's channel window `size`).
    kernel_attr: str = "kernel_shape"


_E = Cost.ELEMENTWISE


def _rules(cost: Cost, weight: int, *ops: str) -> dict[str, OpRule]:
    return {op: OpRule(cost, weight) for op in ops}


PRICED_OPS: dict[str, OpRule] = {
    "MatMul": OpRule(Cost.MATMUL),
    "MatMulInteger": OpRule(Cost.MATMUL),
    "QLinearMatMul": OpRule(Cost.MATMUL),
    "Gemm": OpRule(Cost.GEMM),
    "Conv": OpRule(Cost.CONV, weight_input=1),
    "ConvInteger": OpRule(Cost.CONV, weight_input=1),
    "QLinearConv": OpRule(Cost.CONV, weight_input=3),
    **_rules(
        _E, 1,
        "Add", "Sub", "Mul", "Neg", "Abs", "Relu", "LeakyRelu", "PRelu", "Clip", "Max", "Min", "Sum",
        "Mean", "Where", "Not", "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual",
        "GreaterOrEqual", "Sign", "Round", "Floor", "Ceil", "IsNaN", "IsInf", "Cast", "Identity",
        "HardSigmoid", "HardSwish", "ConstantOfShape", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
        "BitwiseNot", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "Expand", "Tile",
        "Pad", "DepthToSpace", "SpaceToDepth",
    ),
    **_rules(
        _E, 2, "Div", "Mod", "Reciprocal", "BatchNormalization", "QuantizeLinear", "DequantizeLinear"
    ),
    **_rules(_E, 4, "Sqrt"),
    **_rules(_E, 8, "Exp", "Log", "Tanh", "Sigmoid", "Erf", "Softplus", "Elu", "Selu", "Celu", "Gelu", "Pow"),
    **_rules(
        Cost.REDUCE, 1,
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ArgMax", "ArgMin", "GlobalAveragePool", "GlobalMaxPool",
    ),
    **_rules(Cost.REDUCE, 8, "ReduceLogSumExp", "LayerNormalization"),
    **_rules(Cost.POOL, 1, "MaxPool", "AveragePool"),
    # Issue 12's ops (docs/sandbox.md, "Ops added for the models people have": each one's determinism).
    "ConvTranspose": OpRule(Cost.CONV_TRANSPOSE, weight_input=1),
    "Einsum": OpRule(Cost.EINSUM),
    "LRN": OpRule(Cost.POOL, 8, kernel_attr="size"),
    "InstanceNormalization": OpRule(Cost.REDUCE, 8),
    "TopK": OpRule(Cost.REDUCE, 4),
    **_rules(_E, 1, "Shrink"),
    **_rules(_E, 16, "Resize"),
    **_rules(Cost.VIEW, 0, "Reshape", "Flatten", "Squeeze", "Unsqueeze"),
}

CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan", "SequenceMap"})
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
TRAINING_OPS = frozenset({"Dropout", "Gradient", "Momentum", "Adagrad", "Adam"})
# Ops the canonicalizer rewrites away: their presence means the bytes are not canonical.
CANONICALIZED_OPS = frozenset({"Softmax", "LogSoftmax", "Constant", "Shape", "Size"})
# Never evaluated while folding constants (nondeterministic or with subgraphs).
NEVER_FOLD = CONTROL_FLOW_OPS | RANDOM_OPS | TRAINING_OPS

# Ops that, applied to float values, are discontinuous: near a tie honest validators would disagree.
DISCONTINUOUS_ON_FLOAT = frozenset(
    {
        "ArgMax", "ArgMin", "TopK", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Round",
        "Floor", "Ceil", "Sign", "IsNaN", "IsInf", "QuantizeLinear", "Mod", "NonMaxSuppression",
    }
)

# Inputs that must be constants (initializers) for an op to have a static meaning and price: the Resize
# geometry (roi, scales, sizes) and TopK's K.
CONSTANT_INPUTS: dict[str, frozenset[int]] = {
    "Resize": frozenset({1, 2, 3}),
    "TopK": frozenset({1}),
}

# Integer matrix ops: (operand index, zero-point index) pairs whose dtype must be uint8 in canonical form.
QUANTIZED_OPERANDS: dict[str, tuple[tuple[int, int], ...]] = {
    "QLinearMatMul": ((0, 2), (3, 5)),
    "QLinearConv": ((0, 2), (3, 5)),
    "MatMulInteger": ((0, 2), (1, 3)),
    "ConvInteger": ((0, 2), (1, 3)),
}
# Input slots where an `exact` model may hold a (constant) float: the quantization scales.
FLOAT_SCALE_SLOTS: dict[str, frozenset[int]] = {
    "QLinearMatMul": frozenset({1, 4, 6}),
    "QLinearConv": frozenset({1, 4, 6}),
}
