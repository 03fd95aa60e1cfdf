"""A lazily kept ordered index of one key per owner (the mempool's eviction and proposal indexes).

The owner's key is recomputed only when the index is read: a change marks the owner (`mark`, a set insertion),
and `flush` computes the marked owners' keys and pushes the ones that changed onto a binary heap. An old key
stays in the heap until it reaches the top, where it is recognised as stale (it is not the very object the
owner's current key is) and dropped; the heap is rebuilt from the current keys once stale ones outnumber them.
Reading in order pops from the heap (`take`) and `put_back` pushes the keys taken back, so a read leaves the
index as it was. An index that is read whole instead (`heap=False`: the proposal index, read by `reap`) keeps
no heap: it sorts its current keys when read after a change (`ordered`; the sort is C's over a dict's values,
as fast here as dropping the stale keys from the last order would be in Python).

Cost: a change is O(1); a read is O(marked owners x log n) for the flush plus O(log n) per key taken (or, for
a whole read after a change, an O(n log n) sort). Against a sorted list kept current on every change, this
pays off when changes outnumber reads (the mempool changes a sender's keys on every add and commit, and reads
them once per proposal or when full).

Keys are tuples whose last item is the owner's key (bytes); a key is unique to its owner (an entry's sequence
number is in it), so the heap's order is the keys' total order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=tuple)  # type: ignore[type-arg]

# The heap is rebuilt when it holds more than this many keys per current one (plus a floor for small indexes).
_STALE_FACTOR = 2
_STALE_FLOOR = 64


class LazyIndex(Generic[_K]):
    def __init__(self, key_of: Callable[[bytes], _K | None], *, heap: bool = True) -> None:
        self._key_of = key_of  # the owner's key now (None: it has none)
        self._keep_heap = heap
        self._heap: list[_K] = []
        self._current: dict[bytes, _K] = {}  # owner -> the key of it that the heap holds
        self._marked: set[bytes] = set()
        self._taken: list[_K] = []
        self._sorted: list[_K] | None = []  # heap=False: the current keys in order (None: sort again)

    def __len__(self) -> int:
        """Owners with a key (after `flush`)."""
        return len(self._current)

    def mark(self, owner: bytes) -> None:
        """The owner's key may have changed."""
        self._marked.add(owner)

    def mark_many(self, owners: Iterable[bytes]) -> None:
        """`mark` each of `owners` (one set update)."""
        self._marked.update(owners)

    def forget(self, owner: bytes) -> None:
        """The owner has no key any more (its heap entries turn stale)."""
        self._marked.discard(owner)
        if self._current.pop(owner, None) is not None:
            self._sorted = None

    def current(self, owner: bytes) -> _K | None:
        """The owner's key as of the last `flush`."""
        return self._current.get(owner)

    @property
    def marked(self) -> int:
        """Owners marked since the last `flush`."""
        return len(self._marked)

    def flush(self, limit: int | None = None) -> None:
        """Bring the marked owners' keys up to date (at most `limit` of them: a caller that must not hold the
        event loop long flushes in slices)."""
        marked = self._marked
        if not marked:
            return
        if limit is not None and len(marked) > limit:
            owners: Iterable[bytes] = [marked.pop() for _ in range(limit)]
        else:
            owners, self._marked = marked, set()
        current, key_of = self._current, self._key_of
        changed = []
        removed = False
        for owner in owners:
            key = key_of(owner)
            if key is None:
                removed = current.pop(owner, None) is not None or removed
            elif key != current.get(owner):
                current[owner] = key
                changed.append(key)
        if not self._keep_heap:
            if changed or removed:
                self._sorted = None
            return
        heap = self._heap
        if len(heap) + len(changed) > _STALE_FACTOR * len(current) + _STALE_FLOOR:
            # Rebuilt in O(n) rather than pushed one by one (many changed keys, or many stale ones).
            self._heap = list(current.values())
            heapq.heapify(self._heap)
        else:
            for key in changed:
                heapq.heappush(heap, key)

    def take(self, below: tuple | None = None) -> _K | None:  # type: ignore[type-arg]
        """The smallest current key (less than `below` when given) not taken yet, or None; call after `flush`
        and end the read with `put_back`."""
        heap, current = self._heap, self._current
        while heap:
            key = heap[0]
            if below is not None and not key < below:
                return None
            heapq.heappop(heap)
            if current.get(key[-1]) is key:
                self._taken.append(key)
                return key
        return None

    def put_back(self) -> None:
        """Return the keys `take` popped to the heap."""
        for key in self._taken:
            heapq.heappush(self._heap, key)
        self._taken.clear()

    def ordered(self) -> list[_K]:
        """Every current key in order (flushes first). With heap=False the list is the index's own: read it,
        do not change it."""
        self.flush()
        if self._keep_heap:
            return sorted(self._current.values())
        if self._sorted is None:
            self._sorted = sorted(self._current.values())
        return self._sorted

    def consistent(self) -> bool:
        """Whether the index holds every current key exactly once (for tests)."""
        if not self._keep_heap:
            return self.ordered() == sorted(self._current.values()) and not self._taken
        held = [k for k in self._heap if self._current.get(k[-1]) is k]
        return len(held) == len(self._current) and not self._taken
