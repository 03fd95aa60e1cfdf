"""The node's database: `LevelDBStore`, a `core.store.KVStore` over one LevelDB directory (plyvel).

This is the I/O implementation of the store contract in core/store.py (key spaces, batches, views stay
there, with the in-memory implementation the simulator uses). The composition (node/service.py) opens it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any, final

import plyvel

from core.errors import StorageError
from core.store import BatchContext, WriteBatch, prefix_upper_bound


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


@final
class _LevelDBBatch:
    """Context around a raw plyvel WriteBatch: the batch's own put/delete are used directly (no wrapper)."""

    __slots__ = ("_batch",)

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def __enter__(self) -> WriteBatch:
        batch: WriteBatch = self._batch
        return batch

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._batch.clear()
            return
        try:
            self._batch.write()
        except (plyvel.Error, RuntimeError) as err:
            raise StorageError(f"write failed: {_message(err)}") from err


@final
class LevelDBStore:
    """The node's database: one LevelDB directory, opened exclusively (LevelDB's LOCK file)."""

    __slots__ = ("_db", "path")

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = os.fspath(path)
        if not create and not os.path.isdir(self.path):
            raise StorageError(f"no database at {self.path}")
        if create:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StorageError(f"cannot create database at {self.path}: {parent} is not a directory")
        try:
            self._db = plyvel.DB(
                self.path,
                create_if_missing=create,
                write_buffer_size=32 << 20,
                lru_cache_size=64 << 20,
                bloom_filter_bits=10,
            )
        except plyvel.CorruptionError as err:
            raise StorageError(f"database at {self.path} is corrupt: {_message(err)}") from err
        except plyvel.IOError as err:
            text = _message(err)
            if "lock" in text.lower() and "already held" in text:
                raise StorageError(f"database at {self.path} is locked by another process: {text}") from err
            raise StorageError(f"cannot open database at {self.path}: {text}") from err
        except plyvel.Error as err:
            raise StorageError(f"cannot open database at {self.path}: {_message(err)}") from err

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key)
        except RuntimeError as err:
            raise StorageError(f"database at {self.path}: {_message(err)}") from err
        return value

    def iterate(
        self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        upper = prefix_upper_bound(prefix)
        if start is not None and not reverse and start > prefix:
            lower, include_lower = start, True
        else:
            lower, include_lower = prefix, True
        include_upper = False
        if start is not None and reverse and (upper is None or start < upper):
            if start < prefix:
                return iter(())
            upper, include_upper = start, True
        try:
            if reverse:
                # plyvel 1.5.1 yields nothing in reverse when the highest key in range equals `start`
                # (a lone key at the prefix itself), so the lower bound is applied here, not by plyvel.
                it: Iterator[tuple[bytes, bytes]] = self._db.iterator(
                    stop=upper, include_stop=include_upper, reverse=True
                )
                return itertools.takewhile(lambda item: item[0] >= lower, it) if lower else it
            it = self._db.iterator(
                start=lower or None,
                stop=upper,
                include_start=include_lower,
                include_stop=include_upper,
            )
        except RuntimeError as err:
            raise StorageError(f"database at {self.path}: {_message(err)}") from err
        return it

    def write_batch(self, *, sync: bool = False) -> BatchContext:
        try:
            return _LevelDBBatch(self._db.write_batch(sync=sync))
        except RuntimeError as err:
            raise StorageError(f"database at {self.path}: {_message(err)}") from err

    def compact(self) -> None:
        """Compact the whole key range now (tools and benches; LevelDB also compacts in the background)."""
        self._db.compact_range()

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def __enter__(self) -> LevelDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
