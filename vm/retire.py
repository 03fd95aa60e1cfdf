"""Retiring a model, and the deposit a resident model locks (docs/sandbox.md, "Retiring a model").

The resident budget (`vm.max_resident_bytes`, `vm.resident.MAX_RESIDENT_MODELS`) is shared by the whole chain,
so holding a share of it must cost something for as long as it is held, and there must be a way to give it
back. After NEAR's storage staking: a resident model's completing chunk locks `vm.resident_deposit_per_kib`
per KiB of its bytes in an escrow account, and the deposit comes back, exactly once, when the model leaves
the budget: rejected at its activation, or *retired*. Its owner retires it with a signed transaction
(`TxKind.RETIRE_MODEL`), governance with a `RetireModelsProposal` (vm/gov/). Retirement releases the
model's resident bytes and slot, the blob of its bytes (collected by the node's blob garbage collection,
vm/blobrefs.py) and its name; a pending registration leaves the activation queue. The model id keeps a
tombstone (`RetiredModel`), so an inference on it fails with "model retired at height N" and the same id
cannot register again (a new name or metadata gives a new id). A model in the PoI set cannot be retired:
governance removes it from the set first (a `PoiModelsProposal`), which keeps the set's own rules (at least
one model, each checked) in one place. Deterministic: state reads and the height only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from core.codec import MaxLen, Wire, wire
from core.hashing import sha256
from core.header import TxResult, TxStatus
from core.limits import MAX_BLOCK_TXS
from core.tx import Transaction
from core.types import Address, Amount, Hash32, Height
from vm.deferred import PENDING, REGISTERED, activation_key, deferred_key, get_deferred, process_leave_queue
from vm.gov.store import get_events, get_proposal
from vm.gov.types import MAX_RETIRE_MODELS, ProposalStatus, RetireModelsProposal
from vm.params import Params
from vm.resident import get_resident_set, process_release
from vm.state import ModelRecord, StateView, model_key, model_name_key
from vm.txs import RetireModel, TxKind

# Deposits wait here: an ordinary account no key controls, so balances still add up to the supply.
DEPOSIT_ESCROW = Address(sha256(b"inferchain/model-deposit-escrow")[:20])


def deposit_key(model_id: Hash32) -> bytes:
    return b"L" + model_id


def kept_key(model_id: Hash32) -> bytes:
    """A retired model's record, kept (with its blob) while evidence about its inferences may still land."""
    return b"K" + model_id


def purge_key(height: int) -> bytes:
    """The retired models whose kept records and blobs go at the start of block `height`."""
    return b"J" + height.to_bytes(8, "big")


def retired_key(model_id: Hash32) -> bytes:
    return b"T" + model_id


@wire(max_bytes=64)
class ModelDeposit(Wire):
    """What a resident model locked at its completing chunk, and whom it goes back to."""

    owner: Address
    amount: Amount


@wire(max_bytes=64)
class RetiredModel(Wire):
    """A retired model id's tombstone: who owned it, when it was retired, and whether governance did it."""

    owner: Address
    retired_at: Height
    by_governance: bool


# Retirements one height can schedule: a block's transactions, and 64 closing proposals of 16 models each.
MAX_PURGES = MAX_BLOCK_TXS + 64 * MAX_RETIRE_MODELS


@wire(max_bytes=34 * MAX_PURGES + 16)
class PurgeList(Wire):
    """Retired models whose kept record and blob are released at one height."""

    model_ids: Annotated[tuple[Hash32, ...], MaxLen(MAX_PURGES)]


class RetireRefused(ValueError):
    """A retirement this state cannot carry out; the message is one line."""


def compute_resident_deposit(params: Params, model_bytes: int) -> int:
    """The deposit a resident model of `model_bytes` locks: `vm.resident_deposit_per_kib` per KiB, rounded up."""
    return compute_deposit(int(params.vm.resident_deposit_per_kib), model_bytes)


def compute_deposit(per_kib: int, model_bytes: int) -> int:
    """`compute_resident_deposit` from the parameter's value (the CLI quotes it from the node's parameters)."""
    return per_kib * -(-model_bytes // 1024)


def get_model_deposit(view: StateView, model_id: Hash32) -> ModelDeposit | None:
    return view.get(deposit_key(model_id), ModelDeposit)


def get_retired(view: StateView, model_id: Hash32) -> RetiredModel | None:
    return view.get(retired_key(model_id), RetiredModel)


def retired_error(view: StateView, model_id: Hash32) -> str | None:
    """Why `model_id` takes no inference or registration because it was retired (None: it was not)."""
    record = get_retired(view, model_id)
    if record is None:
        return None
    return f"model retired at height {int(record.retired_at):d}"


def process_lock_deposit(view: StateView, model_id: Hash32, owner: Address, amount: int) -> None:
    """Move `amount` from `owner` (who can pay it: checked first) to the escrow, named by the model."""
    if amount <= 0:
        return
    src = view.account(owner)
    assert src.balance >= amount, "the caller checks the balance before any write"
    view.set_account(owner, src.replace(balance=Amount(src.balance - amount)))
    escrow = view.account(DEPOSIT_ESCROW)
    view.set_account(DEPOSIT_ESCROW, escrow.replace(balance=Amount(escrow.balance + amount)))
    view.put(deposit_key(model_id), ModelDeposit(owner, Amount(amount)))


def process_refund_deposit(view: StateView, model_id: Hash32) -> int:
    """Give a model's deposit back to its owner and forget it (so it is refunded once); the amount."""
    record = _take_from_escrow(view, model_id)
    if record is None:
        return 0
    owner = view.account(record.owner)
    view.set_account(record.owner, owner.replace(balance=Amount(owner.balance + record.amount)))
    return int(record.amount)


def process_burn_deposit(view: StateView, model_id: Hash32) -> int:
    """Take a model's deposit out of the escrow for good and forget it; the amount (the caller's burn)."""
    record = _take_from_escrow(view, model_id)
    return 0 if record is None else int(record.amount)


def _take_from_escrow(view: StateView, model_id: Hash32) -> ModelDeposit | None:
    """A model's deposit record, its amount taken out of the escrow account and the record deleted; None if
    the model locked none (or it was already given back)."""
    record = get_model_deposit(view, model_id)
    if record is None:
        return None
    escrow = view.account(DEPOSIT_ESCROW)
    view.set_account(DEPOSIT_ESCROW, escrow.replace(balance=Amount(escrow.balance - record.amount)))
    view.delete(deposit_key(model_id))
    return record


def validate_retire(view: StateView, params: Params, model_id: Hash32, sender: Address | None) -> Address:
    """That `model_id` can be retired now, by `sender` (None: by governance); its owner. Raises RetireRefused."""
    short = model_id.hex()[:16]
    gone = retired_error(view, model_id)
    if gone is not None:
        raise RetireRefused(f"model {short} is already retired ({gone})")
    record = view.model(model_id)
    pending = get_deferred(view, model_id)
    if record is not None:
        owner = record.owner
    elif pending is not None and pending.status == PENDING:
        owner = pending.owner
    else:
        raise RetireRefused(f"model {short} is neither registered nor pending activation")
    if sender is not None and sender != owner:
        raise RetireRefused(f"model {short} is owned by another account")
    if model_id in params.poi_models:
        raise RetireRefused(f"model {short} is in the PoI set: a PoiModelsProposal must remove it first")
    return owner


def process_retire(view: StateView, params: Params, height: int, model_id: Hash32, sender: Address | None, *,
                   burn: bool = False) -> int:
    """Retire `model_id` (checked by `validate_retire`, raising RetireRefused before any write): the model
    record or the pending entry and its activation slot go, its blob, name and resident bytes are released,
    its deposit refunded (or, with `burn`, governance's choice, burned: the caller records it in the supply),
    and a tombstone stays. Returns the deposit refunded or burned."""
    owner = validate_retire(view, params, model_id, sender)
    record = view.model(model_id)
    pending = get_deferred(view, model_id)
    if record is not None:
        name, size = record.meta.name, int(record.total_bytes)
        view.delete(model_key(model_id))
        # Evidence of a wrong output on it may land up to `slashing.max_evidence_age` blocks after its last
        # inference: its record and blob stay (not callable) until then, so retiring cannot dodge a slash.
        view.put(kept_key(model_id), record)
        due = height + int(params.slashing.max_evidence_age) + 1
        queue = view.get(purge_key(due), PurgeList) or PurgeList(())
        view.put(purge_key(due), PurgeList((*queue.model_ids, model_id)))
    else:
        assert pending is not None
        header = pending.header
        name, size = header.meta.name, int(header.total_bytes)
        view.delete(activation_key(int(pending.activates_at)))  # its activation never comes
        process_leave_queue(view, height, int(pending.activates_at))  # the tail, when it was the last
        view.release_blob(header.bytes_hash)  # never callable, so no evidence can name it: released now
    if pending is not None and pending.status in (PENDING, REGISTERED):
        view.delete(deferred_key(model_id))
    if any(m == model_id for m in get_resident_set(view).models):
        process_release(view, model_id, size)
    if view.get_raw(model_name_key(name)) == model_id:
        view.delete(model_name_key(name))
    amount = process_burn_deposit(view, model_id) if burn else process_refund_deposit(view, model_id)
    view.put(retired_key(model_id), RetiredModel(owner, Height(height), sender is None))
    return amount


def process_purge_retired(view: StateView, height: int) -> None:
    """Start of block `height`: the kept records of models retired `max_evidence_age` + 1 blocks ago go, and
    their blobs are released (the node's garbage collection deletes them after the commit)."""
    queue = view.get(purge_key(height), PurgeList)
    if queue is None:
        return
    for model_id in queue.model_ids:
        record = view.get(kept_key(model_id), ModelRecord)
        if record is not None:
            view.release_blob(record.bytes_hash)
            view.delete(kept_key(model_id))
    view.delete(purge_key(height))


def get_evidence_model(view: StateView, model_id: Hash32) -> ModelRecord | None:
    """The record wrong-inference evidence is judged by: the registered model's, or a retired model's kept
    one while evidence about it may still land."""
    return view.model(model_id) or view.get(kept_key(model_id), ModelRecord)


def process_retire_tx(view: StateView, params: Params, height: int, sender: Address, p: RetireModel,
                      charge: Callable[[int], None]) -> bytes:
    """The owner's retirement transaction; its data is the deposit refunded (8 bytes, big-endian)."""
    charge(params.vm.gas_retire_model)
    return process_retire(view, params, height, p.model_id, sender).to_bytes(8, "big")


def retired_in_block(view: StateView, height: int, txs: Sequence[Transaction],
                     results: Sequence[TxResult]) -> frozenset[bytes]:
    """The models block `height` retired, from its owners' transactions that succeeded and its passed
    retirement proposals (read from `view`, the state after it): what the node's mempool drops inferences on."""
    retired = {bytes(RetireModel.decode(tx.payload).model_id) for tx, result in zip(txs, results, strict=False)
               if tx.kind == TxKind.RETIRE_MODEL and result.status is TxStatus.OK}
    for event in get_events(view, height).events:
        if event.status is not ProposalStatus.PASSED:
            continue
        proposal = get_proposal(view, int(event.proposal_id))
        if proposal is not None and isinstance(proposal.content, RetireModelsProposal):
            retired.update(bytes(m) for m in proposal.content.models)
    return frozenset(retired)
