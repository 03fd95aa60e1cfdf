"""Jobs, results and the executor that runs them: one hand-off of many jobs per block (docs/design.md §2.8).

A job is an inference (`InferJob`: a model package and its inputs) or a registration check (`CheckJob`).
A result carries canonical outputs, a ModelInfo, or a deterministic verdict (InvalidModel/InferenceError).
Anything this node cannot decide (worker crash, limit hit, golden mismatch) raises LocalFault for the whole
batch instead: it is never a verdict. `LocalExecutor` runs jobs in this process for tools; the node uses
`vm.sandbox.worker.WorkerPool`, which has the same `run_batch` and runs this same `Runner` in workers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.errors import InferenceError, InvalidModel, LocalFault
from vm.sandbox.errors import GoldenMismatch, IndexOutOfRange, InputMismatch, RuntimeFault, WorkerFault
from vm.sandbox.golden import GoldenVectors, golden_mismatch
from vm.sandbox.handoff import compact
from vm.sandbox.numeric import canonical_outputs
from vm.sandbox.spec import ArraySpec, ModelInfo, ModelSpec


def one_line(text: object, limit: int = 200) -> str:
    """vm.sandbox.graph's, imported when an error needs it: graph imports onnx (~0.8 s of CPU), which the
    node process otherwise never needs (model checks run in the sandbox workers)."""
    from vm.sandbox.graph import one_line as flatten

    return flatten(text, limit)


_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(bool)": "bool",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
}
# Estimated memory of a cached session beyond its file size (research: 1.2-1.5x the file, plus overhead).
_SESSION_OVERHEAD = 256 << 10


@dataclass(frozen=True, slots=True)
class ModelPackage:
    """A registered model as the executor needs it; the VM computes `model_id` (the chain's model id)."""

    model_id: bytes
    model_bytes: bytes
    spec: ModelSpec
    golden: GoldenVectors | None = None
    # A resident model (vm/resident.py): its session is pinned, never evicted by the cache's LRU. The chain
    # bounds these models' bytes (`vm.max_resident_bytes`), so they are counted apart from `cache_bytes`.
    resident: bool = False


@dataclass(frozen=True, slots=True)
class InferJob:
    """One inference: inputs by name, each with exactly the declared dtype and shape."""

    model: ModelPackage
    inputs: Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class CheckJob:
    """One registration check of canonical model bytes against their spec; then, if the model passes and
    `gas_left` covers their price (`registration_load_gas`), its golden inputs run on the session the check
    built (the chain's registration: one job, one hand-off of the bytes, one session)."""

    model_bytes: bytes
    spec: ModelSpec
    golden_inputs: tuple[Mapping[str, np.ndarray], ...] = ()
    gas_left: int = 0


Job = InferJob | CheckJob


@compact
@dataclass(frozen=True, slots=True)
class JobResult:
    """Canonical outputs (InferJob) or a ModelInfo (CheckJob), or the deterministic verdict `error`.

    A CheckJob's `golden` holds the canonical outputs of each golden input (None where the input failed
    with a verdict), or is None when no golden input ran (none given, the check refused, or gas too short).
    """

    outputs: Mapping[str, np.ndarray] | None = None
    info: ModelInfo | None = None
    error: InvalidModel | InferenceError | None = None
    golden: tuple[Mapping[str, np.ndarray] | None, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_new_object = object.__new__
_slots: Mapping[str, Any] = vars(JobResult)  # the slots' member descriptors
_set_outputs = _slots["outputs"].__set__
_set_info = _slots["info"].__set__
_set_error = _slots["error"].__set__
_set_golden = _slots["golden"].__set__


def outputs_result(outputs: Mapping[str, np.ndarray]) -> JobResult:
    """`JobResult(outputs=outputs)` for the common case of a block's many rows, in ~60 % of the time: the
    slots set through their descriptors, without the frozen dataclass's generated `__init__` (one
    `object.__setattr__` call per field). The same type and field values, so nothing downstream differs."""
    result = _new_object(JobResult)
    _set_outputs(result, outputs)
    _set_info(result, None)
    _set_error(result, None)
    _set_golden(result, None)
    return result


class Executor(Protocol):
    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Loaded:
    session: Any
    package: ModelPackage
    output_names: list[str]
    outputs: tuple[ArraySpec, ...]
    cost: int
    inputs: tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...] = ()
    index_bounds: tuple[tuple[str, int], ...] = ()  # inputs read as Gather indices: valid in [-n, n)
    # The session's compiled run(output_names, feeds, run_options): ORT's Python `run` wrapper checks again
    # what `_validated_inputs` has already checked (names present, no OrtValues) and would only retry with
    # a fallback provider, which create_session disables; skipping it saves a few µs per job.
    run: Any = None
    flat: Any = None  # the inputs' layout for flat jobs (vm/sandbox/flat.py), made on the first one
    reply: Any = None  # the flat replies' writer (flat.ReplyWriter), made on the first one


def _output_specs(session: Any) -> tuple[ArraySpec, ...]:
    specs = []
    for o in session.get_outputs():
        dtype = _ORT_DTYPES.get(o.type)
        if dtype is None:  # the checker allows no such output: this model was never checked
            raise RuntimeFault(f"output {o.name!r} has unsupported type {o.type}")
        shape = tuple(d if isinstance(d, int) and d >= 0 else 0 for d in (o.shape or []))
        specs.append(ArraySpec(o.name, dtype, shape))
    return tuple(specs)


class Runner:
    """Session cache (LRU by estimated bytes; resident models pinned apart from it), golden checks on first
    load, quarantine, job execution."""

    def __init__(self, cache_bytes: int) -> None:
        self._cache: OrderedDict[bytes, _Loaded] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._used = 0
        # Resident models' sessions (vm/resident.py): never evicted, not counted in `_used` (the chain bounds
        # their bytes, docs/sandbox.md "Memory budget").
        self._resident: dict[bytes, _Loaded] = {}
        self.quarantined: set[bytes] = set()
        # Inferences run and the wall seconds spent inside the runtime (diagnostics: bench/vm.py separates the
        # hand-off's cost from the runtime's in the worker).
        self.runs = 0
        self.run_seconds = 0.0

    def cached_ids(self) -> frozenset[bytes]:
        return frozenset(self._cache) | frozenset(self._resident)

    def resident_ids(self) -> frozenset[bytes]:
        """The pinned sessions' models."""
        return frozenset(self._resident)

    def resident_bytes(self) -> int:
        """The pinned sessions' model bytes (what `vm.max_resident_bytes` bounds chain-wide)."""
        return sum(len(loaded.package.model_bytes) for loaded in self._resident.values())

    def unpin_except(self, keep: frozenset[bytes]) -> int:
        """Drop the pinned sessions of models not in `keep` (the chain's resident set: a model retired, or
        rejected at its activation, left it); how many were dropped."""
        gone = [model_id for model_id in self._resident if model_id not in keep]
        for model_id in gone:
            del self._resident[model_id]
        return len(gone)

    def _evict(self, need: int, pinned: frozenset[bytes]) -> None:
        for model_id in list(self._cache):
            if self._used + need <= self._cache_bytes:
                return
            if model_id in pinned:
                continue
            self._used -= self._cache.pop(model_id).cost
        # Pinned models of the current batch may overflow the bound until the batch ends.

    def _load(self, package: ModelPackage, pinned: frozenset[bytes]) -> _Loaded:
        from vm.sandbox.session import create_session

        cost = 2 * len(package.model_bytes) + _SESSION_OVERHEAD
        if not package.resident:
            self._evict(cost, pinned)
        try:
            loaded = _loaded(create_session(package.model_bytes), package, cost)
        except LocalFault:
            raise
        except Exception as exc:  # a checked model always loads: failing here is this node's fault
            raise RuntimeFault(f"runtime cannot load the model: {type(exc).__name__}: {one_line(exc, 160)}") from None
        if package.golden is not None:
            self._validate_golden(loaded, package.golden)
        if package.resident:
            self._resident[package.model_id] = loaded
        else:
            self._cache[package.model_id] = loaded
            self._used += cost
        return loaded

    def _validate_golden(self, loaded: _Loaded, golden: GoldenVectors) -> None:
        spec = loaded.package.spec
        actual = []
        try:
            for case in golden.cases:
                actual.append(self._run(loaded, case.inputs))
        except InferenceError as exc:
            self._quarantine(loaded.package.model_id, f"golden input fails: {exc}")
        why = golden_mismatch(golden, loaded.outputs, spec.model_class, spec.tolerance, actual)
        if why is not None:
            self._quarantine(loaded.package.model_id, why)

    def _quarantine(self, model_id: bytes, why: str) -> None:
        self.quarantined.add(model_id)
        raise GoldenMismatch(model_id, why)

    def run_checked(self, loaded: _Loaded, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Canonical outputs of a run, after checking the inputs against the model's declared ones
        (InputMismatch)."""
        return self.run_feeds(loaded, _validated_inputs(loaded.inputs, inputs))

    _run = run_checked

    def run_feeds(self, loaded: _Loaded, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Canonical outputs of a run on inputs already of the declared names, dtypes and shapes (C order):
        the index bounds checked first, then the run, then the grid."""
        return canonical_outputs(self.run_raw(loaded, feeds), loaded.outputs, loaded.package.spec.grid_k)

    def run_raw(self, loaded: _Loaded, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run_feeds` before the grid: the runtime's outputs by name, in the declared order (a flat job's
        worker sends these, and the pool puts them on the grid: vm/sandbox/flat.py)."""
        for name, bound in loaded.index_bounds:
            values = feeds[name]
            if values.size and (int(values.min()) < -bound or int(values.max()) >= bound):
                raise IndexOutOfRange(f"input {name!r} holds an index outside [-{bound}, {bound})")
        try:
            start = time.perf_counter()
            raw = loaded.run(loaded.output_names, feeds, None)
            self.run_seconds += time.perf_counter() - start
            self.runs += 1
        except MemoryError:
            raise WorkerFault("out of memory during inference") from None
        except Exception as exc:  # whatever ORT raises: a local fault, never a verdict (see errors.py)
            raise RuntimeFault(f"runtime failed: {type(exc).__name__}: {one_line(exc, 160)}") from None
        return dict(zip(loaded.output_names, raw, strict=True))

    def session_for(
        self, model_id: bytes, package: ModelPackage | None, pinned: frozenset[bytes] = frozenset()
    ) -> _Loaded:
        """The cached session of a model, loading (and golden-checking) it on first use."""
        if model_id in self.quarantined:
            raise GoldenMismatch(model_id, "model is quarantined on this node")
        loaded = self._resident.get(model_id)
        if loaded is not None:
            return loaded
        loaded = self._cache.get(model_id)
        if loaded is not None:
            self._cache.move_to_end(model_id)
            return loaded
        if package is None:
            raise WorkerFault(f"model {model_id.hex()[:16]} is not cached and no bytes were sent")
        return self._load(package, pinned)

    def infer(
        self,
        model_id: bytes,
        package: ModelPackage | None,
        inputs: Mapping[str, np.ndarray],
        pinned: frozenset[bytes] = frozenset(),
    ) -> JobResult:
        try:
            loaded = self.session_for(model_id, package, pinned)
            return outputs_result(self._run(loaded, inputs))
        except LocalFault:
            raise
        except InferenceError as exc:
            return JobResult(error=exc)

    def infer_raw(self, model_id: bytes, package: ModelPackage | None, inputs: Mapping[str, np.ndarray],
                  pinned: frozenset[bytes] = frozenset()) -> tuple[_Loaded, dict[str, np.ndarray]]:
        """`infer` before the grid: the model's loaded session and the runtime's outputs by name, in declared
        order (a rows job puts all its rows on the grid at once: vm/sandbox/worker.py, `_serve_rows`);
        `canonical_outputs` of them is `infer`'s outputs. Raises the input verdicts (InferenceError) that
        `infer` returns, and LocalFault as `infer`."""
        loaded = self.session_for(model_id, package, pinned)
        return loaded, self.run_raw(loaded, _validated_inputs(loaded.inputs, inputs))

    def check(self, model_bytes: bytes, spec: ModelSpec, golden_inputs: tuple[Mapping[str, np.ndarray], ...] = (),
              gas_left: int = 0) -> JobResult:
        """The registration check, then the golden inputs on the check's own session when `gas_left` pays
        for them (the same rule the VM applies to the result: `registration_load_gas`)."""
        from vm.sandbox.check import validate_model_session
        from vm.sandbox.limits import registration_load_gas

        try:
            info, session = validate_model_session(model_bytes, spec)
            if not golden_inputs or registration_load_gas(
                    spec.limits.gas, nodes=info.node_count, golden_runs=len(golden_inputs),
                    gas_per_call=info.gas_per_call) > gas_left:
                return JobResult(info=info)
            try:
                loaded = _loaded(session, ModelPackage(b"registration", model_bytes, spec, None), 0)
            except Exception as exc:  # the check's own session: failing here is this node's fault
                raise RuntimeFault(f"runtime cannot use the checked session: {type(exc).__name__}: "
                                   f"{one_line(exc, 160)}") from None
            del session
            golden: list[Mapping[str, np.ndarray] | None] = []
            for inputs in golden_inputs:
                try:
                    golden.append(self._run(loaded, inputs))
                except InferenceError:
                    golden.append(None)
            return JobResult(info=info, golden=tuple(golden))
        except InvalidModel as exc:
            return JobResult(error=exc)
        except LocalFault:
            raise
        except MemoryError:
            raise WorkerFault("out of memory in the model checker") from None
        except Exception as exc:  # a bug in the checker (it is total): this node cannot decide, never a verdict
            raise WorkerFault(f"the model checker failed: {type(exc).__name__}: {one_line(exc, 160)}") from None


def _loaded(session: Any, package: ModelPackage, cost: int) -> _Loaded:
    """A built session ready to run jobs of `package` (its outputs, declared inputs and index bounds)."""
    loaded = _Loaded(session, package, [o.name for o in session.get_outputs()], _output_specs(session), cost)
    loaded.inputs = tuple((t.name, np.dtype(t.dtype), t.shape) for t in package.spec.inputs)
    loaded.index_bounds = _index_bounds(package.model_bytes)
    loaded.run = getattr(session, "_sess", session).run
    return loaded


def _index_bounds(model_bytes: bytes) -> tuple[tuple[str, int], ...]:
    """Inputs of the model read as Gather/GatherElements indices, with their bounds (parsed once per load,
    and only when a node of the graph can be such a node: `wirescan` reads the nodes' bytes only)."""
    from vm.sandbox.wirescan import graph_nodes_mention

    if not graph_nodes_mention(model_bytes, b"Gather"):
        return ()
    from onnx import ModelProto

    from vm.sandbox.graph import find_index_inputs

    model = ModelProto()
    model.ParseFromString(model_bytes)
    return find_index_inputs(model)


def _validated_inputs(
    declared: tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    if len(inputs) != len(declared) or any(name not in inputs for name, _, _ in declared):
        raise InputMismatch(f"inputs {sorted(inputs)} differ from the declared {[n for n, _, _ in declared]}")
    feeds: dict[str, np.ndarray] = {}
    for name, dtype, shape in declared:
        value = inputs[name]
        if type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape:
            got = f"{value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
            raise InputMismatch(f"input {name!r} is {got}, declared {dtype}{list(shape)}")
        feeds[name] = value if value.flags.c_contiguous else np.asarray(value, order="C")
    return feeds


class LocalExecutor:
    """The same jobs and results in this process, without isolation: for tools, tests and benchmarks."""

    def __init__(self, cache_bytes: int = 512 << 20) -> None:
        self._runner = Runner(cache_bytes)

    @property
    def quarantined(self) -> frozenset[bytes]:
        return frozenset(self._runner.quarantined)

    def holds(self, model_id: bytes) -> bool:
        return model_id in self._runner.cached_ids()

    @property
    def resident(self) -> frozenset[bytes]:
        """The models whose sessions are pinned (vm/resident.py)."""
        return self._runner.resident_ids()

    def unpin_except(self, keep: frozenset[bytes]) -> int:
        """`Runner.unpin_except`: the pinned sessions of models no longer resident dropped; how many."""
        return self._runner.unpin_except(keep)

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        pinned = frozenset(j.model.model_id for j in jobs if isinstance(j, InferJob))
        results = []
        for job in jobs:
            if isinstance(job, InferJob):
                results.append(self._runner.infer(job.model.model_id, job.model, job.inputs, pinned))
            else:
                results.append(self._runner.check(job.model_bytes, job.spec, job.golden_inputs, job.gas_left))
        return results

    def close(self) -> None:
        self._runner = Runner(0)
