"""A diagnostic for the garbage collector's work: what the objects it walks are, by type.

With `INFERCHAIN_GC_CENSUS=N` set (N >= 1), the node logs, at the start of every Nth young collection and of
every middle or full one, the number of objects in the generations that collection walks, and the types with
the most of them. Those are live objects (reference counting has freed the rest), so the census is what each
collection of that kind costs and where the per-transaction objects that survive come from
(docs/performance-cpu.md, "Garbage collection under the inference load (gcinf)"). Off by default: a census lists
every object it counts.
"""

from __future__ import annotations

import gc
import logging
import os
from collections import Counter

logger = logging.getLogger(__name__)

ENV = "INFERCHAIN_GC_CENSUS"
TOP = 15


class Census:
    """The gc callback that logs a census (`every`: of every Nth young collection)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._young = 0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase != "start":
            return
        gen = info["generation"]
        if gen == 0:
            self._young += 1
            if self._young % self.every:
                return
        logger.info("gc census: %s", census(gen))


def census(generation: int) -> str:
    """The objects a collection of `generation` walks (it and the younger ones), counted by type."""
    objects = [o for g in range(generation + 1) for o in gc.get_objects(g)]
    counts = Counter(type(o).__qualname__ for o in objects)
    top = ", ".join(f"{name} {n:,}" for name, n in counts.most_common(TOP))
    return f"gen{generation} walks {len(objects):,} objects: {top}"


def from_environment() -> Census | None:
    """The census `INFERCHAIN_GC_CENSUS` asks for, or None (unset, empty or not a positive integer)."""
    value = os.environ.get(ENV, "").strip()
    return Census(int(value)) if value.isdigit() and int(value) >= 1 else None
