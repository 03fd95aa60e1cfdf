"""Write-ahead log of consensus inputs (docs/design.md §4.5).

The driver appends every event before handling it; the node's own signed messages (and each NewHeight) are
fsynced before anything leaves the node. On restart the log of the current height is replayed. A record is
`length (u32 BE) ‖ crc32 (u32 BE) ‖ encoded WalRecord`; a torn or corrupt *last* record (a crash mid-write)
is cut off when the log is opened, while damage followed by further records is refused as corruption.
Each NewHeight starts a fresh log (atomic replace), so the log holds one height and never grows without bound.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Protocol

from consensus.events import Event, NewHeight, WalRecord, decode_event, encode_event
from core.errors import DecodeError, StorageError
from core.fsio import write_atomic

_HEADER = struct.Struct(">II")
MAX_RECORD = WalRecord.MAX_BYTES


class WriteAheadLog(Protocol):
    def append(self, event: Event, *, sync: bool = False) -> None:
        """Log `event`; with sync, it and everything before it are durable on return."""
        ...

    def sync(self) -> None:
        """Make everything appended so far durable (the driver calls it before each signature)."""
        ...

    def replay(self) -> list[Event]:
        """The logged events from the last NewHeight on (empty for a fresh log)."""
        ...

    def close(self) -> None: ...


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def scan(data: bytes) -> tuple[list[bytes], int]:
    """The payloads of the intact records and the length of the intact prefix; raises on mid-log damage."""
    out: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n:
        if pos + _HEADER.size > n:
            break  # torn header at the end
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > MAX_RECORD:
            if end >= n:
                break
            raise StorageError(f"WAL record at offset {pos} claims {length} bytes")
        if end > n:
            break  # torn payload at the end
        payload = data[pos + _HEADER.size:end]
        if zlib.crc32(payload) != crc:
            if end == n:
                break  # the last record was torn in place
            raise StorageError(f"WAL record at offset {pos} fails its checksum and is not the last one")
        out.append(payload)
        pos = end
    return out, pos


def _from_last_new_height(payloads: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for payload in payloads:
        try:
            event = decode_event(payload)
        except DecodeError as exc:
            raise StorageError(f"WAL record does not decode: {exc}") from exc
        if isinstance(event, NewHeight):
            events = []
        events.append(event)
    return events


class MemoryWAL:
    """For the simulator. `crash(power_loss=True)` drops whatever was not synced, as a power cut would.

    With `encode=False` it keeps the (immutable) event objects instead of their bytes: the codec round trip
    is tested on its own, and skipping it makes thousands of simulated runs affordable.
    """

    def __init__(self, *, encode: bool = True) -> None:
        self._records: list[bytes | Event] = []
        self._synced = 0
        self._encode = encode
        self.appends = 0
        self.syncs = 0

    def append(self, event: Event, *, sync: bool = False) -> None:
        data: bytes | Event = encode_event(event) if self._encode else event
        if isinstance(event, NewHeight):
            self._records = []
            self._synced = 0
            sync = True
        self._records.append(data)
        self.appends += 1
        if sync:
            self._synced = len(self._records)
            self.syncs += 1

    def sync(self) -> None:
        if self._synced < len(self._records):
            self._synced = len(self._records)
            self.syncs += 1

    def replay(self) -> list[Event]:
        if not self._encode:
            events: list[Event] = []
            for record in self._records:
                assert not isinstance(record, bytes)
                if isinstance(record, NewHeight):
                    events = []
                events.append(record)
            return events
        return _from_last_new_height([r for r in self._records if isinstance(r, bytes)])

    def crash(self, *, power_loss: bool = False) -> None:
        if power_loss:
            del self._records[self._synced:]

    def close(self) -> None:
        pass


class FileWAL:
    """The node's WAL: one file, appended and fsynced on request, replaced atomically at each NewHeight."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.truncated_bytes = 0
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StorageError(f"cannot read WAL {self.path}: {exc}") from exc
        self._payloads, good = scan(data)
        try:
            if good < len(data):
                self.truncated_bytes = len(data) - good
                with open(self.path, "r+b") as f:
                    f.truncate(good)
                    f.flush()
                    os.fsync(f.fileno())
            self._file = open(self.path, "ab")  # noqa: SIM115 - owned for the log's lifetime
        except OSError as exc:
            raise StorageError(f"cannot open WAL {self.path}: {exc}") from exc

    def append(self, event: Event, *, sync: bool = False) -> None:
        payload = encode_event(event)
        try:
            if isinstance(event, NewHeight):
                self._rotate(frame(payload))
                self._payloads = [payload]
                return
            self._file.write(frame(payload))
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise StorageError(f"cannot append to WAL {self.path}: {exc}") from exc
        self._payloads.append(payload)

    def sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise StorageError(f"cannot sync WAL {self.path}: {exc}") from exc

    def _rotate(self, first: bytes) -> None:
        self._file.close()
        write_atomic(self.path, first, mode=0o644)
        self._file = open(self.path, "ab")  # noqa: SIM115

    def replay(self) -> list[Event]:
        return _from_last_new_height(self._payloads)

    def close(self) -> None:
        self._file.close()
