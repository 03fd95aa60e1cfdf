"""What a registrant declares about a model (`ModelSpec`) and what the checker derives from it (`ModelInfo`).

Plain frozen values with integers and strings only (no floats: this is consensus data). Dtypes are numpy
names ("uint8", "float32", ...), shapes are tuples of ints, so the VM can encode them with its own codec.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from vm.sandbox.limits import DEFAULT_LIMITS, SandboxLimits

INTEGER_DTYPES = frozenset(
    {"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
)
FLOAT_DTYPES = frozenset({"float32", "float64"})
# Every tensor of a canonical model has one of these dtypes (no strings, no float16/bfloat16/float8: narrow
# float rounding amplifies cross-CPU drift far beyond any sane tolerance).
ALLOWED_DTYPES = INTEGER_DTYPES | FLOAT_DTYPES
# Committed (canonical) dtype of a float output: its value on the grid, q = round(y * 2^k).
GRID_DTYPE = "int64"


class CompareMode(enum.StrEnum):
    """How validators compare outputs: `exact` bit for bit; `tolerant` within the declared tolerance."""

    EXACT = "exact"
    TOLERANT = "tolerant"


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """Name, numpy dtype name and static shape of one model input or output."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ArraySpec.name must be a non-empty str")
        if self.dtype not in ALLOWED_DTYPES:
            raise ValueError(f"ArraySpec {self.name!r}: dtype {self.dtype!r} is not allowed")
        if not isinstance(self.shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.shape
        ):
            raise ValueError(f"ArraySpec {self.name!r}: shape must be a tuple of ints >= 0")

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python ints: a product of U32 dims must not wrap around

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def committed_dtype(self) -> str:
        """Dtype of this output as committed in a block: floats go on the int64 grid, integers unchanged."""
        return GRID_DTYPE if self.is_float else self.dtype


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Agreement bound for a tolerant output, in grid units: |q_claim - q_local| <= t_abs + t_rel*|q_local|.

    t_rel is a rational t_rel_ppm / 10^6 so that the check stays in integer arithmetic.
    """

    t_abs: int = 0
    t_rel_ppm: int = 0

    def __post_init__(self) -> None:
        for name in ("t_abs", "t_rel_ppm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Tolerance.{name} must be an int >= 0")


EXACT_TOLERANCE = Tolerance(0, 0)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Registration metadata the chain checks a model against, plus the protocol caps in force."""

    inputs: tuple[ArraySpec, ...]
    model_class: CompareMode
    grid_k: int = 0
    tolerance: Tolerance = EXACT_TOLERANCE
    limits: SandboxLimits = field(default=DEFAULT_LIMITS)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.inputs}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What `validate_model` derived from accepted bytes: IO, static price and a summary of the graph."""

    sha256: bytes
    model_class: CompareMode
    inputs: tuple[ArraySpec, ...]
    outputs: tuple[ArraySpec, ...]
    opset: int
    gas_per_call: int
    macs: int
    elementwise_ops: int
    activation_bytes: int
    parameter_bytes: int
    node_count: int
    op_histogram: tuple[tuple[str, int], ...]
