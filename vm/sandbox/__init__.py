"""The ONNX sandbox: canonical form, registration checks, static gas, the numeric grid, isolated execution.

Public API (docs/sandbox.md):
    canonicalize(bytes, input_shapes) -> bytes          client side (`inferchain model register`)
    validate_model(bytes, ModelSpec) -> ModelInfo          chain side; raises InvalidModel
    meter(bytes) -> MeterReport                         static gas of one call
    quantize / canonical_outputs / outputs_agree        the grid and the agreement check
    WorkerPool.run_batch(jobs) / LocalExecutor          execution: one hand-off of jobs per block
Heavy modules (onnx, onnxruntime) load on first use of these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vm.sandbox.canonicalize import canonicalize
    from vm.sandbox.check import validate_model, validate_spec
    from vm.sandbox.errors import (
        GoldenMismatch,
        InputMismatch,
        NonFiniteOutput,
        OffGridOutput,
        RuntimeFault,
        WorkerFault,
    )
    from vm.sandbox.executor import CheckJob, Executor, InferJob, Job, JobResult, LocalExecutor, ModelPackage
    from vm.sandbox.golden import GoldenCase, GoldenVectors, decode_golden, encode_golden, load_golden
    from vm.sandbox.limits import DEFAULT_LIMITS, GasSchedule, SandboxLimits, WorkerLimits
    from vm.sandbox.meter import MeterReport, NodeCost, meter
    from vm.sandbox.numeric import (
        canonical_outputs,
        find_disagreement,
        outputs_agree,
        quantize,
        within_tolerance,
    )
    from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo, ModelSpec, Tolerance
    from vm.sandbox.worker import WorkerPool

_EXPORTS = {
    "canonicalize": "vm.sandbox.canonicalize",
    "validate_model": "vm.sandbox.check",
    "validate_spec": "vm.sandbox.check",
    "GoldenMismatch": "vm.sandbox.errors",
    "InputMismatch": "vm.sandbox.errors",
    "RuntimeFault": "vm.sandbox.errors",
    "NonFiniteOutput": "vm.sandbox.errors",
    "OffGridOutput": "vm.sandbox.errors",
    "WorkerFault": "vm.sandbox.errors",
    "CheckJob": "vm.sandbox.executor",
    "Executor": "vm.sandbox.executor",
    "InferJob": "vm.sandbox.executor",
    "Job": "vm.sandbox.executor",
    "JobResult": "vm.sandbox.executor",
    "LocalExecutor": "vm.sandbox.executor",
    "ModelPackage": "vm.sandbox.executor",
    "GoldenCase": "vm.sandbox.golden",
    "GoldenVectors": "vm.sandbox.golden",
    "decode_golden": "vm.sandbox.golden",
    "encode_golden": "vm.sandbox.golden",
    "load_golden": "vm.sandbox.golden",
    "DEFAULT_LIMITS": "vm.sandbox.limits",
    "GasSchedule": "vm.sandbox.limits",
    "SandboxLimits": "vm.sandbox.limits",
    "WorkerLimits": "vm.sandbox.limits",
    "MeterReport": "vm.sandbox.meter",
    "NodeCost": "vm.sandbox.meter",
    "meter": "vm.sandbox.meter",
    "canonical_outputs": "vm.sandbox.numeric",
    "find_disagreement": "vm.sandbox.numeric",
    "outputs_agree": "vm.sandbox.numeric",
    "quantize": "vm.sandbox.numeric",
    "within_tolerance": "vm.sandbox.numeric",
    "CompareMode": "vm.sandbox.spec",
    "ModelInfo": "vm.sandbox.spec",
    "ModelSpec": "vm.sandbox.spec",
    "ArraySpec": "vm.sandbox.spec",
    "Tolerance": "vm.sandbox.spec",
    "WorkerPool": "vm.sandbox.worker",
}

__all__ = [
    "DEFAULT_LIMITS",
    "ArraySpec",
    "CheckJob",
    "CompareMode",
    "Executor",
    "GasSchedule",
    "GoldenCase",
    "GoldenMismatch",
    "GoldenVectors",
    "InferJob",
    "InputMismatch",
    "Job",
    "JobResult",
    "LocalExecutor",
    "MeterReport",
    "ModelInfo",
    "ModelPackage",
    "ModelSpec",
    "NodeCost",
    "NonFiniteOutput",
    "OffGridOutput",
    "RuntimeFault",
    "SandboxLimits",
    "Tolerance",
    "WorkerFault",
    "WorkerLimits",
    "WorkerPool",
    "canonical_outputs",
    "canonicalize",
    "decode_golden",
    "encode_golden",
    "find_disagreement",
    "load_golden",
    "meter",
    "outputs_agree",
    "quantize",
    "validate_model",
    "validate_spec",
    "within_tolerance",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vm.sandbox' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
