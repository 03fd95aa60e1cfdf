"""One flat message each way for a single inference (docs/sandbox.md, "Flat messages for a single job").

The commonest hand-off outside a block is one inference of a model the worker already holds. For it the pool
sends a fixed binary layout (struct header, then the inputs' raw bytes, or their offsets in the shared arena)
instead of a pickled `Batch`, and a worker that gets outputs answers with one (instead of a pickled `Done`):
no protocol object is built, pickled or unpickled on either side. Anything else a worker has to say (a
verdict, a fault, a golden mismatch) still travels as the pickled reply of vm/sandbox/protocol.py.

A flat body never starts with pickle's PROTO opcode (0x80): the channel returns it as a `bytearray` and the
receiver reads it here. `read_outputs` is how the pool reads a worker's bytes, which it does not trust (a
worker runs ONNX Runtime on anyone's model): a bounded struct reader that can build nothing but `str` names
and numeric numpy arrays of the dtypes below, each lying inside the message or the arena; anything else is
`MalformedFlat` before an array is made.

Job (pool -> worker), little-endian:
    head    tag 'J', raw u8 (1: the pool takes raw outputs), n inputs u16, cpu_seconds u32, free_from u64, len(model_id) u16, len(signature) u16
    model_id, signature (`input_signature`: names, dtypes, shapes the pool checked the inputs against)
    n slots (where u8: 0 in this message / 1 in the arena, offset u64, nbytes u64), in the spec's order
    inline input bytes, each at an 8-byte aligned offset
Wake-up (pool -> worker): the single byte 'W' (`WAKE`), ahead of a job.
Outputs (worker -> pool):
    head    tag 'O', grid u8 (0: canonical outputs; k + 1: raw outputs, floats to go on the grid of k: when the
            job's raw byte asked for them, or the model's float outputs are a few float32 values, `few_floats`), n outputs u16
    n slots (dtype code u8, ndim u8, where u8, len(name) u16, offset u64, nbytes u64, ndim dims u64, name)
    inline output bytes
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from core.errors import InferenceError
from vm.sandbox.handoff import Arena, Writer, aligned, in_arena
from vm.sandbox.numeric import TINY_GRID, grid_values, on_grid
from vm.sandbox.spec import ArraySpec

JOB_TAG = 0x4A  # "J"
# A one-byte message the pool sends a worker that has stopped spinning, before it builds a single job: the
# worker wakes up and rehearses its path while the pool works (docs/sandbox.md, "Wake-up before a lone job").
WAKE = b"W"
OUTPUTS_TAG = 0x4F  # "O"
INLINE, IN_ARENA = 0, 1

# Dtype codes: every dtype a canonical model's tensors may have (spec.ALLOWED_DTYPES), native byte order.
DTYPES: tuple[np.dtype[Any], ...] = tuple(np.dtype(name) for name in (
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"))
_CODES = {dtype: code for code, dtype in enumerate(DTYPES)}
# Bounds on what a reply may declare: far above any checked model (numpy itself allows 64 dimensions).
MAX_OUTPUTS = 1024
MAX_NDIM = 32
MAX_NAME_BYTES = 1024
MAX_DIM = 1 << 40

_JOB_HEAD = struct.Struct("<BBHIQHH")
_JOB_SLOT = struct.Struct("<BxxxxxxxQQ")
_OUT_HEAD = struct.Struct("<BBH")
# A reply's grid byte: 0 when its outputs are canonical, else grid_k + 1 for raw outputs whose floats the pool
# puts on the grid (`ReplyReader.canonical`); a worker sends raw outputs for grid_k <= MAX_RAW_GRID_K. The bound
# keeps the pool's grid equal to the worker's: the two processes may differ in denormal flushing (ORT's threads),
# and a float32 denormal (< 2^-126) times 2^k for k <= 126 is below 1/2, so it rounds to 0 flushed or not.
MAX_RAW_GRID_K = 126
_OUT_SLOT = struct.Struct("<BBBxHxxQQ")
_DIM = struct.Struct("<Q")


@functools.cache
def _job_slots(n: int) -> struct.Struct:
    """The slots of a job of `n` inputs, in one struct."""
    return struct.Struct("<" + _JOB_SLOT.format[1:] * n)


@functools.cache
def _out_slot(ndim: int) -> struct.Struct:
    """An output's slot with its `ndim` dimensions (at most MAX_NDIM: the cache stays small)."""
    return struct.Struct(_OUT_SLOT.format + "Q" * ndim)


class MalformedFlat(ValueError):
    """A flat message that does not follow the layout (the pool discards the worker that sent it)."""


def _aligned8(n: int) -> int:
    return (n + 7) & ~7


def input_signature(inputs: Sequence[ArraySpec]) -> bytes:
    """The declared inputs as bytes (JSON: names, dtypes, shapes in order). The pool sends the signature of the
    spec it checked the arrays against; the worker compares it with its loaded model's (the same unless two
    specs share a model id) and otherwise reads the arrays by this signature and checks them as a pickled job's
    (`Layout.of_signature`), so a flat job gets exactly the pickled job's verdict."""
    return json.dumps([[t.name, t.dtype, list(t.shape)] for t in inputs], separators=(",", ":")).encode()


def few_floats(outputs: Sequence[ArraySpec]) -> bool:
    """Whether a model's outputs include floats, all float32 and at most numeric.TINY_GRID values in all: a
    worker sends such outputs raw, and the pool puts them on the grid, whether it spins or blocks for the
    reply (docs/sandbox.md, "The grid of a few floats")."""
    floats = [t for t in outputs if t.is_float]
    return bool(floats) and all(t.dtype == "float32" for t in floats) \
        and sum(math.prod(t.shape) for t in floats) <= TINY_GRID


@dataclass(frozen=True, slots=True)
class Layout:
    """A model's declared inputs as the flat job needs them: checked once per spec (pool) or load (worker)."""

    signature: bytes
    inputs: tuple[tuple[str, np.dtype[Any], tuple[int, ...], int], ...]  # name, dtype, shape, nbytes
    # The model's float outputs are a few float32 values (`few_floats`; known to a worker's loaded model only):
    # the worker sends them raw whether or not the pool asked.
    few_floats: bool = False

    @classmethod
    def of(cls, inputs: Sequence[ArraySpec], outputs: Sequence[ArraySpec] = ()) -> Layout:
        return cls(input_signature(inputs), tuple(
            (t.name, np.dtype(t.dtype), t.shape, math.prod(t.shape) * np.dtype(t.dtype).itemsize) for t in inputs),
            few_floats(outputs))

    @classmethod
    def of_signature(cls, signature: bytes) -> Layout:
        """The layout a pool's signature describes (ValueError, TypeError or KeyError if it describes none)."""
        return cls.of([ArraySpec(name, dtype, tuple(shape)) for name, dtype, shape in json.loads(signature)])

    def arrays(self, inputs: Mapping[str, Any]) -> list[np.ndarray] | None:
        """The inputs in declared order when each is a C-ordered numpy array of exactly the declared dtype and
        shape (what the flat job carries), else None (the pickled batch then carries them, and the worker
        gives its verdict on them as before)."""
        if len(inputs) != len(self.inputs):
            return None
        arrays = []
        for name, dtype, shape, _ in self.inputs:
            value = inputs.get(name)
            if type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape \
                    or not value.flags.c_contiguous:
                return None
            arrays.append(value)
        return arrays


class FlatJob(NamedTuple):
    raw: bool  # the pool will put the outputs on the grid itself (it waits on warm caches)
    cpu_seconds: int
    free_from: int
    model_id: bytes
    signature: bytes
    slots: tuple[int, ...]  # where, offset, nbytes of each input, flat


class _Placer:
    """Where a `Writer` starting at 0 would place arrays in an arena of `size` bytes, without copying: the
    offsets of a job template's arena inputs (`job_template`)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.end = 0

    def place(self, value: np.ndarray) -> int | None:
        offset = self.end
        if offset + value.nbytes > self._size:
            return None
        self.end = aligned(offset + value.nbytes)
        return offset


def job_parts(model_id: bytes, layout: Layout, arrays: Sequence[np.ndarray], cpu_seconds: int,
              writer: Writer | _Placer | None, raw: bool = False) -> list[Any]:
    """The buffers of a flat job, to send as one message: inputs of INLINE_BYTES and more go into the arena
    through `writer` (when there is one and they fit), the others follow the header."""
    n = len(arrays)
    slots_at = _JOB_HEAD.size + len(model_id) + len(layout.signature)
    data_at = _aligned8(slots_at + n * _JOB_SLOT.size)
    slots: list[int] = []
    inline: list[Any] = []
    end = data_at
    for value in arrays:
        placed = writer.place(value) if writer is not None and in_arena(value) else None
        if placed is not None:
            slots += (IN_ARENA, placed, value.nbytes)
            continue
        start = _aligned8(end)
        if start > end:
            inline.append(bytes(start - end))
        slots += (INLINE, start, value.nbytes)
        inline.append(value)
        end = start + value.nbytes
    head = _JOB_HEAD.pack(JOB_TAG, raw, n, cpu_seconds, 0 if writer is None else writer.end, len(model_id),
                          len(layout.signature))
    pad = bytes(data_at - slots_at - n * _JOB_SLOT.size)
    return [head, model_id, layout.signature, _job_slots(n).pack(*slots), pad, *inline]


class JobTemplate(NamedTuple):
    """A flat job's bytes but for its inputs', built once per model, raw flag and arena size (`job_template`)
    and a job from it per call (`templated_parts`). Its arena inputs have fixed offsets: a flat job's writer
    starts at the arena's first byte, so where each lands depends only on the sizes before it."""

    prefix: bytes  # head, model id, signature, slots, padding: `job_parts`' first buffers, joined
    pads: tuple[bytes, ...]  # the padding before each input that travels in the message
    inline: tuple[int, ...]  # those inputs' positions in the layout
    placed: tuple[tuple[int, int], ...]  # (position, arena offset) of each input that travels in the arena
    arena_end: int  # the arena bytes those take (the job's free_from)


def job_template(model_id: bytes, layout: Layout, cpu_seconds: int, raw: bool,
                 arena_size: int = 0) -> JobTemplate | None:
    """The template of `layout`'s flat jobs for a worker whose arena has `arena_size` bytes (0: none), or None
    when an input of INLINE_BYTES or more would not fit there (each job is then built whole by `job_parts`). A
    job from it has `job_parts`' bytes exactly, and its arena the same bytes where `job_parts` puts them with
    a `Writer` from 0 (tests/vm/test_sandbox_flat.py): after a long run or idle spell the pool's Python before
    the send runs on cold caches, and this is most of it (docs/performance-sandbox.md, "Single jobs: the verdict and
    the lone job", "The hand-off goals, sixth round")."""
    arrays = [np.zeros(shape, dtype) for _, dtype, shape, _ in layout.inputs]
    placer = _Placer(arena_size) if arena_size else None
    parts = job_parts(model_id, layout, arrays, cpu_seconds, placer, raw)
    slots = _job_slots(len(arrays)).unpack_from(b"".join(bytes(part) for part in parts[3:4]))
    if any(where == INLINE and in_arena(value) for where, value in zip(slots[0::3], arrays, strict=True)):
        return None  # an arena-sized input that the arena has no room for
    pads: list[bytes] = []
    pad = b""
    for part in parts[5:]:
        if type(part) is bytes:
            pad = part
        else:
            pads.append(pad)
            pad = b""
    inline = tuple(i for i, where in enumerate(slots[0::3]) if where == INLINE)
    placed = tuple((i, slots[3 * i + 1]) for i, where in enumerate(slots[0::3]) if where == IN_ARENA)
    return JobTemplate(b"".join(bytes(part) for part in parts[:5]), tuple(pads), inline, placed,
                       0 if placer is None else placer.end)


def templated_parts(template: JobTemplate, arrays: Sequence[np.ndarray], arena: Arena | None = None) -> list[Any]:
    """The buffers of a flat job from its template and its inputs (in declared order, as `Layout.arrays`); the
    arena inputs are copied into `arena` (of at least the template's arena size) first."""
    for index, offset in template.placed:
        assert arena is not None
        arena.write(offset, arrays[index])
    if len(template.inline) == 1 and not template.pads[0]:
        return [template.prefix, arrays[template.inline[0]]]
    parts: list[Any] = [template.prefix]
    for pad, index in zip(template.pads, template.inline, strict=True):
        if pad:
            parts.append(pad)
        parts.append(arrays[index])
    return parts


def read_job(body: bytearray) -> FlatJob:
    """A flat job's header (the pool is trusted; this still refuses a body its own header does not fit)."""
    try:
        tag, raw, n, cpu_seconds, free_from, id_len, sig_len = _JOB_HEAD.unpack_from(body)
        at = _JOB_HEAD.size + id_len + sig_len
        signature = bytes(body[at - sig_len:at])
        slots = _job_slots(n).unpack_from(body, at)
    except struct.error as exc:
        raise MalformedFlat(f"flat job: {exc}") from None
    if tag != JOB_TAG:
        raise MalformedFlat("flat job: bad header")
    return FlatJob(raw == 1, cpu_seconds, free_from, bytes(body[_JOB_HEAD.size:_JOB_HEAD.size + id_len]), signature, slots)


class JobReader:
    """A worker's reader of flat jobs that parses each model's job header once (the worker's side of
    `job_template`). A model's jobs from one pool carry the same header and slots byte for byte: only the
    inputs' bytes differ. A job whose bytes up to its data equal those of the last job read in full is that
    job again (`read_job` reads nothing else), so its `FlatJob` is returned without parsing; and when all its
    inputs lie in the same arena, so are their views (`inputs`): the pool writes each job's inputs to the same
    offsets, and the worker writes outputs only after them (`free_from`)."""

    def __init__(self) -> None:
        self._prefix = b""
        self._job: FlatJob | None = None
        self._views: tuple[Layout, Arena, dict[str, np.ndarray]] | None = None
        self.hits = 0  # jobs read by the last one's header (a counter for tests and benches)

    def read(self, body: bytearray) -> FlatJob:
        job = self._job
        if job is not None and body.startswith(self._prefix):
            self.hits += 1
            return job
        self._job = self._views = None
        job = read_job(body)
        self._prefix = bytes(body[:_JOB_HEAD.size + len(job.model_id) + len(job.signature)
                                  + len(job.slots) // 3 * _JOB_SLOT.size])
        self._job = job
        return job

    def inputs(self, job: FlatJob, layout: Layout, body: bytearray, arena: Arena | None) -> dict[str, np.ndarray]:
        """`job_inputs`, the arena views of the last job read in full reused (same layout, same arena) when the
        job has no input in the message (a new dict each time: the caller may keep it)."""
        views = self._views
        if views is not None and job is self._job and views[0] is layout and views[1] is arena:
            return dict(views[2])
        feeds = job_inputs(job, layout, body, arena)
        if job is self._job and arena is not None and IN_ARENA in job.slots[0::3] \
                and all(where == IN_ARENA for where in job.slots[0::3]):
            self._views = (layout, arena, dict(feeds))
        return feeds


def job_inputs(job: FlatJob, layout: Layout, body: bytearray, arena: Arena | None) -> dict[str, np.ndarray]:
    """The job's inputs by name, as views of the message or the arena (no copy)."""
    slots = job.slots
    if len(slots) != 3 * len(layout.inputs):
        raise MalformedFlat("flat job: its slots differ from its signature")
    feeds: dict[str, np.ndarray] = {}
    i = 0
    for name, dtype, shape, nbytes in layout.inputs:
        where, offset, size = slots[i], slots[i + 1], slots[i + 2]
        i += 3
        if size != nbytes:
            raise MalformedFlat(f"flat job: input {name!r} has {size} bytes, not {nbytes}")
        if where == INLINE and offset + size <= len(body):
            feeds[name] = (np.frombuffer(body, dtype, nbytes // dtype.itemsize, offset).reshape(shape) if size
                           else np.zeros(shape, dtype))
        elif where == IN_ARENA and arena is not None and offset + size <= arena.size:
            feeds[name] = arena.view_at(dtype, shape, offset)
        else:
            raise MalformedFlat(f"flat job: input {name!r} lies outside the message and the arena")
    return feeds


def outputs_parts(outputs: Mapping[str, np.ndarray], writer: Writer | None, grid: int = 0) -> list[Any] | None:
    """The buffers of a flat reply carrying `outputs` (arrays of INLINE_BYTES and more in the arena when they
    fit) with its grid byte, or None when an output has no code here (the pickled reply then carries it)."""
    names = []
    size = _OUT_HEAD.size
    for name, value in outputs.items():
        if type(value) is not np.ndarray or value.dtype not in _CODES or not value.flags.c_contiguous:
            return None
        encoded = name.encode()
        names.append(encoded)
        size += _OUT_SLOT.size + _DIM.size * value.ndim + len(encoded)
    header = [_OUT_HEAD.pack(OUTPUTS_TAG, grid, len(outputs))]
    data: list[Any] = []
    end = _aligned8(size)
    for encoded, value in zip(names, outputs.values(), strict=True):
        placed = writer.place(value) if writer is not None and in_arena(value) else None
        if placed is not None:
            where, offset = IN_ARENA, placed
        else:
            where, offset = INLINE, end
            data.append(value)
            pad = _aligned8(value.nbytes) - value.nbytes
            if pad:
                data.append(bytes(pad))
            end += value.nbytes + pad
        header.append(_out_slot(value.ndim).pack(_CODES[value.dtype], value.ndim, where, len(encoded), offset,
                                                 value.nbytes, *value.shape))
        header.append(encoded)
    header.append(bytes(_aligned8(size) - size))
    return header + data


def read_outputs(body: bytearray, arena: Arena | None) -> dict[str, np.ndarray]:
    """A worker's flat reply as canonical outputs by name; MalformedFlat unless every field is in bounds: a
    known dtype code, at most MAX_NDIM dimensions whose product times the item size is the stated byte count,
    a UTF-8 name of at most MAX_NAME_BYTES seen once, data inside the message (after the slots) or inside the
    arena. Inline arrays are writable views of `body`; arena ones private copies (the arena is reused)."""
    slots, at = _read_slots(body)
    return _materialize(body, arena, slots, at)


_Slot = tuple[str, np.dtype[Any], tuple[int, ...], int, int, int]  # name, dtype, shape, where, offset, nbytes


def _read_slots(body: bytearray) -> tuple[list[_Slot], int]:
    """A reply's slots, each checked on its own, and where the slots end."""
    size = len(body)
    if size < _OUT_HEAD.size:
        raise MalformedFlat("flat reply shorter than its header")
    tag, _, n = _OUT_HEAD.unpack_from(body)
    if tag != OUTPUTS_TAG or n > MAX_OUTPUTS:
        raise MalformedFlat("flat reply: bad header")
    slots: list[_Slot] = []
    names: set[str] = set()
    at = _OUT_HEAD.size
    for _ in range(n):
        if at + _OUT_SLOT.size > size:
            raise MalformedFlat("flat reply: truncated slot")
        ndim = body[at + 1]
        if ndim > MAX_NDIM:
            raise MalformedFlat("flat reply: slot out of range")
        slot = _out_slot(ndim)
        if at + slot.size > size:
            raise MalformedFlat("flat reply: truncated slot")
        code, _, where, name_len, offset, nbytes, *dims = slot.unpack_from(body, at)
        if code >= len(DTYPES) or name_len > MAX_NAME_BYTES or where not in (INLINE, IN_ARENA):
            raise MalformedFlat("flat reply: slot out of range")
        at += slot.size
        if at + name_len > size:
            raise MalformedFlat("flat reply: truncated slot")
        shape = tuple(dims)
        try:
            name = body[at:at + name_len].decode()
        except UnicodeDecodeError:
            raise MalformedFlat("flat reply: a name is not UTF-8") from None
        at += name_len
        dtype = DTYPES[code]
        if max(shape, default=0) > MAX_DIM or math.prod(shape) * dtype.itemsize != nbytes:
            raise MalformedFlat(f"flat reply: output {name!r} has {nbytes} bytes for shape {shape}")
        if name in names:
            raise MalformedFlat(f"flat reply: output {name!r} twice")
        names.add(name)
        slots.append((name, dtype, shape, where, offset, nbytes))
    return slots, at


def _materialize(body: bytearray, arena: Arena | None, slots: list[_Slot], at: int) -> dict[str, np.ndarray]:
    """The outputs the slots describe, after checking that each lies inside the message or the arena."""
    size = len(body)
    outputs: dict[str, np.ndarray] = {}
    for name, dtype, shape, where, offset, nbytes in slots:
        if where == IN_ARENA:
            if arena is None or offset + nbytes > arena.size:
                raise MalformedFlat(f"flat reply: output {name!r} lies outside the arena")
            outputs[name] = arena.view_at(dtype, shape, offset).copy()
        elif offset < at or offset + nbytes > size:  # inline data lies after every slot, inside the message
            raise MalformedFlat(f"flat reply: output {name!r} lies outside the message")
        elif nbytes == 0:
            outputs[name] = np.zeros(shape, dtype)
        else:
            outputs[name] = np.frombuffer(body, dtype, nbytes // dtype.itemsize, offset).reshape(shape)
    return outputs


# The largest reply the pool keeps to read again while it waits for the next (`rehearse_read`): inline outputs
# of a few KiB; a larger one would cost more to read than a warm cache saves.
REHEARSAL_BYTES = 16 << 10


class ReplyReader:
    """The pool's reader of one worker's flat replies. A reply whose length and every byte before its data (the
    head and all slots) equal those of the last reply read in full, with all outputs inline, is read by that
    reply's plan: the same names, dtypes, shapes and offsets, already checked against the same length, so only
    the views are made (a model's replies differ only in their data). Anything else is read by
    `read_outputs`' rules. After a larger model's run the full read costs ~65 us on cold caches against ~4 us
    warm (docs/performance-sandbox.md, "Single jobs: cold caches"); the plan touches far less."""

    def __init__(self) -> None:
        self._head = b""
        self._size = -1
        self._plan: tuple[tuple[str, np.dtype[Any], int, int, tuple[int, ...]], ...] = ()
        # The plan's grid for raw replies of a few float32 values (`few_floats`): 2^k and, per output, its name,
        # the structs of its values and of their grid values, its offset and shape; None for any other plan.
        self._grid: tuple[float, tuple[tuple[str, struct.Struct, struct.Struct, int, tuple[int, ...]], ...]] | None \
            = None

    def read(self, body: bytearray, arena: Arena | None) -> dict[str, np.ndarray]:
        """As `read_outputs` (MalformedFlat for a reply that breaks a rule)."""
        if len(body) == self._size and body.startswith(self._head):
            return {name: np.frombuffer(body, dtype, count, offset).reshape(shape)
                    for name, dtype, count, offset, shape in self._plan}
        slots, at = _read_slots(body)
        outputs = _materialize(body, arena, slots, at)
        self._grid = None
        if all(where == INLINE and nbytes for _, _, _, where, _, nbytes in slots):
            self._head, self._size = bytes(body[:at]), len(body)
            self._plan = tuple((name, dtype, nbytes // dtype.itemsize, offset, shape)
                               for name, dtype, shape, _, offset, nbytes in slots)
            grid_k = reply_grid(body)
            if grid_k is not None and all(dtype == _FLOAT32 for _, dtype, _, _, _ in self._plan) \
                    and sum(count for _, _, count, _, _ in self._plan) <= TINY_GRID:
                self._grid = (float(2**grid_k), tuple(
                    (name, _floats(count), _int64s(count), offset, shape)
                    for name, _, count, offset, shape in self._plan))
        else:
            self._head, self._size, self._plan = b"", -1, ()
        return outputs

    def canonical(self, body: bytearray, arena: Arena | None) -> dict[str, np.ndarray]:
        """A reply's outputs as committed: raw ones put on the grid its grid byte names (numeric.on_grid, whose
        verdicts, NonFiniteOutput or OffGridOutput, it raises as the worker would have). A raw reply of a few
        float32 values read by a plan goes on the grid straight from its bytes (`_tiny_grid`)."""
        grid = self._grid
        if grid is not None and len(body) == self._size and body.startswith(self._head):
            outputs = _tiny_grid(body, *grid)
            if outputs is not None:
                return outputs
        outputs = self.read(body, arena)
        grid_k = reply_grid(body)
        return outputs if grid_k is None else on_grid(outputs, grid_k)


_FLOAT32 = np.dtype(np.float32)
_INT64 = np.dtype(np.int64)


@functools.cache
def _floats(count: int) -> struct.Struct:
    return struct.Struct(f"={count}f")  # native: a reply's arrays are in the worker's (this machine's) order


@functools.cache
def _int64s(count: int) -> struct.Struct:
    return struct.Struct(f"={count}q")


def _tiny_grid(body: bytearray, scale: float, plan: tuple[tuple[str, struct.Struct, struct.Struct, int,
                                                                  tuple[int, ...]], ...]) -> dict[str, np.ndarray] | None:
    """A planned raw reply's few float32 outputs on the grid of `scale` = 2^k, read from its bytes in Python
    numbers (numeric.grid_values: the int64 values of numeric.quantize bit for bit), each a new writable
    array; None when a value is NaN, Inf or off the int64 grid (numeric.on_grid then gives the verdict)."""
    outputs: dict[str, np.ndarray] = {}
    for name, floats, ints, offset, shape in plan:
        q = grid_values(floats.unpack_from(body, offset), scale)
        if q is None:
            return None
        grid = bytearray(ints.size)
        ints.pack_into(grid, 0, *q)
        outputs[name] = np.frombuffer(grid, _INT64).reshape(shape)
    return outputs


def reply_grid(body: bytearray) -> int | None:
    """The grid_k a read reply's raw float outputs go on, or None when its outputs are canonical already."""
    return body[1] - 1 if body[1] else None


def rehearse_read(reader: ReplyReader, body: bytearray) -> None:
    """Read a reply already read once again, and drop the result: a pool waiting for a reply it expects soon
    runs this so that the reader's code and data (and the grid's) are in its vCPU's caches when the reply comes (after a
    sleep of a millisecond or more they are not: docs/performance-sandbox.md, "Single jobs: cold caches"). Outputs
    in the arena are not read (no arena is given: a reply naming it stops at MalformedFlat)."""
    with contextlib.suppress(MalformedFlat, InferenceError):
        reader.canonical(body, None)


class ReplyWriter:
    """A worker's flat replies for one loaded model: `outputs_parts`, and once a reply had only inline outputs,
    the same head and slots again (joined once) for outputs of the same names, dtypes and shapes in the same
    order (a model's outputs differ only in their values): the reply is then that head, the arrays and their
    padding. Its bytes equal `outputs_parts`' for the same outputs (tests/vm/test_sandbox_flat.py)."""

    def __init__(self) -> None:
        self._head = b""
        self._grid = 0
        self._expect: tuple[tuple[str, np.dtype[Any], tuple[int, ...], bytes], ...] | None = None

    def parts(self, outputs: Mapping[str, np.ndarray], writer: Writer | None, grid: int = 0) -> list[Any] | None:
        expect = self._expect
        if expect is not None and grid == self._grid and len(outputs) == len(expect):
            parts: list[Any] = [self._head]
            for (name, dtype, shape, pad), (got, value) in zip(expect, outputs.items(), strict=True):
                if got != name or type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape \
                        or not value.flags.c_contiguous:
                    break
                parts.append(value)
                if pad:
                    parts.append(pad)
            else:
                return parts
        full = outputs_parts(outputs, writer, grid)
        if full is not None and not any(in_arena(v) for v in outputs.values()):
            self._grid = grid
            head_count = 1 + 2 * len(outputs) + 1  # head, (slot, name) per output, padding
            self._head = b"".join(bytes(part) for part in full[:head_count])
            self._expect = tuple((name, value.dtype, value.shape, bytes(_aligned8(value.nbytes) - value.nbytes))
                                 for name, value in outputs.items())
        return full
