"""Resident models: a big model's load paid once, at its activation, and kept loaded (docs/sandbox.md,
"Resident models").

The rule: every deferred registration (vm/deferred.py: its check is over `vm.defer_check_gas_over`) is
*resident*. Its completing chunk pays, besides the check, the model's cold load in tokens (`resident_load_price`:
the per-KiB, per-node and base terms of `load_gas` at `vm.min_gas_price`), and the activation records a load
charge without the per-KiB term (`vm.sandbox.limits.resident_load_gas`), so no block pays the bytes again;
every validator keeps its session loaded instead (pinned in the worker pool, loaded ahead by the node).

What makes that safe is a consensus bound: the bytes of resident models, pending ones included, never exceed
`vm.max_resident_bytes` (each validator's workers hold them all; docs/sandbox.md, "Memory budget"). A
registration that would pass it (or the count `MAX_RESIDENT_MODELS`) is refused at its completing chunk (the
upload is kept, so it can complete once room frees); a rejected activation gives its bytes back. The set of
resident models is one state record, so a node knows which models to load (node/precompute.py).
"""

from __future__ import annotations

from typing import Annotated

from core.codec import U64, MaxLen, Wire, wire
from core.types import Hash32
from vm.deferred import REGISTERED, get_deferred
from vm.params import Params
from vm.state import StateView

KEY_RESIDENT = b"\x00resident"
# Resident models at most, pending ones included: the set is one record the node reads after each commit.
MAX_RESIDENT_MODELS = 64


@wire(max_bytes=16 + MAX_RESIDENT_MODELS * 40)
class ResidentSet(Wire):
    """The resident models (registered or pending activation), in queueing order, and their bytes."""

    total_bytes: U64
    models: Annotated[tuple[Hash32, ...], MaxLen(MAX_RESIDENT_MODELS)]


EMPTY = ResidentSet(0, ())


def get_resident_set(view: StateView) -> ResidentSet:
    return view.get(KEY_RESIDENT, ResidentSet) or EMPTY


def get_resident_bytes(view: StateView) -> int:
    """Bytes of resident models, registered or pending activation."""
    return int(get_resident_set(view).total_bytes)


def is_resident(view: StateView, model_id: Hash32) -> bool:
    """Whether `model_id` is a registered resident model (an activated deferred registration)."""
    record = get_deferred(view, model_id)
    return record is not None and record.status == REGISTERED


def resident_room_error(view: StateView, params: Params, model_bytes: int) -> str | None:
    """Why a resident model of `model_bytes` cannot be queued (None: it fits `vm.max_resident_bytes` and the
    count)."""
    held = get_resident_set(view)
    bound = int(params.vm.max_resident_bytes)
    if int(held.total_bytes) + model_bytes > bound:
        return (f"resident models would hold {int(held.total_bytes) + model_bytes:d} bytes, over "
                f"vm.max_resident_bytes {bound:d} ({int(held.total_bytes):d} held)")
    if len(held.models) >= MAX_RESIDENT_MODELS:
        return f"{MAX_RESIDENT_MODELS} resident models are held already (vm.resident.MAX_RESIDENT_MODELS)"
    return None


def process_reserve(view: StateView, model_id: Hash32, model_bytes: int) -> None:
    """Count a queued resident model (checked by `resident_room_error` first)."""
    held = get_resident_set(view)
    view.put(KEY_RESIDENT, ResidentSet(int(held.total_bytes) + model_bytes, (*held.models, model_id)))


def process_release(view: StateView, model_id: Hash32, model_bytes: int) -> None:
    """Give back a rejected activation's bytes and slot."""
    held = get_resident_set(view)
    view.put(KEY_RESIDENT, ResidentSet(max(0, int(held.total_bytes) - model_bytes),
                                       tuple(m for m in held.models if m != model_id)))


def unpin_departed(view: StateView, executor: object) -> int:
    """Node-side, after a commit (and at start-up): tell `executor` (the block path's worker pool) to drop the
    pinned sessions of every model not in `view`'s resident set, so models retired (vm/retire.py) or rejected
    at their activation stop holding worker memory the chain's bound no longer counts. How many sessions were
    dropped; 0 for an executor that pins nothing it could drop (no `unpin_except`)."""
    unpin = getattr(executor, "unpin_except", None)
    if unpin is None:
        return 0
    return int(unpin(frozenset(bytes(m) for m in get_resident_set(view).models)))


def resident_load_gas_static(params: Params, model_bytes: int, nodes: int) -> int:
    """The load a resident model's completing chunk pays in tokens (as gas, before `vm.min_gas_price`): the
    cold path's base, per-node and per-KiB terms of `load_gas`, from facts of the bytes alone. Its golden runs
    are paid by the transaction's gas left, as on the synchronous path."""
    from vm.engine import sandbox_limits

    gas = sandbox_limits(params).gas
    return gas.load_base + gas.load_per_node * nodes + gas.load_per_kib * -(-model_bytes // 1024)
