"""The VM's side of the sandbox: turns block work into sandbox jobs, one hand-off per round, and the
sandbox's answers into resolutions; judges agreement between committed and local outputs.

The sandbox (vm/sandbox, another owner) runs the jobs: `Executor.run_batch` raises LocalFault when this
node cannot decide, which callers turn into a local-fault verdict. A registration is one job of the same
hand-off: the check, then its golden inputs on the session the check built, when its gas left pays for them.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import LocalFault
from core.header import TxStatus
from core.limits import MAX_TENSOR_BYTES, MAX_TENSOR_DIMS
from core.tensor import DType, Tensor
from core.types import Hash32
from vm.activation import LOG_NEAR, DeferredCheck
from vm.apply import InferResolution, RegisterResolution, Resolution
from vm.assembly import AssemblyMemo
from vm.deferred import DeferredModel
from vm.execute import InferWork, RegisterWork, Work
from vm.params import Params
from vm.poi import compute_challenge_inputs, compute_seed, pick_model
from vm.sandbox.executor import CheckJob, Executor, InferJob, Job, JobResult, ModelPackage
from vm.sandbox.golden import GoldenVectors, golden_mismatch, make_golden, wider_tolerance
from vm.sandbox.limits import GasSchedule, SandboxLimits, load_gas, registration_load_gas, resident_load_gas
from vm.sandbox.numeric import find_disagreement
from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo, ModelSpec, Tolerance
from vm.state import StateView
from vm.txs import ModelClass, ModelMeta, TensorSpec


def sandbox_limits(params: Params) -> SandboxLimits:
    """The sandbox's consensus caps and gas prices as stored in the chain parameters."""
    gas = GasSchedule(**{item.name: item.value for item in params.vm.gas_schedule})
    fields = {item.name: item.value for item in params.vm.sandbox_limits}
    return SandboxLimits(**fields, gas=gas)


def dtype_name(dtype: DType) -> str:
    return dtype.numpy.name


def sandbox_tensor_spec(spec: TensorSpec) -> ArraySpec:
    return ArraySpec(spec.name, dtype_name(spec.dtype), tuple(int(d) for d in spec.shape))


def model_spec(meta: ModelMeta, limits: SandboxLimits) -> ModelSpec:
    """The sandbox's view of registration metadata; ValueError if the metadata cannot be one."""
    model_class = CompareMode.EXACT if meta.model_class is ModelClass.EXACT else CompareMode.TOLERANT
    return ModelSpec(tuple(sandbox_tensor_spec(t) for t in meta.inputs), model_class, int(meta.grid_k),
                     Tolerance(int(meta.tol_abs), int(meta.tol_rel_ppm)), limits)


def output_specs(meta: ModelMeta) -> tuple[ArraySpec, ...]:
    return tuple(sandbox_tensor_spec(t) for t in meta.outputs)


def golden_vectors(meta: ModelMeta) -> GoldenVectors:
    cases: list[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]] = []
    for vector in meta.golden:
        ins = {spec.name: t.to_numpy() for spec, t in zip(meta.inputs, vector.inputs, strict=True)}
        outs = {spec.name: t.to_numpy() for spec, t in zip(meta.outputs, vector.outputs, strict=True)}
        cases.append((ins, outs))
    return make_golden(cases)


def feeds(meta: ModelMeta, inputs: Sequence[Tensor]) -> dict[str, np.ndarray]:
    return {spec.name: t.to_numpy() for spec, t in zip(meta.inputs, inputs, strict=True)}


_FeedPlan = tuple[tuple[str, "np.dtype[Any]", tuple[int, ...]], ...]


def feed_plan(meta: ModelMeta) -> _FeedPlan:
    """Each declared input's name, numpy dtype (the wire's, little-endian) and shape: computed once per model
    and hand-off, so an inference's feeds are its tensors' bytes viewed as declared (`plan_feeds`)."""
    return tuple((spec.name, spec.dtype.numpy, tuple(int(d) for d in spec.shape)) for spec in meta.inputs)


def plan_feeds(plan: _FeedPlan, inputs: Sequence[Tensor]) -> dict[str, np.ndarray]:
    """`feeds` of an inference whose inputs execution checked against its model's declaration (`vm.execute`:
    same count, dtypes and shapes, so each tensor's bytes are its declared array): the same read-only arrays
    in native byte order, without looking each tensor's dtype and shape up again."""
    if _LITTLE_ENDIAN:
        return {name: np.frombuffer(t.data, dtype).reshape(shape)
                for (name, dtype, shape), t in zip(plan, inputs, strict=True)}
    return {name: t.to_numpy() for (name, _, _), t in zip(plan, inputs, strict=True)}


def to_tensors(outputs: Mapping[str, np.ndarray]) -> tuple[Tensor, ...]:
    """Canonical outputs as tensors (built directly: the arrays' dtypes and shapes are consistent)."""
    out = []
    for value in outputs.values():
        wire = _WIRE_DTYPES.get(value.dtype)
        if wire is None:
            dtype = DType.from_numpy(value.dtype)
            wire = (dtype, dtype.numpy, value.dtype == dtype.numpy)
            if len(_WIRE_DTYPES) < 64:  # a few dtypes in practice; bounded all the same
                _WIRE_DTYPES[value.dtype] = wire
        dtype, wire_dtype, same = wire
        # tobytes() writes C order: only a byte order other than the wire's needs a converted copy first.
        data = value.tobytes() if same else np.ascontiguousarray(value, wire_dtype).tobytes()
        out.append(Tensor(dtype, value.shape, data))  # a numpy shape is a tuple of ints already
    return tuple(out)


# An output array's numpy dtype -> (its wire dtype, that dtype's numpy form, whether the two are equal): looked up
# once per dtype, not per inference output (`DType.from_numpy`, `DType.numpy` and the comparison).
_WIRE_DTYPES: dict[object, tuple[DType, np.dtype[Any], bool]] = {}
_LITTLE_ENDIAN = sys.byteorder == "little"
_OK = TxStatus.OK


def disagreement(meta: ModelMeta, claimed: Sequence[Tensor], local: Sequence[Tensor]) -> str | None:
    """Why committed outputs disagree with local ones: exact bit for bit, tolerant within tolerance."""
    specs = output_specs(meta)
    if len(claimed) != len(specs) or len(local) != len(specs):
        return "wrong number of outputs"
    model_class = CompareMode.EXACT if meta.model_class is ModelClass.EXACT else CompareMode.TOLERANT
    return find_disagreement(
        specs, model_class, Tolerance(int(meta.tol_abs), int(meta.tol_rel_ppm)),
        {s.name: t.to_numpy() for s, t in zip(specs, claimed, strict=True)},
        {s.name: t.to_numpy() for s, t in zip(specs, local, strict=True)},
    )


def resolutions_agree(meta: ModelMeta | None, claimed: Resolution, local: Resolution) -> str | None:
    """Whether a committed resolution is acceptable given this node's own (None: it is)."""
    if isinstance(local, RegisterResolution):
        assert isinstance(claimed, RegisterResolution)
        if claimed.accepted != local.accepted:
            return "registration verdict differs"
        if claimed.gas_per_call != local.gas_per_call or claimed.gas_load != local.gas_load:
            return "registration price differs"
        return None
    assert isinstance(claimed, InferResolution) and meta is not None
    if claimed.status != local.status:
        return f"inference status {claimed.status.name} differs from {local.status.name}"
    if local.status is TxStatus.OK and claimed.outputs != local.outputs:  # equal bytes agree in every class
        return disagreement(meta, claimed.outputs, local.outputs)
    return None


# What each job of a hand-off resolves, in job order (`Engine.resolve_with_limits`): an inference's index in the
# block (>= 0), a registration's check (`_CHECK`, its index kept apart), or the block's PoI challenge.
_CHECK = -1
_CHALLENGE = -2


@dataclass(frozen=True, slots=True)
class ChallengeRun:
    """A PoI challenge to run with the block's work: the PoI model and its generated inputs."""

    model_id: Hash32
    meta: ModelMeta
    inputs: tuple[Tensor, ...]


class Engine:
    """Runs block work through a sandbox executor (the worker pool on a node, in-process in tools).

    `model_bytes` fetches a registered model's bytes (from state); packages are cached by model id.
    """

    def __init__(self, executor: Executor, model_bytes: Callable[[Hash32], bytes],
                 cache_models: int = 64, note_digest: Callable[[bytes, Hash32], None] | None = None,
                 assembly: AssemblyMemo | None = None) -> None:
        self.executor = executor
        # Completed uploads' facts (vm/assembly.py): its application's memo, for the blocks it builds and checks.
        self.assembly = assembly
        # Told the known SHA-256 of a registration's bytes before its job is sent (`CheckMemo.note_digest`).
        self._note_digest = note_digest
        self._model_bytes = model_bytes
        self._packages: OrderedDict[bytes, ModelPackage] = OrderedDict()
        self._cache_models = cache_models

    def package(self, model_id: Hash32, meta: ModelMeta, limits: SandboxLimits, *,
                resident: bool = False) -> ModelPackage:
        pkg = self._packages.get(model_id)
        if pkg is None:
            pkg = ModelPackage(bytes(model_id), self._model_bytes(model_id), model_spec(meta, limits),
                               golden_vectors(meta) if meta.golden else None, resident)
            self._packages[model_id] = pkg
            while len(self._packages) > self._cache_models:
                self._packages.popitem(last=False)
        else:
            self._packages.move_to_end(model_id)
        return pkg

    def resolve(self, work: Sequence[Work], params: Params, challenge: ChallengeRun | None = None, *,
                deferred: bool = False) -> tuple[dict[int, Resolution], tuple[Tensor, ...] | None]:
        """Resolve a block's work (and a PoI challenge) in one hand-off, plus one more if the block registers
        a model. Raises LocalFault when this node cannot decide."""
        return self.resolve_with_limits(work, sandbox_limits(params), challenge, deferred=deferred)

    def resolve_with_limits(self, work: Sequence[Work], limits: SandboxLimits, challenge: ChallengeRun | None = None,
                            *, deferred: bool = False) -> tuple[dict[int, Resolution], tuple[Tensor, ...] | None]:
        """`resolve` under the sandbox caps and prices `limits` (the client's pre-check runs this with the
        chain's published parameters: one registration rule, in one place)."""
        jobs: list[Job] = []
        slots: list[int] = []  # what each job resolves, in job order: an inference's index, _CHECK or _CHALLENGE
        checks: list[int] = []  # the registrations' indices, in job order
        resolutions: dict[int, Resolution] = {}
        registrations: dict[int, tuple[RegisterWork, ModelSpec]] = {}
        # `package` and the feeds' plan once per model of the hand-off, not per inference (it caches by id)
        packages: dict[bytes, tuple[ModelPackage, _FeedPlan]] = {}
        for item in work:
            if type(item) is InferWork:
                known = packages.get(item.model_id)
                if known is None:
                    known = packages[item.model_id] = (
                        self.package(item.model_id, item.model.meta, limits, resident=item.resident),
                        feed_plan(item.model.meta))
                jobs.append(InferJob(known[0], plan_feeds(known[1], item.inputs)))
                slots.append(item.index)
            else:
                assert isinstance(item, RegisterWork)
                verdict = static_registration_verdict(item.meta)
                if verdict is not None:
                    resolutions[item.index] = RegisterResolution(False, 0, verdict)
                    continue
                try:
                    spec = model_spec(item.meta, limits)
                except ValueError:
                    resolutions[item.index] = RegisterResolution(False, 0, "invalid input declaration")
                    continue
                registrations[item.index] = (item, spec)
                if item.bytes_hash is not None and self._note_digest is not None:
                    self._note_digest(item.model_bytes, item.bytes_hash)
                jobs.append(check_job(item, spec))
                slots.append(_CHECK)
                checks.append(item.index)
        if challenge is not None:
            pkg = self.package(challenge.model_id, challenge.meta, limits)
            jobs.append(InferJob(pkg, feeds(challenge.meta, challenge.inputs)))
            slots.append(_CHALLENGE)
        results = self.executor.run_batch(jobs) if jobs else []
        challenge_output: tuple[Tensor, ...] | None = None
        checked = iter(checks)
        for slot, result in zip(slots, results, strict=True):
            if slot >= 0:
                resolutions[slot] = infer_resolution(result)
            elif slot == _CHALLENGE:
                if result.outputs is None:
                    # A registered (checked, golden-tested) PoI model that fails here: this node's fault.
                    raise LocalFault(f"the PoI model failed: {type(result.error).__name__}")
                challenge_output = to_tensors(result.outputs)
            else:
                index = next(checked)
                item, spec = registrations[index]
                if result.info is None:
                    resolutions[index] = RegisterResolution(False, 0, _one_line(str(result.error)))
                    continue
                declared = output_specs(item.meta)
                if result.info.outputs != declared:
                    resolutions[index] = RegisterResolution(False, 0, "declared outputs differ from the graph")
                    continue
                resolutions[index] = registration_resolution(item, spec, result.info, result.golden,
                                                             deferred=deferred)
        return resolutions, challenge_output

    def check_deferred(self, model_id: Hash32, record: DeferredModel, model_bytes: bytes,
                       params: Params) -> DeferredCheck:
        """This node's check of a deferred registration (`vm.deferred.Checker`): the check job a completing
        chunk would run, with the gas its transaction left for the golden runs (`deferred_check_job` is that
        job, for the node's background precompute), judged with the certainty bands of
        `registration_resolution`. Raises LocalFault when this node cannot run it."""
        resolutions, _ = self.resolve((deferred_work(model_id, record, model_bytes),), params, deferred=True)
        verdict = resolutions[0]
        assert isinstance(verdict, RegisterResolution)
        return DeferredCheck(verdict.accepted, verdict.gas_per_call, verdict.gas_load, verdict.log, verdict.certain)

    def run_challenge(self, challenge: ChallengeRun, params: Params) -> tuple[Tensor, ...]:
        return self.resolve((), params, challenge)[1] or ()

    def close(self) -> None:
        self.executor.close()


def check_job(item: RegisterWork, spec: ModelSpec) -> CheckJob:
    """The sandbox job of a registration: the check, then its golden inputs with the gas left for them."""
    return CheckJob(item.model_bytes, spec, tuple(feeds(item.meta, v.inputs) for v in item.meta.golden),
                    item.gas_left)


def deferred_work(model_id: Hash32, record: DeferredModel, model_bytes: bytes) -> RegisterWork:
    header = record.header
    return RegisterWork(0, model_id, record.owner, header.meta, model_bytes, int(header.n_chunks),
                        int(record.gas_left), header.bytes_hash)


def deferred_check_job(model_id: Hash32, record: DeferredModel, model_bytes: bytes,
                       params: Params) -> CheckJob | None:
    """The job `Engine.check_deferred` will hand the sandbox for this registration under `params`; None
    when its verdict needs no sandbox (a metadata rule refuses it)."""
    work = deferred_work(model_id, record, model_bytes)
    if static_registration_verdict(work.meta) is not None:
        return None
    try:
        spec = model_spec(work.meta, sandbox_limits(params))
    except ValueError:
        return None
    return check_job(work, spec)


def resident_preload_job(model_id: Hash32, meta: ModelMeta, model_bytes: bytes, limits: SandboxLimits) -> InferJob | None:
    """The job that loads a resident model (vm/resident.py) into the worker its id routes to, pinned: its first
    golden input (the load runs the golden vectors; the package is the one `Engine.package` builds for the
    block path). None when the model declares no golden input."""
    if not meta.golden:
        return None
    pkg = ModelPackage(bytes(model_id), model_bytes, model_spec(meta, limits), golden_vectors(meta), True)
    return InferJob(pkg, feeds(meta, meta.golden[0].inputs))


def model_load_gas(schedule: GasSchedule, meta: ModelMeta, model_bytes: int, info: ModelInfo) -> int:
    """The load charge of a registered model (`vm.sandbox.limits.load_gas` on its checked facts)."""
    return load_gas(schedule, model_bytes=model_bytes, nodes=int(info.node_count), golden_runs=len(meta.golden),
                    gas_per_call=int(info.gas_per_call))


def registration_resolution(item: RegisterWork, spec: ModelSpec, info: ModelInfo,
                            golden: tuple[Mapping[str, np.ndarray] | None, ...] | None, *,
                            deferred: bool = False) -> RegisterResolution:
    """The verdict on a checked registration from its golden runs (`golden`: None when none ran).

    `deferred`: a deferred activation (vm/deferred.py), which no block can leave out: golden outputs near the
    tolerance are a rejection there instead of a local fault, and the verdict says whether this node is
    certain of it (the proposer's verdict travels in the block; a validator defers to it when it is not)."""
    runs = (resident_load_gas if deferred else registration_load_gas)(spec.limits.gas, nodes=int(info.node_count), golden_runs=len(item.meta.golden),
                                 gas_per_call=int(info.gas_per_call))
    if runs > item.gas_left:  # the worker ran no golden input it was not paid for (the same rule)
        return RegisterResolution(False, 0, f"gas left {item.gas_left} does not cover the golden runs {runs}")
    if golden is None or len(golden) != len(item.meta.golden):
        raise LocalFault(f"the sandbox ran {0 if golden is None else len(golden)} of registration "
                         f"{item.index}'s {len(item.meta.golden)} golden inputs")
    if any(outputs is None for outputs in golden):
        return RegisterResolution(False, 0, "a golden input fails to run")
    vectors, declared = golden_vectors(item.meta), output_specs(item.meta)
    actual = [dict(outputs or {}) for outputs in golden]
    gas_per_call = int(info.gas_per_call)
    # A deferred registration is resident (vm/resident.py): its blocks pay no per-KiB load.
    gas_load = runs if deferred else model_load_gas(spec.limits.gas, item.meta, len(item.model_bytes), info)

    def within(tolerance: Tolerance) -> bool:
        return golden_mismatch(vectors, declared, spec.model_class, tolerance, actual) is None

    # The inference rule: outside the tolerance is a disagreement. Near it (within twice the tolerance) honest
    # nodes may fall on both sides: on the synchronous path this node cannot decide (a local fault: the builder
    # leaves the chunk out). Far outside it, or any exact difference, refuses.
    if within(spec.tolerance):
        return RegisterResolution(True, gas_per_call, "", gas_load,
                                  certain=not deferred or within(narrower_tolerance(spec.tolerance)))
    if within(wider_tolerance(spec.tolerance)):
        if deferred:
            return RegisterResolution(False, gas_per_call, LOG_NEAR, gas_load, certain=False)
        raise LocalFault(f"golden outputs of registration {item.index} are near the tolerance")
    return RegisterResolution(False, 0, "golden vectors do not reproduce")


def narrower_tolerance(tolerance: Tolerance) -> Tolerance:
    """Half the tolerance: a deferred check's golden outputs within it pass on every honest node (which drift
    well inside the tolerance), so a validator this sure refuses a proposer's rejection."""
    return Tolerance(tolerance.t_abs // 2, tolerance.t_rel_ppm // 2)


def static_registration_verdict(meta: ModelMeta) -> str | None:
    """Metadata rules the VM itself owns (the checker owns the graph rules)."""
    if not meta.name:
        return "a model needs a name"
    if not meta.golden:
        return "a model needs at least one golden vector"
    if not meta.outputs:
        return "a model declares at least one output"
    for s in meta.outputs:
        itemsize = 8 if s.dtype.is_float else s.dtype.itemsize  # float outputs are committed as int64
        if math.prod(s.shape) * itemsize > MAX_TENSOR_BYTES or len(s.shape) > MAX_TENSOR_DIMS:
            return f"output {s.name!r} exceeds the {MAX_TENSOR_BYTES // 1024} KiB committed tensor cap"
    for vector in meta.golden:
        if len(vector.inputs) != len(meta.inputs) or len(vector.outputs) != len(meta.outputs):
            return "a golden vector does not match the declared inputs and outputs"
        for t, s in zip(vector.inputs, meta.inputs, strict=True):
            if t.dtype != s.dtype or t.shape != s.shape:
                return "a golden input does not match its declaration"
        for t, s in zip(vector.outputs, meta.outputs, strict=True):
            want = DType.INT64 if s.dtype.is_float else s.dtype
            if t.dtype != want or t.shape != s.shape:
                return "a golden output does not match its declaration"
    return None


def infer_resolution(result: JobResult) -> InferResolution:
    if result.outputs is not None:
        outputs = to_tensors(result.outputs)
        for t in outputs:  # a loop, not any() over a generator: this runs per inference
            if len(t.data) > MAX_TENSOR_BYTES or len(t.shape) > MAX_TENSOR_DIMS:
                return InferResolution(TxStatus.INFERENCE_FAILED, (), "OutputTooLarge")  # registration prevents it
        return InferResolution(_OK, outputs, "")
    # A stable code, never the runtime's text.
    return InferResolution(TxStatus.INFERENCE_FAILED, (), type(result.error).__name__)


def _one_line(text: str, limit: int = 240) -> str:
    """One line of at most `limit` UTF-8 bytes (a result's log is bounded in bytes)."""
    line = " ".join(text.split())
    raw = line.encode()
    return line if len(raw) <= limit else raw[: limit - 3].decode("utf-8", "ignore") + "..."


def challenge_for(view: StateView, chain_id: str, height: int, prev_block_id: bytes) -> ChallengeRun:
    """The PoI challenge of `height` (its seed uses the id of block height-1) on the models in `view`."""
    params = view.params()
    seed = compute_seed(chain_id, height, prev_block_id)
    model_id = pick_model(seed, params.poi_models)
    model = view.model(model_id)
    if model is None:
        raise LookupError(f"PoI model {model_id.hex()[:16]} is not registered")
    return ChallengeRun(model_id, model.meta, compute_challenge_inputs(seed, model.meta.inputs))
