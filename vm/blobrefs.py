"""Keeping blobs consistent with the state that names them (docs/state.md, "Blobs").

The node counts, outside the authenticated state but in the same database batch as each block's state, how
many committed records name each blob. Committing a block writes its new blobs and fsyncs them before the
batch that names them commits (a crash leaves at most an unnamed blob, never a name without its blob); a
blob whose count falls to zero is listed as garbage in that batch and deleted once the batch is durable
(`collect_garbage`, run before the next block's commit and at start-up, when unnamed leftovers of a crash are
swept too).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.blobs import BlobStore, blob_digest
from core.errors import StorageError
from core.store import KeySpace, KVStore, WriteBatch
from core.types import Hash32
from vm.state import BlobChanges

_REFS = bytes([KeySpace.BLOB_REFS])
_GARBAGE = bytes([KeySpace.BLOB_GARBAGE])


def _ref_key(digest: bytes) -> bytes:
    return _REFS + digest


def ref_count(store: KVStore, digest: bytes) -> int:
    raw = store.get(_ref_key(digest))
    return 0 if raw is None else int.from_bytes(raw, "big")


def named_blobs(store: KVStore) -> list[Hash32]:
    """Every blob a committed record names."""
    return [Hash32(key[1:]) for key, _ in store.iterate(_REFS) if len(key) == 33]


def stage_blob_changes(store: KVStore, blobs: BlobStore, batch: WriteBatch, changes: BlobChanges) -> None:
    """Store the new blobs that stay named (durably, now) and stage the new counts in `batch`."""
    counts: dict[bytes, int] = {}
    for digest, delta in changes.refs.items():
        count = ref_count(store, digest) + delta
        if count < 0:
            raise StorageError(f"blob {digest.hex()[:16]} released more often than it was named")
        counts[digest] = count
    blobs.put_blobs({d: data for d, data in changes.new.items() if counts.get(d, 0) > 0})
    for digest, (parts, size) in changes.composed.items():
        if counts.get(digest, 0) > 0 and blobs.size(Hash32(digest)) != size:
            blobs.put_blobs({digest: compose_blob(blobs, changes, digest, parts)})
    for digest, count in counts.items():
        if count:
            batch.put(_ref_key(digest), count.to_bytes(8, "big"))
            batch.delete(_GARBAGE + digest)
        else:
            batch.delete(_ref_key(digest))
            batch.put(_GARBAGE + digest, b"")


def list_garbage(store: KVStore, digests: Iterable[bytes]) -> None:
    """List blobs a node stored without a record naming them (an upload prepared ahead that closed without
    completing: node/uploadahead.py) as garbage: the next `collect_garbage`, which runs before a block's
    commit stages its own blobs, deletes each that no committed record names by then."""
    with store.write_batch() as batch:
        for digest in digests:
            batch.put(_GARBAGE + bytes(digest), b"")


def compose_blob(blobs: BlobStore, changes: BlobChanges, digest: bytes, parts: tuple[bytes, ...]) -> bytes:
    """A composed blob's bytes (a prepared upload the node did not store ahead): its parts, from this block's
    new blobs or the store, checked against `digest`. StorageError when a part is missing (this node's
    fault: its store lost a chunk its state names)."""
    chunks = []
    for part in parts:
        data = changes.new.get(part)
        if data is None:
            data = blobs.get_blob(Hash32(part))
        if data is None:
            raise StorageError(f"blob {digest.hex()[:16]}: its part {part.hex()[:16]} is missing from this node")
        chunks.append(data)
    whole = b"".join(chunks)
    if blob_digest(whole) != digest:
        raise StorageError(f"blob {digest.hex()[:16]}: its parts hash to another digest")
    return whole


def collect_garbage(store: KVStore, blobs: BlobStore, *, sweep: bool = False) -> int:
    """Delete the blobs listed as garbage that are still unnamed (their batch committed); with `sweep`,
    every blob no count names (a crash between writing blobs and committing their batch). How many went."""
    doomed = {key[1:] for key, _ in store.iterate(_GARBAGE)}
    if sweep:
        doomed |= {bytes(d) for d in blobs.digests()}
    gone = 0
    for digest in sorted(doomed):
        if ref_count(store, digest) == 0 and len(digest) == 32:
            blobs.delete_blob(Hash32(digest))
            gone += 1
    if doomed:
        with store.write_batch(sync=True) as batch:
            for digest in doomed:
                batch.delete(_GARBAGE + digest)
    return gone
