"""Sandbox errors, refined from core's roots so the VM can commit a stable code (the class name), not text.

Verdicts (the same on every node): `InvalidModel` and the `InferenceError` subclasses. Local faults (this
node cannot decide; prevote nil): `WorkerFault` and `GoldenMismatch`.
"""

from __future__ import annotations

from core.errors import InferenceError, LocalFault


class InputMismatch(InferenceError):
    """Inference inputs whose names, dtypes or shapes differ from the model's declared inputs."""


class NonFiniteOutput(InferenceError):
    """A float output holds NaN or +-Inf: it has no place on the grid."""


class OffGridOutput(InferenceError):
    """A float output whose grid value round(y * 2^k) does not fit in int64."""


class ModelRuntimeError(InferenceError):
    """ONNX Runtime refused the run for a data-dependent reason (e.g. a Gather index out of range)."""


class WorkerFault(LocalFault):
    """A worker crashed, timed out, hit a resource limit or broke the protocol."""


class GoldenMismatch(LocalFault):
    """A model's golden vectors did not reproduce on this node: quarantine the model, alarm, vote nil."""

    def __init__(self, model_id: bytes, detail: str) -> None:
        super().__init__(f"golden vectors of model {model_id.hex()[:16]} do not reproduce: {detail}")
        self.model_id = model_id
        self.detail = detail

    def __reduce__(self) -> tuple[type[GoldenMismatch], tuple[bytes, str]]:
        return (GoldenMismatch, (self.model_id, self.detail))
