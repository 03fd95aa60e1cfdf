"""A parameter-change proposal applied to a parameter record, checked as genesis checks it plus the rules
that only a change can break (docs/governance.md, "Parameter change")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from core.codec import Wire
from vm.genesis import validate_chain_params
from vm.gov.types import ParamChange
from vm.params import NamedInt, Params

NAMED_GROUPS = ("sandbox_limits", "gas_schedule")

# What governance may not change, and why (each a rule the chain cannot migrate yet).
FIXED = {
    "slashing.max_evidence_age": "it sizes the validator-set ring that stored sets are keyed in",
}

# The worst-block bound (docs/vm.md, "The worst block"): the schedule is calibrated so that a full block
# validates within a third of timeout_propose on the reference validator at 0.2 gas per ns. A change may not
# promise more gas per millisecond of timeout_propose than that, unless the chain already did.
REFERENCE_GAS_PER_MS = 200_000


def gas_rate(params: Params) -> int:
    """Block gas per millisecond of the validation budget (a third of timeout_propose)."""
    return params.consensus.max_block_gas * 3 // max(1, params.consensus.timeout_propose_ms)


def apply_param_changes(params: Params, changes: Sequence[ParamChange]) -> Params:
    """`params` with `changes` applied; ValueError (one line) if a path is unknown or fixed, or the result
    breaks a parameter rule."""
    if not changes:
        raise ValueError("a parameter change must change something")
    paths = [c.path for c in changes]
    if len(set(paths)) != len(paths):
        raise ValueError("a parameter is changed twice")
    new = params
    for change in changes:
        new = _apply_one(new, change)
    new = validate_chain_params(new)
    if gas_rate(new) > max(gas_rate(params), REFERENCE_GAS_PER_MS):
        raise ValueError(f"consensus.max_block_gas x 3 / timeout_propose_ms would exceed the worst-block bound of "
                         f"{REFERENCE_GAS_PER_MS} gas per ms")
    return new


def _apply_one(params: Params, change: ParamChange) -> Params:
    if change.path in FIXED:
        raise ValueError(f"{change.path} cannot be changed by governance: {FIXED[change.path]}")
    parts = change.path.split(".")
    group_names = [f.name for f in dataclasses.fields(Params) if f.name != "poi_models"]
    if len(parts) not in (2, 3) or parts[0] not in group_names:
        raise ValueError(f"unknown parameter {change.path!r}")
    group: Wire = getattr(params, parts[0])
    fields = {f.name: f for f in dataclasses.fields(group)}  # type: ignore[arg-type]
    field = fields.get(parts[1])
    if field is None:
        raise ValueError(f"unknown parameter {change.path!r}")
    if parts[1] in NAMED_GROUPS:
        if len(parts) != 3:
            raise ValueError(f"{change.path} names a group: set one of its entries")
        named: tuple[NamedInt, ...] = getattr(group, parts[1])
        if parts[2] not in {n.name for n in named}:
            raise ValueError(f"unknown parameter {change.path!r}")
        value: object = tuple(NamedInt(n.name, change.value) if n.name == parts[2] else n for n in named)
    elif len(parts) != 2:
        raise ValueError(f"unknown parameter {change.path!r}")
    elif field.type in (bool, "bool"):
        if change.value not in (0, 1):
            raise ValueError(f"{change.path} is a flag: 0 or 1")
        value = bool(change.value)
    else:
        value = change.value
    return params.replace(**{parts[0]: group.replace(**{parts[1]: value})})
