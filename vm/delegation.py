"""Delegation (issue 15, the delegation branch): this file holds only the function governance's tally reads.

The delegation branch replaces it with the real module (tx kinds 7-11); until then no account delegates.
"""

from __future__ import annotations

from core.types import Address
from vm.state import StateView


def delegations_of(view: StateView, delegator: Address) -> list[tuple[Address, int]]:
    """The validators `delegator` delegates to and the bonded amounts, sorted by validator address, bounded.

    Placeholder: the delegation branch replaces this with the reading of its delegation records."""
    return []
