"""A deferred registration's activation (vm/deferred.py is its queue): the verdict the activation block carries.

The verdict travels in the activation block as its one system result (a `TxResult` after the transactions'
results, under the results root), as an inference's outputs do: the proposer writes its own check's verdict,
or a postponement when it cannot run the check (bounded by `MAX_POSTPONEMENTS`); a validator accepts it
unless its own check clearly contradicts it (`verdict_problem`: the inference rule with a band of doubt
around the tolerance); apply and block sync take it from the block. So neither a check that faults on every
node nor golden outputs tuned to the tolerance's edge (honest CPUs on both sides of it) can stop or split the
chain (docs/sandbox.md, "Deferred activation"; docs/security.md, "Deferred registrations").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import DecodeError, InvalidBlock, LocalFault
from core.header import TxResult, TxStatus
from core.types import Gas, Hash32, Height
from vm.deferred import (
    MAX_VERDICT_LOG_BYTES,
    PENDING,
    REGISTERED,
    REJECTED,
    DeferredModel,
    activation_key,
    deferred_key,
    get_deferred,
    process_requeue,
)
from vm.params import Params
from vm.resident import process_release
from vm.state import ModelRecord, RegistrationData, StateView, model_key, model_name_key

# A proposer that cannot run an activation's check postpones it to the queue's tail; after this many
# postponements the activation rejects it instead (a model no node can check cannot hold the chain).
MAX_POSTPONEMENTS = 3
LOG_POSTPONED = "the proposer could not check it"
LOG_UNCHECKED = "could not be checked"
LOG_NEAR = "golden outputs are near the tolerance"


@dataclass(frozen=True, slots=True)
class DeferredCheck:
    """This node's own check of an activating registration: the verdict it would propose (with the model's
    price whenever the check got that far) and whether it is `certain` of it. Golden outputs within half the
    tolerance, or beyond twice it (any difference for an exact model), are certain; in between, honest nodes
    on other CPUs may fall on the other side of the tolerance, so this node defers to the proposer."""

    accepted: bool
    gas_per_call: int
    gas_load: int
    log: str
    certain: bool = True


# This node's check of a deferred registration (`vm.engine.Engine.check_deferred`); raises LocalFault when it
# cannot run it (no sandbox, a worker failure, out of memory).
Checker = Callable[[Hash32, DeferredModel, bytes, Params], DeferredCheck]

# Where a block's activation verdict comes from, given the entry due at its height: the builder's own check
# (`proposed_verdict`), the block's system result checked against this node's (`checked_verdict`, a validator)
# or taken as committed (`committed_verdict`, apply and block sync). Returns the verdict as the block's
# system result; raises InvalidBlock when the block's is not acceptable, LocalFault when this node cannot judge.
VerdictSource = Callable[[StateView, Hash32, DeferredModel, Params], TxResult]


def verdict_result(model_id: Hash32, check: DeferredCheck) -> TxResult:
    """A decided check as the block's system result: registered (with its price) or rejected (with why)."""
    if check.accepted:
        data = RegistrationData(model_id, Gas(check.gas_per_call), Gas(check.gas_load)).encode()
        return TxResult(TxStatus.OK, Gas(0), (), data, "")
    return TxResult(TxStatus.MODEL_REJECTED, Gas(0), (), b"", _clip(check.log))


def unchecked_result(record: DeferredModel) -> TxResult:
    """What a proposer that could not run the check writes: a postponement, or after `MAX_POSTPONEMENTS` of
    them the rejection that keeps a model no node can check from holding its slot (and the chain) forever."""
    if int(record.postponed) < MAX_POSTPONEMENTS:
        return TxResult(TxStatus.POSTPONED, Gas(0), (), b"", LOG_POSTPONED)
    return TxResult(TxStatus.MODEL_REJECTED, Gas(0), (), b"", LOG_UNCHECKED)


def proposed_verdict(check: Checker) -> VerdictSource:
    """The builder's source: its own check decides; its local fault postpones (the synchronous path's
    builder leaves the chunk out instead; an activation cannot be left out). Memoized: a rebuilt block does
    not run the check again."""
    memo: dict[bytes, TxResult] = {}

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        verdict = memo.get(bytes(model_id))
        if verdict is None:
            try:
                mine = check(model_id, record, view.get_blob(record.header.bytes_hash), params)
            except LocalFault:
                verdict = unchecked_result(record)
            else:
                verdict = verdict_result(model_id, mine)
            memo[bytes(model_id)] = verdict
        return verdict

    return source


def committed_verdict(claimed: TxResult | None) -> VerdictSource:
    """A committed block's verdict, applied as it stands (a commit by honest validators checked it): block
    sync never re-runs the check, as it never re-runs an inference."""

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        return validate_verdict_form(claimed, model_id, record)

    return source


def checked_verdict(claimed: TxResult | None, check: Checker) -> VerdictSource:
    """A validator's source: the proposer's verdict, once this node's own check does not clearly contradict
    it (`verdict_problem`)."""

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        verdict = validate_verdict_form(claimed, model_id, record)
        why = verdict_problem(verdict, record,
                              lambda: check(model_id, record, view.get_blob(record.header.bytes_hash), params))
        if why is not None:
            raise InvalidBlock(f"activation of {model_id.hex()[:16]}: {why}")
        return verdict

    return source


def validate_verdict_form(claimed: TxResult | None, model_id: Hash32, record: DeferredModel) -> TxResult:
    """The block's system result is a verdict on the entry due (registered naming it, rejected, or a
    postponement within the bound); raises InvalidBlock."""
    if claimed is None:
        raise InvalidBlock("the block activates a deferred registration and carries no verdict")
    if claimed.gas_used != 0 or claimed.outputs:
        raise InvalidBlock("an activation verdict uses no gas and has no outputs")
    if claimed.status is TxStatus.OK:
        try:
            data = RegistrationData.decode(claimed.data)
        except DecodeError:
            raise InvalidBlock("malformed activation registration data") from None
        if data.model_id != model_id or claimed.log:
            raise InvalidBlock("the activation verdict names another model")
    elif claimed.status is TxStatus.MODEL_REJECTED:
        if claimed.data or len(claimed.log.encode()) > MAX_VERDICT_LOG_BYTES:
            raise InvalidBlock("malformed activation rejection")
    elif claimed.status is TxStatus.POSTPONED:
        if claimed.data or claimed.log != LOG_POSTPONED:
            raise InvalidBlock("malformed activation postponement")
        if int(record.postponed) >= MAX_POSTPONEMENTS:
            raise InvalidBlock(f"the activation was postponed {MAX_POSTPONEMENTS} times already")
    else:
        raise InvalidBlock(f"{claimed.status.name} is not an activation verdict")
    return claimed


def verdict_problem(claimed: TxResult, record: DeferredModel, own: Callable[[], DeferredCheck]) -> str | None:
    """Why this validator refuses a well-formed verdict (None: it accepts), by the inference rule: it accepts
    what its own check agrees with or cannot be sure of, and refuses what its check clearly contradicts. A
    postponement (and the final "could not be checked") needs no check: the proposer's fault cannot be
    verified, and the bound keeps it from lasting."""
    if claimed.status is TxStatus.POSTPONED:
        return None
    if (claimed.status is TxStatus.MODEL_REJECTED and claimed.log == LOG_UNCHECKED
            and int(record.postponed) >= MAX_POSTPONEMENTS):
        return None
    mine = own()  # LocalFault: this node cannot judge (prevote nil)
    if claimed.status is TxStatus.OK:
        if not mine.accepted and mine.certain:
            return f"registered, but this node's check clearly fails ({mine.log})"
        data = RegistrationData.decode(claimed.data)
        if (int(data.gas_per_call), int(data.gas_load)) != (mine.gas_per_call, mine.gas_load):
            return "registration price differs"
        return None
    if mine.accepted and mine.certain:
        return "rejected, but this node's check clearly passes"
    return None


def process_activations(view: StateView, height: Height, params: Params,
                        verdict_of: VerdictSource | None) -> TxResult | None:
    """Block end of `height`: take the verdict on the registration that activates here, if any, write it, and
    return it (the block's system result). A postponement re-queues the entry at the queue's tail."""
    raw = view.get_raw(activation_key(height))
    if raw is None:
        return None
    model_id = Hash32(raw)
    record = get_deferred(view, model_id)
    assert record is not None and record.status == PENDING
    if verdict_of is None:
        raise LocalFault(f"block {height} activates a deferred registration and this executor has no sandbox")
    verdict = verdict_of(view, model_id, record, params)
    view.delete(activation_key(height))
    header = record.header
    if verdict.status is TxStatus.POSTPONED:
        process_requeue(view, params, height, model_id, record.replace(postponed=int(record.postponed) + 1))
    elif verdict.status is TxStatus.OK:
        data = RegistrationData.decode(verdict.data)
        view.put(model_key(model_id), ModelRecord(record.owner, header.meta, header.bytes_hash, header.total_bytes,
                                                  header.n_chunks, data.gas_per_call, height, data.gas_load))
        view.put(deferred_key(model_id), record.replace(status=REGISTERED))
    else:
        view.release_blob(header.bytes_hash)
        process_release(view, model_id, int(header.total_bytes))  # vm/resident.py: its bytes no longer count
        if view.get_raw(model_name_key(header.meta.name)) == model_id:
            view.delete(model_name_key(header.meta.name))
        view.put(deferred_key(model_id), record.replace(status=REJECTED, log=verdict.log))
    return verdict


def _clip(log: str) -> str:
    data = log.encode()
    return log if len(data) <= MAX_VERDICT_LOG_BYTES else data[:MAX_VERDICT_LOG_BYTES].decode(errors="ignore")
