"""Key-value storage: one ordered byte store per node, split into one-byte-prefixed key spaces.

`KVStore` is the contract; `MemoryStore` is its deterministic in-memory implementation (the simulator and
tests), and the node's database, `node.leveldb.LevelDBStore`, is the I/O one. Writes go only through atomic
batches, and one batch opened on the database can span every key space, so a block and all the state writes
it causes commit together (docs/design.md §6).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from enum import IntEnum
from types import TracebackType
from typing import Protocol, final, runtime_checkable

from core.errors import StorageError


class KeySpace(IntEnum):
    """The first byte of every key. Values are on disk forever: never renumber, only add."""

    META = 0x01
    BLOCKS_BY_HEIGHT = 0x02
    BLOCK_HASH_INDEX = 0x03
    COMMITS = 0x04
    TX_INDEX = 0x05
    RECEIPTS = 0x06
    # 0x07-0x0F: more chain data
    STATE_NODES = 0x10
    STATE_META = 0x11
    STATE_STALE = 0x12
    STATE_LEAVES = 0x13
    # 0x14-0x1F: more state tables
    MODELS = 0x20
    BLOB_REFS = 0x21  # node-local: how many committed state records name each blob (vm.blobrefs)
    BLOB_GARBAGE = 0x22  # node-local: blobs no committed record names any more, to delete
    # 0x23-0x2F: model data
    WAL_META = 0x30
    EVIDENCE = 0x31
    SIGN_STATE = 0x32
    # 0x33-0xFF: free


@runtime_checkable
class WriteBatch(Protocol):
    """Buffered writes; nothing is visible until the batch's context exits without an exception."""

    def put(self, key: bytes, value: bytes, /) -> None: ...

    def delete(self, key: bytes, /) -> None: ...


class BatchContext(Protocol):
    """What `write_batch()` returns: a context manager that commits all of the batch or none of it."""

    def __enter__(self) -> WriteBatch: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


class KVStore(Protocol):
    """An ordered byte-key store. Keys compare as unsigned bytes, like LevelDB's default comparator."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order (descending if `reverse`).

        `start` (a full key) is inclusive: forward iteration yields keys >= start, reverse yields keys <= start.
        """
        ...

    def write_batch(self, *, sync: bool = False) -> BatchContext:
        """An atomic batch; with `sync=True` the commit is fsynced before the context exits."""
        ...

    def close(self) -> None: ...


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


# ---------------------------------------------------------------------------------------------------------
# Memory


@final
class _MemoryBatch:
    """Buffered ops for MemoryStore; the last op on a key wins, as in a LevelDB WriteBatch."""

    __slots__ = ("_ops", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._ops: dict[bytes, bytes | None] = {}

    def put(self, key: bytes, value: bytes, /) -> None:
        self._ops[bytes(key)] = bytes(value)

    def delete(self, key: bytes, /) -> None:
        self._ops[bytes(key)] = None

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._store._apply(self._ops)
        self._ops = {}


@final
class MemoryStore:
    """In-memory KVStore with LevelDB's ordering and batch semantics, for the deterministic simulator."""

    __slots__ = ("_closed", "_data", "_keys")

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # sorted
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StorageError("memory store is closed")

    def get(self, key: bytes) -> bytes | None:
        self._check()
        return self._data.get(key)

    def iterate(
        self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        keys = self._keys
        upper = prefix_upper_bound(prefix)
        lo = bisect.bisect_left(keys, prefix)
        hi = len(keys) if upper is None else bisect.bisect_left(keys, upper, lo)
        if start is not None:
            if reverse:
                hi = min(hi, bisect.bisect_right(keys, start, lo))
            else:
                lo = max(lo, bisect.bisect_left(keys, start, lo))
        data = self._data
        # A snapshot, like a LevelDB iterator: later writes do not show up in it.
        items = [(k, data[k]) for k in keys[lo:hi]]
        if reverse:
            items.reverse()
        return iter(items)

    def write_batch(self, *, sync: bool = False) -> BatchContext:
        self._check()
        return _MemoryBatch(self)

    def _apply(self, ops: dict[bytes, bytes | None]) -> None:
        self._check()
        data, keys = self._data, self._keys
        for key, value in ops.items():
            if value is None:
                if key in data:
                    del data[key]
                    del keys[bisect.bisect_left(keys, key)]
            else:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value

    def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------------------
# Views


@final
class PrefixedBatch:
    """A root batch seen through a view: every key gets the view's prefix."""

    __slots__ = ("_delete", "_put", "prefix")

    def __init__(self, batch: WriteBatch, prefix: bytes) -> None:
        self.prefix = prefix
        self._put = batch.put
        self._delete = batch.delete

    def put(self, key: bytes, value: bytes, /) -> None:
        self._put(self.prefix + key, value)

    def delete(self, key: bytes, /) -> None:
        self._delete(self.prefix + key)


@final
class _PrefixedBatchContext:
    __slots__ = ("_inner", "_prefix")

    def __init__(self, inner: BatchContext, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix

    def __enter__(self) -> WriteBatch:
        return PrefixedBatch(self._inner.__enter__(), self._prefix)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)


@final
class PrefixedStore:
    """A view confined to the keys under one prefix, itself a KVStore; its keys are shown without the prefix.

    A view of a view is flattened onto the root store. To write several spaces atomically, open one batch on
    the root store and `bind` it to each view.
    """

    __slots__ = ("prefix", "root")

    def __init__(self, store: KVStore, prefix: bytes | KeySpace) -> None:
        raw = bytes([prefix]) if isinstance(prefix, KeySpace) else bytes(prefix)
        if isinstance(store, PrefixedStore):
            self.root: KVStore = store.root
            self.prefix: bytes = store.prefix + raw
        else:
            self.root = store
            self.prefix = raw

    def bind(self, batch: WriteBatch) -> WriteBatch:
        """This view's slice of `batch`, which must have been opened on the root store."""
        return PrefixedBatch(batch, self.prefix)

    def key(self, key: bytes) -> bytes:
        """The full root-store key of `key` in this view."""
        return self.prefix + key

    def get(self, key: bytes) -> bytes | None:
        return self.root.get(self.prefix + key)

    def iterate(
        self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        cut = len(self.prefix)
        full_start = None if start is None else self.prefix + start
        for key, value in self.root.iterate(self.prefix + prefix, start=full_start, reverse=reverse):
            yield key[cut:], value

    def write_batch(self, *, sync: bool = False) -> BatchContext:
        return _PrefixedBatchContext(self.root.write_batch(sync=sync), self.prefix)

    def close(self) -> None:
        """Views do not own the database; closing one is a no-op."""


def space(store: KVStore, key_space: KeySpace) -> PrefixedStore:
    """The view of one key space."""
    return PrefixedStore(store, key_space)
