"""ONNX Runtime sessions with the pinned options of docs/design.md §2.2, whatever the environment says.

CPU execution provider only, one intra-op and one inter-op thread, sequential execution, graph optimizations
disabled, IEEE denormals (no flush-to-zero), no spinning threads, ONNX format only. Measurement
(docs/design.md §2.12) showed that this setup gives identical bits on AVX2 and AVX512 for canonical models.
"""

from __future__ import annotations

import os
from typing import Any

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_status

from core.errors import LocalFault

# Variables that could change threading or kernels of ORT or of a BLAS/OpenMP it might load; the worker
# removes them from its own environment before it creates any session.
ENV_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "BLIS_", "ORT_", "ONNXRUNTIME", "DNNL_", "ONEDNN_")

_CONFIG_ENTRIES = {
    "session.intra_op.allow_spinning": "0",
    "session.inter_op.allow_spinning": "0",
    "session.set_denormal_as_zero": "0",
    "session.load_model_format": "ONNX",
    "session.use_env_allocators": "0",
    "session.disable_prepacking": "0",
}

# The closed list of ORT errors that say "these bytes are not a model this runtime accepts": status codes
# ORT assigns while it validates a graph (no kernel for a type, an invalid graph or argument, unparsable
# bytes). They depend on the bytes and the pinned build only, so registration may commit them as a verdict.
# Everything else ORT raises (FAIL, RUNTIME_EXCEPTION, EP_FAIL, ENGINE_ERROR, ...) can come from this
# machine (memory, threads, files) and is a local fault; errors are never sorted by their text.
MODEL_REFUSALS: tuple[type[Exception], ...] = (
    _ort_status.InvalidArgument,
    _ort_status.InvalidGraph,
    _ort_status.InvalidProtobuf,
    _ort_status.NotImplemented,
    _ort_status.NoModel,
)


def scrub_environment(environ: Any = None) -> list[str]:
    """Remove threading/kernel-selection variables; returns the names removed."""
    env = os.environ if environ is None else environ
    removed = [k for k in list(env) if k.upper().startswith(ENV_PREFIXES)]
    for key in removed:
        del env[key]
    return removed


def pinned_session_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.use_deterministic_compute = True
    so.enable_profiling = False
    so.log_severity_level = 4  # errors surface as exceptions
    for key, value in _CONFIG_ENTRIES.items():
        so.add_session_config_entry(key, value)
    return so


def create_session(model_bytes: bytes) -> ort.InferenceSession:
    """A session with the pinned options. ORT's errors propagate (callers sort them by type with
    `MODEL_REFUSALS`); running out of memory in Python is a LocalFault. No fallback retry: ORT's fallback
    would build the same session again and print to stdout."""
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=pinned_session_options(), providers=["CPUExecutionProvider"],
            enable_fallback=0,
        )
    except MemoryError:
        raise LocalFault("out of memory creating a session") from None
