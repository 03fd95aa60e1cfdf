"""Deferred activation of big models (docs/sandbox.md, "Deferred activation").

A completing chunk whose registration check is priced over `vm.defer_check_gas_over` does not run the check in
its block: the model's bytes become one blob, the model enters a FIFO queue in state as *pending*, and the
check (with its golden runs) runs at the block end of its activation height. Each entry gets its own height,
`ceil(work / vm.background_gas_per_block)` blocks after the queue's last one, so at most one activation runs per
block and every node has those blocks to compute the verdict in the background (the node's precompute fills
`vm.checkmemo` under the key the activation asks for). The verdict is a pure function of the bytes and the
parameters, so a node that computes it synchronously at the activation height writes the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from core.codec import U8, MaxLen, Wire, wire
from core.errors import LocalFault
from core.types import Address, Gas, Hash32, Height
from vm.params import Params
from vm.state import ModelRecord, StateView, model_key, model_name_key
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
                    header: UploadHeader, model_bytes: bytes, check_gas: int, gas_left: int) -> Height:
    """Queue a checked-against-its-header upload for activation; the model's bytes become the blob the record
    names (the caller drops the upload and its chunks). Returns the activation height."""
    tail = view.get(KEY_DEFERRED_TAIL, DeferredTail)
    after = max(int(height), 0 if tail is None else int(tail.height))
    activates_at = Height(after + compute_defer_blocks(params, check_gas + gas_left))
    view.put_hashed_blob(model_bytes, header.bytes_hash)
    view.put(deferred_key(model_id), DeferredModel(owner, header, height, activates_at, Gas(check_gas),
                                                   Gas(gas_left), PENDING, ""))
    view.put_raw(activation_key(activates_at), model_id)
    view.put(KEY_DEFERRED_TAIL, DeferredTail(activates_at))
    return activates_at


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


# The verdict on one activating registration: (accepted, gas_per_call, gas_load, log). The engine computes it
# (`vm.engine.Engine.resolve_deferred`): the same check a completing chunk runs on the sync path.
Activator = Callable[[Hash32, DeferredModel, bytes, Params], tuple[bool, int, int, str]]


def process_activations(view: StateView, height: Height, params: Params, activate: Activator | None) -> None:
    """Block end of `height`: decide the registration that activates here, if any, and write its verdict.
    Raises LocalFault when this node cannot decide it (no sandbox, a worker failure): the block waits."""
    raw = view.get_raw(activation_key(height))
    if raw is None:
        return
    model_id = Hash32(raw)
    record = get_deferred(view, model_id)
    assert record is not None and record.status == PENDING
    if activate is None:
        raise LocalFault(f"block {height} activates a deferred registration and this executor has no sandbox")
    header = record.header
    accepted, gas_per_call, gas_load, log = activate(model_id, record, view.get_blob(header.bytes_hash), params)
    if accepted:
        view.put(model_key(model_id), ModelRecord(record.owner, header.meta, header.bytes_hash, header.total_bytes,
                                                  header.n_chunks, Gas(gas_per_call), height, Gas(gas_load)))
        record = record.replace(status=REGISTERED)
    else:
        view.release_blob(header.bytes_hash)
        if view.get_raw(model_name_key(header.meta.name)) == model_id:
            view.delete(model_name_key(header.meta.name))
        record = record.replace(status=REJECTED, log=_clip(log))
    view.put(deferred_key(model_id), record)
    view.delete(activation_key(height))


def _clip(log: str) -> str:
    data = log.encode()
    return log if len(data) <= MAX_VERDICT_LOG_BYTES else data[:MAX_VERDICT_LOG_BYTES].decode(errors="ignore")
