"""The messages that cross the process boundary between the pool and a sandbox worker.

One small frozen class per message, so each side matches on the type and reads named fields: no tuple
positions, no string tags, no `reply[2] if len(reply) > 2`. Messages are pickled over a socket
(vm/sandbox/channel.py); both ends run the same code. A worker answers each `Batch` with exactly one of `Done`, `GoldenFault`
or `Fault`, `Describe` with `Described`, `Unpin` with a `Done` of no results, and says `Ready` once after it
started. Array data travels in the
shared arena (vm/sandbox/handoff.py): `ShareArena` carries the arena's file descriptor (SCM_RIGHTS), and
jobs and results name their arrays by `ArrayRef`.

A single inference of a model the worker holds skips these classes: it travels as one flat message each way
(vm/sandbox/flat.py), and only its verdicts and faults come back as the pickled replies below.

The pool decodes what a worker sends with `REPLY_GLOBALS`, the only classes and functions a reply's pickle
may name (channel.py, "allow-list"): a worker runs ONNX Runtime on anyone's model and is not trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InferenceError, InvalidModel
from vm.sandbox.channel import allow_list
from vm.sandbox.errors import IndexOutOfRange, InputMismatch, NonFiniteOutput, OffGridOutput
from vm.sandbox.executor import JobResult, ModelPackage
from vm.sandbox.handoff import ArrayRef, compact
from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo, ModelSpec

# ---- jobs inside a batch -------------------------------------------------------------------------------


@compact
@dataclass(frozen=True, slots=True)
class InferWire:
    """An inference; `package` is None when the worker already holds the model (`model_id`). Inputs are in
    the arena (`ArrayRef`), or pickled when the arena cannot carry them (not a plain numpy array)."""

    index: int  # position of the job in the caller's batch
    model_id: bytes
    package: ModelPackage | None
    inputs: Mapping[str, np.ndarray | ArrayRef]


@compact
@dataclass(frozen=True, slots=True)
class CheckWire:
    """A registration check of model bytes against their spec, then its golden inputs (pickled in the
    message: a registration is rare, its inputs few) if `gas_left` pays for them (`executor.CheckJob`)."""

    index: int
    model_bytes: bytes
    spec: ModelSpec
    golden_inputs: tuple[Mapping[str, np.ndarray], ...] = ()
    gas_left: int = 0


@compact
@dataclass(frozen=True, slots=True)
class InferRows:
    """Inferences of one model whose inputs are exactly the declared arrays, stacked: row `i` of each input
    (shape `(len(indices), *declared shape)`) is the input of the job at batch position `indices[i]`. One
    object and one array per input for a block's many inferences of a model, instead of one `InferWire` and
    one array each (docs/sandbox.md, "Rows: a block's inferences of one model"). `package` as `InferWire`'s."""

    indices: tuple[int, ...]
    model_id: bytes
    package: ModelPackage | None
    inputs: Mapping[str, np.ndarray | ArrayRef]


WireJob = InferWire | CheckWire | InferRows

# ---- parent -> worker ----------------------------------------------------------------------------------


@compact
@dataclass(frozen=True, slots=True)
class Batch:
    """One block's jobs for this worker, run under a CPU budget of `cpu_seconds` more seconds. The worker
    may write outputs into the arena from byte `free_from` on (the inputs lie before it)."""

    jobs: tuple[WireJob, ...]
    cpu_seconds: int
    free_from: int = 0


@compact
@dataclass(frozen=True, slots=True)
class ShareArena:
    """Use a new arena of `size` bytes from now on; its file descriptor travels with this message."""

    size: int


@compact
@dataclass(frozen=True, slots=True)
class Describe:
    """Ask for diagnostics (pid, threading environment, session settings)."""


@compact
@dataclass(frozen=True, slots=True)
class Unpin:
    """Drop the pinned sessions of models not in `keep` (the chain's resident set: vm/resident.py); answered
    with a `Done` of no results that carries the models the worker still holds."""

    keep: frozenset[bytes]


@compact
@dataclass(frozen=True, slots=True)
class Stop:
    """Exit cleanly."""


ToWorker = Batch | ShareArena | Describe | Unpin | Stop

# ---- worker -> parent ----------------------------------------------------------------------------------


@compact
@dataclass(frozen=True, slots=True)
class Ready:
    """Sent once when the worker has scrubbed its environment, imported everything and set its limits."""

    pid: int
    removed_env: tuple[str, ...]
    ort_version: str


@compact
@dataclass(frozen=True, slots=True)
class SharedOutputs:
    """The canonical outputs of a successful inference: in the arena (`ArrayRef`), or in the message (small
    arrays, or ones the arena had no room for)."""

    arrays: tuple[tuple[str, np.ndarray | ArrayRef], ...]


@compact
@dataclass(frozen=True, slots=True)
class RowResults:
    """The results of an `InferRows`, under its first index in `Done.results`: for each output name, the
    outputs of every row stacked (shape `(rows, *output shape)`; in the arena or in the message), except the
    rows in `separate` (by row position: a verdict, or outputs that do not stack), whose rows in `outputs`
    are zeros."""

    outputs: tuple[tuple[str, np.ndarray | ArrayRef], ...]
    separate: tuple[tuple[int, JobResult], ...]


@compact
@dataclass(frozen=True, slots=True)
class Done:
    """Every job of the batch ran: results by batch index, and the models the worker now holds (None: the
    same as in its previous reply)."""

    results: tuple[tuple[int, JobResult | SharedOutputs | RowResults], ...]
    cached: frozenset[bytes] | None


@compact
@dataclass(frozen=True, slots=True)
class GoldenFault:
    """A model's golden vectors did not reproduce: the worker quarantined it and stays usable."""

    model_id: bytes
    detail: str
    cached: frozenset[bytes] | None


@compact
@dataclass(frozen=True, slots=True)
class Fault:
    """This worker cannot decide the batch: a local fault (resource, runtime) or a bug (`internal`).
    The pool discards the worker either way."""

    message: str
    internal: bool = False


@compact
@dataclass(frozen=True, slots=True)
class Described:
    info: Mapping[str, Any] = field(default_factory=dict)


FromWorker = Ready | Done | GoldenFault | Fault | Described


# ---- what a worker's reply may name ---------------------------------------------------------------------

_SAMPLE = np.zeros(1, ">f8")  # numpy's own pickling (arrays the channel does not send as raw bytes)
# Every global a reply's pickle names: the reply messages and what they hold (results, model info, the
# verdicts a job can end in), and the functions numpy pickles arrays and dtypes with (taken from
# numpy's own reductions, so their names follow the installed numpy). Frozenset, tuple, dict, bytes and
# bytearray have opcodes of their own.
REPLY_GLOBALS = allow_list((
    Ready, SharedOutputs, RowResults, Done, GoldenFault, Fault, Described,
    ArrayRef, JobResult, ModelInfo, ArraySpec, CompareMode,
    InvalidModel, InferenceError, InputMismatch, NonFiniteOutput, OffGridOutput, IndexOutOfRange,
    np.ndarray, _SAMPLE.__reduce__()[0], _SAMPLE.__reduce_ex__(5)[0], np.dtype("f8").__reduce__()[0],
))
