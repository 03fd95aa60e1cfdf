"""The op table: which ONNX ops a canonical model may use, how each is priced, which are discontinuous.

An op absent from `PRICED_OPS` (default domain) or `ML_OPS` (`ai.onnx.ml`, the ops scikit-learn exports) has
no price and is refused (docs/design.md §2.9). The other sets exist only to give a precise rejection message.
ONNX shape inference loses the batch dimension of `ai.onnx.ml` ops: `ML_OPS` gives each one its shape rule
(vm/sandbox/graph.py applies it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Cost(enum.Enum):
    """How a node's work is counted from static shapes (docs/sandbox.md, "Metering"). Weights are work units
    (vm/sandbox/limits.py GasSchedule: one float MAC is one unit, about 1/40 ns), measured by
    bench/gas_calibration.py with a safety factor of 2."""

    MATMUL = "matmul"  # MACs = prod(out) * K, K = A.shape[-1]; plus prod(B) * weight (weights read)
    GEMM = "gemm"  # MACs = M * N * K; plus prod(B) * weight
    CONV = "conv"  # MACs = prod(out) * prod(W.shape[1:]); plus prod(W) * weight
    # MACs = prod(in0) * prod(W.shape[1:]) (each input scatters a kernel); plus prod(W) * weight
    CONV_TRANSPOSE = "conv_transpose"
    EINSUM = "einsum"  # MACs = product of the sizes of every distinct index letter
    ML_LINEAR = "ml_linear"  # MACs = rows * len(coefficients)
    # Kernel machines (meter._svm_work): kernel values by GEMM (MACs) or, for RBF, a scalar loop (work per
    # support-vector element); the dual sums, the kernel's transcendental and libsvm's probability coupling.
    ML_SVM = "ml_svm"
    ML_TREES = "ml_trees"  # work = rows * len(nodes_nodeids) * weight: at most every node of every tree
    ELEMENTWISE = "elementwise"  # work = prod(out) * weight
    REDUCE = "reduce"  # work = prod(in0) * weight
    POOL = "pool"  # work = prod(out) * prod(kernel attribute) * weight
    VIEW = "view"  # no element work (shape change only)


@dataclass(frozen=True, slots=True)
class OpRule:
    cost: Cost
    weight: int = 1
    # Index of the weight input of MATMUL and CONV (B, or W whose shape[1:] is the per-output reduction).
    weight_input: int = 1
    # The window attribute of a POOL op (ints, or one int: LRN's channel window `size`).
    kernel_attr: str = "kernel_shape"


_E = Cost.ELEMENTWISE


def _rules(cost: Cost, weight: int, *ops: str) -> dict[str, OpRule]:
    return {op: OpRule(cost, weight) for op in ops}


# Weights in work units. Matrix ops: per weight element read (a matrix-vector product reads one per MAC and
# runs at ~0.06 ns per MAC against ~0.02-0.025 ns for batched MatMul and Conv). Element-wise ops: per element,
# on top of the output bytes (per_activation_byte each), in classes of measured cost (Add ~0.19 ns per
# float32 element, Div ~0.28, Sqrt ~0.41, Exp ~0.24: the transcendental class is priced for its slowest,
# unmeasured members). Reductions and pools: per element read (~0.2 ns), the bytes they write being few.
_READ = 3
PRICED_OPS: dict[str, OpRule] = {
    "MatMul": OpRule(Cost.MATMUL, _READ),
    "MatMulInteger": OpRule(Cost.MATMUL, _READ),
    "QLinearMatMul": OpRule(Cost.MATMUL, _READ, weight_input=3),
    "Gemm": OpRule(Cost.GEMM, _READ),
    "Conv": OpRule(Cost.CONV, _READ, weight_input=1),
    "ConvInteger": OpRule(Cost.CONV, _READ, weight_input=1),
    "QLinearConv": OpRule(Cost.CONV, _READ, weight_input=3),
    **_rules(
        _E, 4,
        "Add", "Sub", "Mul", "Neg", "Abs", "Relu", "LeakyRelu", "PRelu", "Clip", "Max", "Min", "Sum",
        "Mean", "Where", "Not", "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual",
        "GreaterOrEqual", "Sign", "Round", "Floor", "Ceil", "IsNaN", "IsInf", "Cast", "Identity",
        "HardSigmoid", "HardSwish", "ConstantOfShape", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
        "BitwiseNot", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "Expand", "Tile",
        "Pad", "DepthToSpace", "SpaceToDepth",
    ),
    **_rules(
        _E, 8, "Div", "Mod", "Reciprocal", "BatchNormalization", "QuantizeLinear", "DequantizeLinear"
    ),
    **_rules(_E, 16, "Sqrt"),
    **_rules(_E, 32, "Exp", "Log", "Tanh", "Sigmoid", "Erf", "Softplus", "Elu", "Selu", "Celu", "Gelu", "Pow"),
    **_rules(
        Cost.REDUCE, 8,
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ArgMax", "ArgMin", "GlobalAveragePool", "GlobalMaxPool",
    ),
    **_rules(Cost.REDUCE, 32, "ReduceLogSumExp", "LayerNormalization"),
    **_rules(Cost.POOL, 8, "MaxPool", "AveragePool"),
    # Issue 12's ops (docs/sandbox.md, "Ops added for the models people have": each one's determinism).
    # Not calibrated one by one: each is priced as the calibrated class it resembles (weights in the same
    # work units as the rows above: ConvTranspose as Conv, LRN as a pool x8, InstanceNormalization as
    # LayerNormalization, TopK as a heavy reduction).
    "ConvTranspose": OpRule(Cost.CONV_TRANSPOSE, _READ, weight_input=1),
    "Einsum": OpRule(Cost.EINSUM),
    "LRN": OpRule(Cost.POOL, 64, kernel_attr="size"),
    "InstanceNormalization": OpRule(Cost.REDUCE, 32),
    "TopK": OpRule(Cost.REDUCE, 32),
    **_rules(_E, 4, "Shrink"),
    **_rules(_E, 64, "Resize"),
    **_rules(Cost.VIEW, 0, "Reshape", "Flatten", "Squeeze", "Unsqueeze"),
}

ML_DOMAIN = "ai.onnx.ml"
# The ai.onnx.ml opsets accepted (skl2onnx writes 1 to 3; later versions move attributes into tensors).
ML_OPSETS = range(1, 4)


class MlShape(enum.Enum):
    """How an `ai.onnx.ml` op's outputs get their static shapes (vm/sandbox/graph.py); N = input 0's rows."""

    SAME = "same"  # every output has input 0's shape (Scaler, Normalizer)
    CLASSES = "classes"  # label [N], scores [N, number of class labels]
    TARGETS = "targets"  # [N, targets] (attribute `n_targets` or `targets`, default 1)
    FEATURES = "features"  # input 0's shape with its last axis the number of (constant) indices
    # label [N], scores [N, S]: S = classes with probabilities (or without support vectors), else one per
    # pair of classes, and 2 for two classes (ONNX Runtime's SVMClassifier)
    SVM_CLASSES = "svm_classes"
    MAPPED = "mapped"  # input 0's shape, in the dtype of the `values_*` attribute (LabelEncoder)


# Work weights of the ai.onnx.ml ops with work of their own, from bench/gas_calibration.py's "ml:" rows
# (docs/sandbox.md, "Gas"): SVM per element of a scalar loop (RBF's distances: 0.59 ns; the dual sums: 0.82
# ns per coefficient), per kernel value of a transcendental kernel (RBF's exp, POLY's pow, SIGMOID's tanh),
# per classes^2 of libsvm's probability coupling (16 ns measured for the ~3 sweeps the bench's inputs take,
# priced for the solver's 100-sweep bound: 100 x 16 / 3 ns x 2); LabelEncoder per lookup (up to 8.8 ns in a
# map of up to 65,536 keys).
SVM_LOOP_WEIGHT = 40
SVM_KERNEL_WEIGHT = 32
SVM_COUPLING_WEIGHT = 22_000
LABEL_ENCODER_WEIGHT = 360

ML_OPS: dict[str, tuple[OpRule, MlShape]] = {
    "Scaler": (OpRule(_E, 8), MlShape.SAME),
    "Normalizer": (OpRule(Cost.REDUCE, 16), MlShape.SAME),
    "LinearClassifier": (OpRule(Cost.ML_LINEAR), MlShape.CLASSES),
    "LinearRegressor": (OpRule(Cost.ML_LINEAR), MlShape.TARGETS),
    "TreeEnsembleClassifier": (OpRule(Cost.ML_TREES, 8), MlShape.CLASSES),
    "TreeEnsembleRegressor": (OpRule(Cost.ML_TREES, 8), MlShape.TARGETS),
    "ArrayFeatureExtractor": (OpRule(_E, 4), MlShape.FEATURES),
    # Weights measured by bench/gas_calibration.py ("ml:" rows), safety factor 2 (docs/sandbox.md, "Gas").
    "SVMClassifier": (OpRule(Cost.ML_SVM, SVM_LOOP_WEIGHT), MlShape.SVM_CLASSES),
    "SVMRegressor": (OpRule(Cost.ML_SVM, SVM_LOOP_WEIGHT), MlShape.TARGETS),
    "LabelEncoder": (OpRule(_E, LABEL_ENCODER_WEIGHT), MlShape.MAPPED),
}
# Classifiers whose label output (output 0) is an argmax of scores computed in floating point: a dot product
# whose rounding may differ between CPUs (FMA or not), so the label can flip near a tie.
# SVMClassifier's label is a vote of signs of float kernel sums (never bit-exact: exp, GEMM kernels per CPU).
ML_FLOAT_LABELS = frozenset({"LinearClassifier", "SVMClassifier"})
# Ops whose decisions compare float inputs with thresholds or keys: deterministic only on bit-exact inputs.
ML_DECISIONS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "LabelEncoder"})
# Ops whose outputs are bit-identical on every CPU whenever their inputs are: copies and views, and tree
# ensembles without a post transform (comparisons, then constant leaf weights summed in a fixed order), and
# LabelEncoder (a lookup whose outputs are constants).
BIT_EXACT_OPS = frozenset({
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Split",
    "Gather", "ArrayFeatureExtractor", "Cast", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "LabelEncoder",
})

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
