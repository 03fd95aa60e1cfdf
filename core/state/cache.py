"""A bounded cache of committed state-tree nodes, so that the nodes an update walks are neither re-read from
LevelDB nor re-hashed.

One entry per tree position (depth ‖ packed path prefix): the last committed node this map wrote or read
there, as (version, node bytes, inner hashes or None). A lookup names the version it wants and hits only if
the entry holds that version, i.e. only for the exact node key (version ‖ position), and a committed node
key names the same bytes forever (versions only grow, a version is written once; pruning deletes, never
rewrites). So nothing can be served that is not committed, as long as only committed nodes go in: the nodes
of an update whose batch is known to be written (see `AuthenticatedMap._settle`), never a staged one.

Keying by position means a commit overwrites the entries of the nodes it replaces in place: nothing to
take out, and the cache holds about one entry per live node. The inner hashes are positions 2..15 of the
node's binary subtree (448 bytes), kept for nodes of `DENSE` children or more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final, final

Entry = tuple[bytes, bytes, bytes | None]
"""(version as 8 bytes, node bytes, inner hashes or None)."""

MAX_DEPTH: Final = 64


@final
class NodeCache:
    """Bounded by a number of entries; past it, entries of the deepest level go first (upper levels are
    touched by nearly every update, a node deep in a large tree by few).

    Lookups take no lock (a dict read is atomic under the GIL); changes take one, since the node commits and
    reads from different threads.
    """

    __slots__ = ("_lock", "levels", "max_entries")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(0, max_entries)
        self.levels: tuple[dict[bytes, Entry], ...] = tuple({} for _ in range(MAX_DEPTH + 1))
        """levels[depth]: position (depth ‖ packed prefix) -> entry."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def get(self, depth: int, position: bytes, version: bytes) -> Entry | None:
        entry = self.levels[depth].get(position)
        return entry if entry is not None and entry[0] == version else None

    def admit(self, added: Iterable[tuple[int, dict[bytes, Entry]]]) -> None:
        """Put in committed nodes, as (depth, {position: entry}), then evict down to the bound."""
        if not self.max_entries:
            return
        levels = self.levels
        with self._lock:
            for depth, nodes in added:
                levels[depth].update(nodes)
            count = sum(map(len, levels))
            if count > self.max_entries:
                # Down to 31/32 of the bound, so that this happens seldom.
                excess = count - self.max_entries + self.max_entries // 32
                for level in reversed(levels):
                    while level and excess > 0:
                        level.popitem()
                        excess -= 1
                    if excess <= 0:
                        break

    def drop(self, nodes: Iterable[tuple[int, bytes, bytes]]) -> None:
        """Take out the entries of these (depth, position, version) nodes, if held (pruned ones)."""
        levels = self.levels
        with self._lock:
            for depth, position, version in nodes:
                level = levels[depth]
                entry = level.get(position)
                if entry is not None and entry[0] == version:
                    del level[position]

    def clear(self) -> None:
        with self._lock:
            for level in self.levels:
                level.clear()
