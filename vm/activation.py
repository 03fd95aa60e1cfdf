"""A deferred registration's activation (vm/deferred.py is its queue): the verdict the activation block carries.

The verdict travels in the activation block as its one system result (a `TxResult` after the transactions'
results, under the results root), as an inference's outputs do: the proposer writes its own check's verdict,
or a postponement when it cannot run the check (bounded by `vm.max_postponements`); a validator accepts a
decided verdict unless its own check clearly contradicts it (`verdict_problem`: the inference rule with a band
of doubt around the tolerance), and an undecided one only when it cannot run the check either, or in a block
built from round `vm.unchecked_verdict_round` on (the liveness escape); apply and block sync take it from the
block. So neither a check that faults on every node, nor golden outputs tuned to the tolerance's edge (honest
CPUs on both sides of it), nor a proposer pretending it cannot check can stop, split or censor the chain
(docs/sandbox.md, "Deferred activation"; docs/security.md, "Deferred registrations").
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
from vm.retire import process_refund_deposit
from vm.state import ModelRecord, RegistrationData, StateView, model_key, model_name_key

# A proposer that cannot run an activation's check postpones it to the queue's tail; after
# `vm.max_postponements` postponements it writes LOG_UNCHECKED instead (a model no node can check cannot hold
# the chain).
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


def is_postponable(record: DeferredModel, params: Params) -> bool:
    """Whether the entry may be postponed once more (`vm.max_postponements`, read at its activation)."""
    return int(record.postponed) < params.vm.max_postponements


def is_undecided(claimed: TxResult, record: DeferredModel, params: Params) -> bool:
    """A verdict that says the proposer could not run the check: a postponement, or the final rejection
    "could not be checked" once the entry may not be postponed again."""
    return claimed.status is TxStatus.POSTPONED or (
        claimed.status is TxStatus.MODEL_REJECTED and claimed.log == LOG_UNCHECKED
        and not is_postponable(record, params))


def unchecked_result(record: DeferredModel, params: Params) -> TxResult:
    """What a proposer that could not run the check writes: a postponement, or after `vm.max_postponements` of
    them the rejection that keeps a model no node can check from holding its slot (and the chain) forever."""
    if is_postponable(record, params):
        return TxResult(TxStatus.POSTPONED, Gas(0), (), b"", LOG_POSTPONED)
    return TxResult(TxStatus.MODEL_REJECTED, Gas(0), (), b"", LOG_UNCHECKED)


def proposed_verdict(check: Checker) -> VerdictSource:
    """The builder's source: its own check decides; its local fault postpones (the synchronous path's
    builder leaves the chunk out instead; an activation cannot be left out). A decided verdict is memoized (a
    rebuilt block does not run the check again); a local fault is not: the next round's build tries again, since
    validators that can run the check refuse the postponement until the escape round."""
    memo: dict[bytes, TxResult] = {}

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        verdict = memo.get(bytes(model_id))
        if verdict is None:
            try:
                mine = check(model_id, record, view.get_blob(record.header.bytes_hash), params)
            except LocalFault:
                return unchecked_result(record, params)
            verdict = memo[bytes(model_id)] = verdict_result(model_id, mine)
        return verdict

    return source


def committed_verdict(claimed: TxResult | None) -> VerdictSource:
    """A committed block's verdict, applied as it stands (a commit by honest validators checked it): block
    sync never re-runs the check, as it never re-runs an inference."""

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        return validate_verdict_form(claimed, model_id, record, params)

    return source


def checked_verdict(claimed: TxResult | None, check: Checker, built_round: int) -> VerdictSource:
    """A validator's source: the proposer's verdict, once this node's own check does not contradict it
    (`verdict_problem`); `built_round` is the consensus round the block was built in (its header's, which
    consensus checks against the round's proposer)."""

    def source(view: StateView, model_id: Hash32, record: DeferredModel, params: Params) -> TxResult:
        verdict = validate_verdict_form(claimed, model_id, record, params)
        escape = built_round >= params.vm.unchecked_verdict_round
        why = verdict_problem(verdict, record, params, escape,
                              lambda: check(model_id, record, view.get_blob(record.header.bytes_hash), params))
        if why is not None:
            raise InvalidBlock(f"activation of {model_id.hex()[:16]}: {why}")
        return verdict

    return source


def validate_verdict_form(claimed: TxResult | None, model_id: Hash32, record: DeferredModel,
                          params: Params) -> TxResult:
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
        if not is_postponable(record, params):
            raise InvalidBlock(f"the activation was postponed {int(record.postponed)} times already "
                               f"(vm.max_postponements {params.vm.max_postponements})")
    else:
        raise InvalidBlock(f"{claimed.status.name} is not an activation verdict")
    return claimed


def verdict_problem(claimed: TxResult, record: DeferredModel, params: Params, escape: bool,
                    own: Callable[[], DeferredCheck]) -> str | None:
    """Why this validator refuses a well-formed verdict (None: it accepts). A decided one, by the inference
    rule: it accepts what its own check agrees with or cannot be sure of, and refuses what its check clearly
    contradicts. An undecided one (a postponement, the final "could not be checked"): the proposer's fault
    cannot be verified, but this node's ability can; it accepts only when its own check faults too, or under
    the liveness `escape` (a block built from round `vm.unchecked_verdict_round` on), and otherwise refuses
    (prevote nil: the next round's proposer, which may run the check, gets the height)."""
    if is_undecided(claimed, record, params):
        if escape:
            return None
        try:
            mine = own()
        except LocalFault:
            return None  # this node cannot run it either: the proposer's claim is plausible
        verdict = "registered" if mine.accepted else f"rejected ({mine.log})"
        return f"{'postponed' if claimed.status is TxStatus.POSTPONED else LOG_UNCHECKED}, but this node's check " \
               f"decides it: {verdict}"
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
        process_refund_deposit(view, model_id)  # vm/retire.py: its deposit comes back
        if view.get_raw(model_name_key(header.meta.name)) == model_id:
            view.delete(model_name_key(header.meta.name))
        view.put(deferred_key(model_id), record.replace(status=REJECTED, log=verdict.log))
    return verdict


def _clip(log: str) -> str:
    data = log.encode()
    return log if len(data) <= MAX_VERDICT_LOG_BYTES else data[:MAX_VERDICT_LOG_BYTES].decode(errors="ignore")
