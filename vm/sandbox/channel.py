"""The socket between the pool and one sandbox worker: framed pickles, one system call per message each way.

multiprocessing's `Connection` spends most of a small message's cost around the message: a pickler that
copies copyreg's dispatch table for every message, two reads per message (length, then body), a selector
built for every `poll`, and numpy arrays pickled with their dtype's whole state (protocol 4). A `Channel`
writes length and body in one `send`, reads whatever has arrived into one preallocated buffer (usually the
whole message), keeps one `select.poll` object, and pickles numpy arrays at protocol 5 as raw bytes plus
dtype string and shape (bench/vm.py, "hand-off"). File descriptors (the arena's memfd) travel as SCM_RIGHTS
ancillary data of the message that announces them; the pool's end never accepts any (the kernel closes
descriptors a worker tries to send it).

The pool's end decodes with an allow-list (`allowed`): a worker may have been taken over through a bug in
ONNX Runtime, and a plain unpickler runs whatever a pickle names (`os.system` by GLOBAL and REDUCE). Each
GLOBAL in a reply must be one of the objects the protocol uses (vm/sandbox/protocol.py, REPLY_GLOBALS) or
this module's own array reduction; anything else, and any message that does not decode, raises
`UndecodableReply` (a WorkerFault) before a single refused object is called.
"""

from __future__ import annotations

import array
import copyreg
import io
import os
import pickle
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vm.sandbox.errors import UndecodableReply

_HEADER = struct.Struct("<Q")
_CHUNK = 1 << 16
# Larger than any message the pool and its workers exchange (model bytes are capped far below): a length
# beyond it is garbage on the socket, refused before anything is allocated.
MAX_MESSAGE_BYTES = 4 << 30
_PLAIN_KINDS = frozenset("biuf")
_PROTO = b"\x80"  # the first byte of every pickle this channel writes; a flat message starts otherwise


def _array_from(data: bytearray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.frombuffer(data, dtype)
    if array.dtype.kind not in _PLAIN_KINDS:  # never an object array built from a peer's bytes
        raise ValueError(f"dtype {dtype!r} does not travel as raw bytes")
    return array.reshape(shape)


def _reduce_array(value: np.ndarray) -> Any:
    """A plain C-ordered array as its bytes (a bytearray in the pickle, so the copy received is writable, as
    with numpy's own pickling), dtype string and shape; anything else as numpy pickles it."""
    if value.dtype.kind in _PLAIN_KINDS and value.dtype.isnative and value.flags.c_contiguous:
        data = pickle.PickleBuffer(value.data) if value.flags.writeable else bytearray(value.data)
        return _array_from, (data, value.dtype.str, value.shape)
    return value.__reduce_ex__(5)


class _Pickler(pickle.Pickler):
    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[np.ndarray] = _reduce_array


def dumps(message: object) -> bytes:
    """A message as the channel sends it (protocol 5, arrays as raw bytes)."""
    buffer = io.BytesIO()
    _Pickler(buffer, 5).dump(message)
    return buffer.getvalue()


class _AllowListUnpickler(pickle.Unpickler):
    """An unpickler whose GLOBAL and STACK_GLOBAL resolve only names in `allowed` ((module, qualname) ->
    object): a pickle can then call nothing else (REDUCE, NEWOBJ and BUILD need a callable or class from a
    GLOBAL first)."""

    def __init__(self, data: Any, allowed: Mapping[tuple[str, str], object]) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a message")
        return found


def allow_list(objects: tuple[object, ...]) -> dict[tuple[str, str], object]:
    """The allow-list of a Channel: each object under the module and qualified name a pickle names it by,
    and this module's own array reduction."""
    table: dict[tuple[str, str], object] = {(_array_from.__module__, _array_from.__qualname__): _array_from}
    for obj in objects:  # named as pickle's save_global names them (the defining module, the qualified name)
        table[(str(getattr(obj, "__module__", "")), str(getattr(obj, "__qualname__", "")))] = obj
    return table


class SpinWait:
    """A bounded busy-wait before a blocking wait, for as long as it does not take a core from anyone else.

    On this project's VMs an idle vCPU halts, and waking it again costs the host 50-500 µs (more the longer
    it slept): most of a single small job's hand-off (docs/performance-sandbox.md, "Single jobs"). A side that polls
    the socket for up to `limit_s` keeps its vCPU awake, so the other side's message is seen in a few µs.
    Polling yields the CPU between polls (`sched_yield`), so a runnable task on the same core runs first.

    The contention rule: a spin during which this thread got less than `min_share` of the wall time was
    contended (another task ran on its core). One such spin says little: a timer interrupt, a kernel thread
    or one short preemption does it on an idle machine too. So the rule judges the last `WINDOW` judged spins:
    when `trip_after` of them were contended, the core is wanted by someone else and spinning turns off for
    `backoff_s`. A trip spends the spins that made it: after the back-off the window starts over (holding one
    contended mark), so it takes `trip_after` contended spins again to trip again. The back-off doubles on
    each further trip up to `MAX_BACKOFF_S`, and is back to `FIRST_BACKOFF_S` once the window holds no
    contended spin. A core another process really wants makes most spins contended, so
    spinning still stops within `trip_after` spins. With fewer than two usable cores it never spins: the other
    side would need this core to answer. `OLD_RULE` (a window of one) is the rule before this one.
    """

    MIN_SHARE = 0.8
    # How long before an expected message a waiting side stops sleeping and spins (Channel.poll `expect_s`):
    # more than a halted vCPU's usual wake-up on these VMs (50-500 µs).
    LEAD_S = 0.0005
    FIRST_BACKOFF_S = 0.05
    MAX_BACKOFF_S = 5.0
    WINDOW = 8  # the judged spins the rule looks back on
    TRIP_AFTER = 3  # contended spins among them that turn spinning off
    OLD_RULE = (1, 1)  # the rule before: one contended spin
    _MIN_JUDGED_S = 20e-6  # shorter spins say nothing about contention (two clock reads and a poll)
    _SHARES_KEPT = 16

    def __init__(self, limit_s: float, min_share: float = MIN_SHARE, rule: tuple[int, int] = (WINDOW, TRIP_AFTER)) -> None:
        """`min_share` 0 spins whatever the contention (benches measure what spinning could give that way);
        `rule` is (window, trip_after): `OLD_RULE` trips on a single contended spin (benches compare)."""
        window, trip_after = rule
        if not 1 <= trip_after <= window <= 64:
            raise ValueError(f"a spin rule needs 1 <= trip_after <= window <= 64, not {rule}")
        self._mask = (1 << window) - 1
        self.limit_s = limit_s if limit_s > 0 and len(os.sched_getaffinity(0)) >= 2 else 0.0
        self.min_share = min_share
        self.trip_after = trip_after
        self._off_until = 0.0
        self._backoff_s = self.FIRST_BACKOFF_S
        self._window = 0  # one bit per judged spin, newest lowest: 1 = contended
        # Counters for benches and tests: spins begun, spins that saw the message, spins judged contended,
        # times the rule turned spinning off, waits that blocked because it was off (`gate`), and the CPU
        # shares of the last contended spins (why it tripped).
        self.spins = 0
        self.hits = 0
        self.contended = 0
        self.trips = 0
        self.gated = 0
        self.contended_shares: deque[float] = deque(maxlen=self._SHARES_KEPT)

    def active(self, now: float) -> bool:
        return self.limit_s > 0 and now >= self._off_until

    def gate(self, now: float) -> bool:
        """`active`, counting a wait that the rule (not the configuration) made block."""
        if self.limit_s > 0 and now < self._off_until:
            self.gated += 1
            return False
        return self.limit_s > 0

    def record(self, cpu_s: float, wall_s: float, hit: bool, now: float) -> None:
        self.spins += 1
        self.hits += hit
        if wall_s < self._MIN_JUDGED_S:
            return
        contended = cpu_s < self.min_share * wall_s
        self._window = ((self._window << 1) | contended) & self._mask
        if not contended:
            if not self._window:
                self._backoff_s = self.FIRST_BACKOFF_S
            return
        self.contended += 1
        self.contended_shares.append(cpu_s / wall_s)
        if self._window.bit_count() >= self.trip_after:
            self.trips += 1
            self._off_until = now + self._backoff_s
            self._backoff_s = min(2 * self._backoff_s, self.MAX_BACKOFF_S)
            # The spins that tripped it are spent: after the back-off the rule judges fresh spins, so one
            # contended spin then (an interrupt) does not trip it again. Kept, they made every later lone
            # preemption a trip with a doubled back-off: on a quiet machine the worker's spin stayed off for
            # seconds (docs/performance-sandbox.md, "The spin rule and the worker's collector (spinrule)").
            # A mark that is not clean keeps the doubled back-off until a clean window resets it.
            self._window = 1


class Channel:
    """One end of a connected AF_UNIX stream socket. `accept_fds` lets this end receive file descriptors
    (the worker's); `fds` holds the ones received, in order, for the message that announced them. `allowed`
    (from `allow_list`) makes `recv` resolve only those globals (the pool's end: it trusts no worker)."""

    def __init__(self, sock: socket.socket, *, accept_fds: bool = False,
                 allowed: Mapping[tuple[str, str], object] | None = None) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._chunk = bytearray(_CHUNK)
        self._pending = bytearray()
        self._ancillary = socket.CMSG_SPACE(array.array("i", [0]).itemsize) if accept_fds else 0
        self.fds: deque[int] = deque()
        self._allowed = allowed

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: object, fds: tuple[int, ...] = ()) -> None:
        data = dumps(message)
        header = _HEADER.pack(len(data))
        if fds:
            sent = self._sock.sendmsg([header, data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            rest = memoryview(header + data)[sent:]
            if rest:
                self._sock.sendall(rest)
        elif len(data) <= _CHUNK:
            self._sock.sendall(header + data)
        else:  # a large message (model bytes): no copy to join the header
            self._sock.sendall(header)
            self._sock.sendall(data)

    def send_parts(self, parts: list[Any]) -> None:
        """A flat message (vm/sandbox/flat.py) given as buffers, sent with its length in one `sendmsg` (no
        copy to join them). Its first byte must not be pickle's PROTO opcode."""
        size = sum(memoryview(part).nbytes for part in parts)
        header = _HEADER.pack(size)
        sent = self._sock.sendmsg([header, *parts])
        if sent < _HEADER.size + size:  # the socket's buffer was full: the rest, blocking
            rest = memoryview(b"".join([header, *parts]))[sent:]
            self._sock.sendall(rest)

    def poll(self, timeout_s: float | None = None, spin: SpinWait | None = None, expect_s: float = 0.0,
             rehearse: Callable[[], object] | None = None) -> bool:
        """Whether a message (or the end of the stream) can be read now, waiting at most `timeout_s`: first
        polling without sleeping while `spin` allows, then blocked in the kernel. A message expected in
        `expect_s` (> `SpinWait.LEAD_S`) is first waited for blocked until LEAD_S before then, and spun for
        after: the vCPU's wake-up from that sleep falls before the message, not after it. `rehearse`, if
        given, runs once between that sleep and the spin (the caller's reading of the message, on old bytes:
        its code and data are then in this vCPU's caches when the message comes)."""
        if self._complete():
            return True
        if spin is not None:
            start = time.monotonic()
            if spin.gate(start):
                if expect_s > spin.LEAD_S:
                    nap = expect_s - spin.LEAD_S if timeout_s is None else min(expect_s - spin.LEAD_S, timeout_s)
                    if select.select([self._sock], [], [], nap)[0]:  # select: µs timeouts (poll: ms)
                        return True
                    if rehearse is not None:
                        rehearse()
                    now = time.monotonic()
                    if timeout_s is not None:
                        timeout_s = max(0.0, timeout_s - (now - start))
                    start = now
                if self._spin(spin, start + (spin.limit_s if timeout_s is None else min(spin.limit_s, timeout_s))):
                    return True
                if timeout_s is not None:
                    timeout_s = max(0.0, timeout_s - (time.monotonic() - start))
        return bool(self._poller.poll(None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))))

    def _spin(self, spin: SpinWait, end: float) -> bool:
        """Poll without sleeping until something arrives or `end` (monotonic seconds) passes."""
        poll, clock, cpu, yield_cpu = self._poller.poll, time.monotonic, time.thread_time, os.sched_yield
        start, start_cpu = clock(), cpu()
        hit = False
        while True:
            if poll(0):
                hit = True
                break
            if clock() >= end:
                break
            yield_cpu()
        now = clock()
        spin.record(cpu() - start_cpu, now - start, hit, now)
        return hit

    def recv(self) -> Any:
        """The next message: the object a pickled body holds, or a flat body's bytes (a `bytearray`, see
        vm/sandbox/flat.py); EOFError when the other end closed the socket, OSError for a length over
        MAX_MESSAGE_BYTES, UndecodableReply for a body the allow-list refuses or that does not decode (the
        message is consumed: the stream stays in step)."""
        while len(self._pending) < _HEADER.size:
            self._fill()
        (size,) = _HEADER.unpack_from(self._pending)
        if size > MAX_MESSAGE_BYTES:
            raise OSError(f"a message of {size} bytes exceeds the channel's limit")
        total = _HEADER.size + size
        if len(self._pending) < total and size > _CHUNK:
            # Large: read the rest straight into a buffer of the right size.
            body = bytearray(size)
            have = len(self._pending) - _HEADER.size
            body[:have] = self._pending[_HEADER.size:]
            self._pending.clear()
            view = memoryview(body)
            while have < size:
                n = self._sock.recv_into(view[have:])
                if n == 0:
                    raise EOFError("channel closed mid-message")
                have += n
            return body if body[:1] != _PROTO else self._decode(body)
        while len(self._pending) < total:
            self._fill()
        if self._pending[_HEADER.size:_HEADER.size + 1] != _PROTO:  # a flat message: its bytes, for the caller
            body = self._pending[_HEADER.size:total]
            del self._pending[:total]
            return body
        try:
            with memoryview(self._pending) as view, view[_HEADER.size:total] as body_view:
                return self._decode(body_view)
        finally:
            del self._pending[:total]

    def _decode(self, body: Any) -> Any:
        if self._allowed is None:
            return pickle.loads(body)
        try:
            return _AllowListUnpickler(body, self._allowed).load()
        except Exception as exc:  # whatever a crafted pickle makes numpy or an allowed class raise
            raise UndecodableReply(f"undecodable message: {type(exc).__name__}: {str(exc)[:200]}") from None

    def take_fd(self) -> int:
        """The next file descriptor received (OSError if none came)."""
        if not self.fds:
            raise OSError("no file descriptor arrived with the message")
        return self.fds.popleft()

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.popleft())
        self._sock.close()

    def _complete(self) -> bool:
        if len(self._pending) < _HEADER.size:
            return False
        (size,) = _HEADER.unpack_from(self._pending)
        return len(self._pending) >= _HEADER.size + int(size)

    def _fill(self) -> None:
        if self._ancillary:
            n, ancillary, _, _ = self._sock.recvmsg_into([self._chunk], self._ancillary)
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                    self.fds.extend(fds)
        else:
            n = self._sock.recv_into(self._chunk)
        if n == 0:
            raise EOFError("channel closed")
        self._pending += memoryview(self._chunk)[:n]
