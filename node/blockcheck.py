"""Stateless block checks done once per node, off the event loop.

`Block.validate_basic` re-hashes every transaction and result of a block: tens of milliseconds for a full one.
The consensus state machine runs on the event loop and must check every block it notes, so the node checks
blocks in worker threads first (or the gossip envelope check already did) and injects `BlockChecks` as the
machine's checker, which then finds the answer here instead of hashing on the loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

from core.block import Block
from core.errors import InvalidBlock


class BlockChecks:
    """Blocks that passed `validate_basic`, by object identity (a decoded block is immutable).

    Entries hold the block itself, so its id() cannot be reused while it is remembered; the capacity bounds
    the memory to a few full blocks. Safe to use from worker threads.
    """

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._checked: OrderedDict[int, Block] = OrderedDict()
        self._lock = threading.Lock()
        self.checks = 0  # validate_basic runs (not answered from memory)

    def mark(self, block: Block) -> None:
        """Remember `block` as checked (the caller ran validate_basic on this very object)."""
        with self._lock:
            self._checked[id(block)] = block
            self._checked.move_to_end(id(block))
            while len(self._checked) > self._capacity:
                self._checked.popitem(last=False)

    def is_checked(self, block: Block) -> bool:
        with self._lock:
            return self._checked.get(id(block)) is block

    def __call__(self, block: Block) -> None:
        """consensus's BlockChecker: raises InvalidBlock unless the header's hashes match the body."""
        if self.is_checked(block):
            return
        self.checks += 1
        block.validate_basic()
        self.mark(block)

    def precheck(self, block: Block) -> None:
        """Check in advance (in a worker thread); a failure is left for the machine to find and record."""
        with contextlib.suppress(InvalidBlock):
            self(block)
