"""Sandbox errors, refined from core's roots so the VM can commit a stable code (the class name), not text.

Verdicts (the same on every node): `InvalidModel` and the `InferenceError` subclasses, all of them our own
checks before and after a run, never an error ONNX Runtime raised. Local faults (this node cannot decide;
prevote nil): `WorkerFault` (and its `RuntimeFault`) and `GoldenMismatch`.
"""

from __future__ import annotations

from core.errors import InferenceError, LocalFault


class InputMismatch(InferenceError):
    """Inference inputs whose names, dtypes or shapes differ from the model's declared inputs."""


class NonFiniteOutput(InferenceError):
    """A float output holds NaN or +-Inf: it has no place on the grid."""


class OffGridOutput(InferenceError):
    """A float output whose grid value round(y * 2^k) does not fit in int64."""


class IndexOutOfRange(InferenceError):
    """An input read as Gather/GatherElements indices holds an index outside the indexed axis (checked by the
    executor before the run, so ONNX Runtime never meets it)."""


class WorkerFault(LocalFault):
    """A worker crashed, timed out, hit a resource limit or broke the protocol."""


class RuntimeFault(WorkerFault):
    """ONNX Runtime failed to load or run a checked model on this node. Never a verdict: ORT's errors are
    not sorted by their text, and the same error kind can come from this machine (memory, threads)."""


class GoldenMismatch(LocalFault):
    """A model's golden vectors did not reproduce on this node: quarantine the model, alarm, vote nil."""

    def __init__(self, model_id: bytes, detail: str) -> None:
        super().__init__(f"golden vectors of model {model_id.hex()[:16]} do not reproduce: {detail}")
        self.model_id = model_id
        self.detail = detail

    def __reduce__(self) -> tuple[type[GoldenMismatch], tuple[bytes, str]]:
        return (GoldenMismatch, (self.model_id, self.detail))


class UndecodableReply(WorkerFault):
    """A worker's message that does not decode, or that names a global outside the protocol's allow-list
    (vm/sandbox/channel.py): the worker is broken or taken over; the pool discards it."""
