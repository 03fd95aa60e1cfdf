"""The node's blob store: model bytes in files named by their SHA-256, under `<home>/blobs`.

One file per blob, in a subdirectory named by the digest's first byte (a few hundred files per directory
at most). Writes go through `core.fsio.write_atomic` (temporary file, fsync, rename, fsync of the directory),
so a blob is whole or absent after a crash; reads check the digest, so a damaged file reads as absent (the
state that names it then reports a StorageError, this node's fault). Consistency with the state:
`vm.blobrefs`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from core.blobs import blob_digest
from core.errors import StorageError
from core.fsio import write_atomic
from core.types import Hash32


class FileBlobStore:
    """A `core.blobs.BlobStore` in a directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._write_lock = threading.Lock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the blob directory {self.root}: {exc.strerror}") from None

    def _path(self, digest: bytes) -> Path:
        name = bytes(digest).hex()
        return self.root / name[:2] / name

    def get_blob(self, digest: Hash32) -> bytes | None:
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read blob {bytes(digest).hex()[:16]}: {exc.strerror}") from None
        return data if blob_digest(data) == digest else None

    def put_blobs(self, blobs: Mapping[bytes, bytes]) -> None:
        for digest, data in blobs.items():
            path = self._path(digest)
            # One writer at a time: a commit and the node's upload preparation (node/uploadahead.py) may store
            # the same blob from two threads, and a write's temporary file is named by the process.
            with self._write_lock:
                if path.exists() and path.stat().st_size == len(data):
                    continue  # content-addressed: the same name holds the same bytes
                try:
                    path.parent.mkdir(exist_ok=True)
                    write_atomic(path, data, mode=0o644)
                except OSError as exc:
                    raise StorageError(f"cannot write blob {bytes(digest).hex()[:16]}: {exc.strerror}") from None

    def delete_blob(self, digest: Hash32) -> None:
        try:
            self._path(digest).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete blob {bytes(digest).hex()[:16]}: {exc.strerror}") from None

    def digests(self) -> Iterator[Hash32]:
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for path in sorted(sub.iterdir()):
                try:
                    raw = bytes.fromhex(path.name)
                except ValueError:
                    continue  # a temporary file of an interrupted write
                if len(raw) == 32:
                    yield Hash32(raw)

    def read_range(self, digest: Hash32, offset: int, length: int) -> bytes | None:
        """Bytes offset..offset+length of a blob, unchecked (what a peer fetching it checks against the
        digest once whole); None if absent."""
        try:
            with self._path(digest).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read blob {bytes(digest).hex()[:16]}: {exc.strerror}") from None

    def size(self, digest: Hash32) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None
