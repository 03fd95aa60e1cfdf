"""The shared-memory hand-off between the pool and one sandbox worker (docs/sandbox.md, "Hand-off").

Each worker shares one anonymous memory file (memfd) with the pool: the pool writes a block's inputs into it,
the worker reads them in place and writes the canonical outputs after them; the pipe carries only small
messages with `ArrayRef`s (dtype, shape, offset). The file has no name (nothing under /dev/shm), so a worker
killed mid-batch leaks nothing: the memory is freed when the last process holding it closes it. The pool
creates the file and passes its descriptor with a message (SCM_RIGHTS, vm/sandbox/channel.py); a larger
block gets a new, larger one.
"""

from __future__ import annotations

import dataclasses
import mmap
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

ALIGN = 64  # cache-line aligned arrays
MIN_ARENA_BYTES = 4 << 20
# Dtypes that travel as raw bytes; anything else (objects, structured dtypes) is pickled on the pipe, and the
# worker then refuses it as an input mismatch exactly as before.
_PLAIN_KINDS = frozenset("biuf")
INLINE_BYTES = 4096

_T = TypeVar("_T")


def compact(cls: type[_T]) -> type[_T]:
    """Pickle a frozen dataclass as its constructor and field values: a tenth of the time of the default
    (dataclasses' __getstate__/__setstate__), which is most of a small message's cost."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if len(names) == 1:
        name = names[0]
        cls.__reduce__ = lambda self: (cls, (getattr(self, name),))  # type: ignore[method-assign]
    elif names:
        get = operator.attrgetter(*names)
        cls.__reduce__ = lambda self: (cls, get(self))  # type: ignore[method-assign]
    else:
        cls.__reduce__ = lambda self: (cls, ())  # type: ignore[method-assign]
    return cls


@compact
@dataclass(frozen=True, slots=True)
class ArrayRef:
    """An array in the shared arena: `dtype` (numpy's dtype string) and `shape` of the C-order bytes at
    `offset`."""

    dtype: str
    shape: tuple[int, ...]
    offset: int


def aligned(n: int) -> int:
    """`n` rounded up to ALIGN: where a `Writer` places the array after one that ends at `n`."""
    return -(-n // ALIGN) * ALIGN


def in_arena(value: object) -> bool:
    """Whether an array travels in the arena: a numpy array of a bool/int/uint/float dtype in native byte
    order, of at least INLINE_BYTES. Smaller ones are pickled into the message: for them naming a place in
    the arena costs more than the copies it saves (bench/vm_sandbox.py, hand-off part)."""
    return (type(value) is np.ndarray and value.nbytes >= INLINE_BYTES and value.dtype.kind in _PLAIN_KINDS
            and value.dtype.isnative)


class Arena:
    """One shared memory file, mapped: `fd` (the pool's, passed to the worker) and `size` bytes."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        if fd is None:
            fd = os.memfd_create("inferchain-handoff", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, size)
            except OSError:
                os.close(fd)
                raise
        self.fd = fd
        self.size = size
        self._map = mmap.mmap(fd, size)

    def close(self) -> None:
        """Release the descriptor; the mapping goes when the last array viewing it is gone."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def view(self, ref: ArrayRef) -> np.ndarray:
        """The array `ref` points at, in place (no copy). numpy refuses (TypeError, ValueError) a negative
        offset or an array that does not lie inside the arena."""
        return np.ndarray(ref.shape, ref.dtype, self._map, ref.offset)

    def view_at(self, dtype: np.dtype[Any], shape: tuple[int, ...], offset: int) -> np.ndarray:
        """The array of `dtype` and `shape` at `offset`, in place (the flat messages' form of `view`)."""
        return np.ndarray(shape, dtype, self._map, offset)

    def write(self, offset: int, value: np.ndarray) -> None:
        """A C-ordered array's bytes at `offset` (the caller checked that they fit)."""
        if value.nbytes:
            self._map[offset:offset + value.nbytes] = value.data.cast("B")

    def copy_out(self, ref: ArrayRef) -> np.ndarray:
        """A private copy of the array `ref` points at (the arena is reused by the next hand-off)."""
        return self.view(ref).copy()


class Writer:
    """Places arrays one after another in an arena from `start`; `put` returns None when one does not fit."""

    def __init__(self, arena: Arena, start: int = 0) -> None:
        self._arena = arena
        self.end = aligned(start)

    def place(self, value: np.ndarray) -> int | None:
        """Copy `value`'s bytes (C order) to the next aligned place; its offset, or None if it does not fit.

        A C-ordered array is copied by one slice assignment of the mapping (a memcpy): after a run of a
        larger model has evicted the caches, numpy's own assignment (an array built over the mapping, then its
        copy loop) costs ~55 us against ~20 us for this (docs/performance-sandbox.md, "Single jobs: cold caches")."""
        offset, nbytes = self.end, value.nbytes
        if offset + nbytes > self._arena.size:
            return None
        if value.flags.c_contiguous:
            self._arena.write(offset, value)
        else:
            self._arena.view_at(value.dtype, value.shape, offset)[...] = value
        self.end = aligned(offset + nbytes)
        return offset

    def put(self, value: np.ndarray) -> ArrayRef | None:
        offset = self.place(value)
        return None if offset is None else ArrayRef(value.dtype.str, value.shape, offset)

    def join(self, rows: list[np.ndarray], shape: tuple[int, ...]) -> ArrayRef | None:
        """The arrays `rows` (each of `shape` and the first one's dtype) stacked along a new first axis,
        written straight into the arena by one C loop (no stacked copy in private memory first); None if
        they do not fit. numpy refuses (ValueError, TypeError) a row of another dtype or shape."""
        dtype = rows[0].dtype
        full = (len(rows), *shape)
        nbytes = len(rows) * rows[0].nbytes
        offset = self.end
        if offset + nbytes > self._arena.size:
            return None
        view = self._arena.view_at(dtype, full, offset)
        if shape:
            np.concatenate(rows, out=view.reshape(len(rows) * shape[0], *shape[1:]), casting="no")
        else:
            np.stack(rows, out=view, casting="no")
        self.end = aligned(offset + nbytes)
        return ArrayRef(dtype.str, full, offset)


def joins_in_arena(dtype: np.dtype[Any], nbytes: int) -> bool:
    """Whether stacked rows of `dtype` and `nbytes` in all travel in the arena (`in_arena`'s rule)."""
    return nbytes >= INLINE_BYTES and dtype.kind in _PLAIN_KINDS and dtype.isnative


def arena_bytes_for(inputs: list[Mapping[str, Any]]) -> int:
    """Bytes the inputs of a batch take in an arena, alignment included."""
    return sum(aligned(v.nbytes) for job in inputs for v in job.values() if in_arena(v))


def arena_size(need: int) -> int:
    """An arena size for `need` bytes of inputs, with room for outputs: at least MIN_ARENA_BYTES, doubled
    as needed, in whole pages."""
    size = MIN_ARENA_BYTES
    while size < 2 * need:
        size *= 2
    return size
