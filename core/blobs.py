"""Blobs: node-local bytes addressed by their SHA-256, kept next to the state that names them.

Model bytes are too large for state records, so the state holds only their hashes (upload records list
their chunks' hashes, model records the whole model's) and the bytes live in a `BlobStore`. The order of
writes keeps the two consistent: blobs are written and fsynced before the state batch that names them
commits, and a blob is deleted only after a committed state stopped naming it (docs/state.md, "Blobs").

`MemoryBlobs` is the in-memory implementation (tools, the simulator); the node's is
`node.blobstore.FileBlobStore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from core.hashing import sha256
from core.types import Hash32


class BlobReader(Protocol):
    def get_blob(self, digest: Hash32) -> bytes | None:
        """The blob whose SHA-256 is `digest`, checked; None if this node does not hold it."""
        ...


class BlobStore(BlobReader, Protocol):
    def put_blobs(self, blobs: Mapping[bytes, bytes]) -> None:
        """Store blobs (digest -> bytes, digests already checked); durable when this returns."""
        ...

    def delete_blob(self, digest: Hash32) -> None:
        """Forget one blob; absent is fine."""
        ...

    def digests(self) -> Iterator[Hash32]:
        """Every blob held, in no particular order."""
        ...

    def size(self, digest: Hash32) -> int | None:
        """Bytes of one blob, None if absent; without reading it."""
        ...


def blob_digest(data: bytes) -> Hash32:
    return sha256(data)


class MemoryBlobs:
    """A `BlobStore` in a dict: nothing survives the process."""

    def __init__(self, blobs: Iterable[bytes] = ()) -> None:
        self._blobs: dict[bytes, bytes] = {bytes(blob_digest(b)): bytes(b) for b in blobs}

    def get_blob(self, digest: Hash32) -> bytes | None:
        return self._blobs.get(bytes(digest))

    def put_blobs(self, blobs: Mapping[bytes, bytes]) -> None:
        for digest, data in blobs.items():
            self._blobs[bytes(digest)] = bytes(data)

    def delete_blob(self, digest: Hash32) -> None:
        self._blobs.pop(bytes(digest), None)

    def digests(self) -> Iterator[Hash32]:
        return iter([Hash32(d) for d in self._blobs])

    def size(self, digest: Hash32) -> int | None:
        data = self._blobs.get(bytes(digest))
        return None if data is None else len(data)
