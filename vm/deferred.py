"""Deferred activation of big models (docs/sandbox.md, "Deferred activation").

A completing chunk whose registration check is priced over `vm.defer_check_gas_over` does not run the check in
its block: the model's bytes become one blob, the model enters a FIFO queue in state as *pending*, and the
check (with its golden runs) runs at the block end of its activation height. Each entry gets its own height,
`ceil(work / vm.background_gas_per_block)` blocks after the queue's last one, so at most one activation runs per
block and every node has those blocks to compute the verdict in the background (the node's precompute fills
`vm.checkmemo` under the key the activation asks for).

This file is the queue; `vm/activation.py` decides an entry at its height (the verdict the block carries).
"""

from __future__ import annotations

from typing import Annotated

from core.codec import U8, MaxLen, Wire, wire
from core.types import Address, Gas, Hash32, Height
from vm.assembly import Assembly
from vm.params import Params
from vm.state import StateView
from vm.txs import UploadHeader

PENDING, REGISTERED, REJECTED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", REGISTERED: "registered", REJECTED: "rejected"}
MAX_VERDICT_LOG_BYTES = 256

KEY_DEFERRED_TAIL = b"\x00deferred_tail"


def deferred_key(model_id: Hash32) -> bytes:
    """A deferred registration's record (kept after its activation: its verdict)."""
    return b"Y" + model_id


def activation_key(height: int) -> bytes:
    """The model (32 raw bytes) that activates at `height`: at most one per height."""
    return b"Z" + height.to_bytes(8, "big")


@wire(max_bytes=UploadHeader.MAX_BYTES + MAX_VERDICT_LOG_BYTES + 256)
class DeferredModel(Wire):
    """A registration queued at `queued_at` for its check at `activates_at`. `check_gas` was paid in tokens
    at queueing; `gas_left` is what its transaction left for the golden runs (the sync path's rule)."""

    owner: Address
    header: UploadHeader
    queued_at: Height
    activates_at: Height
    check_gas: Gas
    gas_left: Gas
    status: U8
    log: Annotated[str, MaxLen(MAX_VERDICT_LOG_BYTES)]
    postponed: U8  # times a proposer could not check it (`vm.max_postponements` at most)

    def validate_wire(self) -> None:
        if self.status not in STATUS_NAMES:
            raise ValueError(f"unknown deferred registration status {self.status}")

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[int(self.status)]


@wire(max_bytes=32)
class DeferredTail(Wire):
    """The queue's last activation height: a new entry activates after it."""

    height: Height


def compute_defer_blocks(params: Params, work_gas: int) -> int:
    """Blocks of background budget an entry of `work_gas` takes (at least one)."""
    return max(1, -(-work_gas // params.vm.background_gas_per_block))


def is_deferred(params: Params, check_gas: int) -> bool:
    return check_gas > params.vm.defer_check_gas_over


def get_deferred(view: StateView, model_id: Hash32) -> DeferredModel | None:
    return view.get(deferred_key(model_id), DeferredModel)


def is_pending(view: StateView, model_id: Hash32) -> bool:
    record = get_deferred(view, model_id)
    return record is not None and record.status == PENDING


def process_enqueue(view: StateView, params: Params, height: Height, owner: Address, model_id: Hash32,
                    header: UploadHeader, model: Assembly, check_gas: int, gas_left: int) -> Height:
    """Queue a checked-against-its-header upload for activation; the model's bytes become the blob the record
    names (the caller drops the upload and its chunks): the bytes this execution assembled, or, when the
    node prepared the upload ahead (vm/assembly.py), a blob composed of its chunks, which the node stores at
    commit unless it holds it already. Returns the activation height."""
    if model.data is not None:
        view.put_hashed_blob(model.data, header.bytes_hash)
    else:
        view.put_composed_blob(header.bytes_hash, model.parts, model.facts.size)
    return process_requeue(view, params, height, model_id,
                  DeferredModel(owner, header, height, height, Gas(check_gas), Gas(gas_left), PENDING, "", 0))


def process_requeue(view: StateView, params: Params, height: Height, model_id: Hash32, record: DeferredModel) -> Height:
    """Put `record` at the queue's tail (a new entry, or a postponed one): its activation height is its work's
    blocks after the last entry's, or after `height`. Returns it."""
    tail = view.get(KEY_DEFERRED_TAIL, DeferredTail)
    after = max(int(height), 0 if tail is None else int(tail.height))
    activates_at = Height(after + compute_defer_blocks(params, int(record.check_gas) + int(record.gas_left)))
    view.put(deferred_key(model_id), record.replace(activates_at=activates_at))
    view.put_raw(activation_key(activates_at), model_id)
    view.put(KEY_DEFERRED_TAIL, DeferredTail(activates_at))
    return activates_at


def process_leave_queue(view: StateView, height: int, activates_at: int) -> None:
    """The entry due at `activates_at` left the queue at block `height` (retired: vm/retire.py; its slot is
    deleted first). When it was the tail, the tail goes back to the latest entry still pending, or goes
    altogether when none is left, so the next entry activates as if the one that left had never queued.
    Reads the slots below `activates_at` down to the first one that names an entry (at most the heights
    that entries retired from the middle left empty, each paid for by a registration; once walked, the next
    entry reuses them)."""
    tail = view.get(KEY_DEFERRED_TAIL, DeferredTail)
    if tail is None or int(tail.height) != activates_at:
        return  # an entry in the middle: those after it keep their heights
    for h in range(activates_at - 1, height, -1):
        raw = view.get_raw(activation_key(h))
        if raw is None:
            continue
        record = get_deferred(view, Hash32(raw))
        if record is not None and record.status == PENDING:
            view.put(KEY_DEFERRED_TAIL, DeferredTail(Height(h)))
            return
    view.delete(KEY_DEFERRED_TAIL)


def pending_in_order(view: StateView, limit: int) -> list[tuple[Hash32, DeferredModel]]:
    """The first `limit` registrations still pending in `view`, in activation order (the node's background
    precompute reads them after each commit). Reads the activation slots from the next height to the tail."""
    tail = view.get(KEY_DEFERRED_TAIL, DeferredTail)
    out: list[tuple[Hash32, DeferredModel]] = []
    if tail is None:
        return out
    height = int(view.chain().height)
    for h in range(height + 1, int(tail.height) + 1):
        raw = view.get_raw(activation_key(h))
        if raw is None:
            continue
        record = get_deferred(view, Hash32(raw))
        if record is not None and record.status == PENDING:
            out.append((Hash32(raw), record))
            if len(out) >= limit:
                break
    return out
