"""Slashing stake that left a validator after its offence (Cosmos x/slashing style): what it unbonds or
redelegates waits in a queue per maturity height (begun + unbonding_blocks), so every entry begun since the
offence is still there, and each loses the same share of its amount. One walk for both kinds of queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

from core.types import Address, Amount
from vm.params import BPS
from vm.state import (
    RedelegationEntry,
    RedelegationQueue,
    StateView,
    UnbondingEntry,
    UnbondingQueue,
    redelegation_key,
    unbonding_key,
)

Entry = UnbondingEntry | RedelegationEntry


def get_source(entry: Entry) -> Address:
    """The validator whose stake the entry carries away (an unbonding's validator, a redelegation's source)."""
    return entry.validator if isinstance(entry, UnbondingEntry) else entry.source


@overload
def process_cut_since(view: StateView, queue_type: type[UnbondingQueue], source: Address, begun: range,
                      unbonding_blocks: int, bps: int) -> Sequence[tuple[UnbondingEntry, int]]: ...


@overload
def process_cut_since(view: StateView, queue_type: type[RedelegationQueue], source: Address, begun: range,
                      unbonding_blocks: int, bps: int) -> Sequence[tuple[RedelegationEntry, int]]: ...


def process_cut_since(view: StateView, queue_type: type[UnbondingQueue] | type[RedelegationQueue], source: Address,
                      begun: range, unbonding_blocks: int, bps: int) -> Sequence[tuple[Entry, int]]:
    """Cut `bps` of every entry out of `source` begun at a height in `begun`, in queue order; returns each
    entry as it was with the amount cut from it (the caller burns or takes it). Queues without such an
    entry are not rewritten."""
    key_of = unbonding_key if queue_type is UnbondingQueue else redelegation_key
    cuts: list[tuple[Entry, int]] = []
    for height in begun:
        key = key_of(height + unbonding_blocks)
        queue = view.get(key, queue_type)
        if queue is None or all(get_source(e) != source for e in queue.entries):
            continue
        entries: list[Entry] = []
        for e in queue.entries:
            if get_source(e) == source:
                cut = e.amount * bps // BPS
                cuts.append((e, cut))
                e = e.replace(amount=Amount(e.amount - cut))
            entries.append(e)
        view.put(key, queue.replace(entries=tuple(entries)))
    return cuts
