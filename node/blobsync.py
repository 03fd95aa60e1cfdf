"""Fetching the blobs the committed state names and this node lacks (a damaged or deleted blob file, a
blob directory lost with the database kept): from peers, in 256 KiB exchanges (`p2p.reqresp.fetch_model`),
each blob checked against its hash before it is stored. A peer that sends bytes of another hash or size is
penalized and the next peer is asked (docs/security.md, "Blob liar").

Peers serve a blob only while a committed record of theirs names it (`BlobProvider`), by its hash: a model's
`bytes_hash`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import trio

from core.blobs import BlobStore, blob_digest
from core.errors import InferchainError, LocalFault
from core.store import KVStore
from core.types import Hash32
from node.blobstore import FileBlobStore
from p2p.limits import MODEL_MAX
from p2p.messages import ModelChunkResponse
from p2p.scoring import Offense
from p2p.service import P2PService
from vm.blobrefs import named_blobs, ref_count

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class BlobProvider:
    """What this node serves of its blobs: ranges of those its committed state names."""

    def __init__(self, store: KVStore, blobs: FileBlobStore) -> None:
        self._store = store
        self._blobs = blobs

    async def model(self, digest: Hash32, offset: int, length: int) -> ModelChunkResponse | None:
        return await trio.to_thread.run_sync(self._read, digest, offset, length)

    def _read(self, digest: Hash32, offset: int, length: int) -> ModelChunkResponse | None:
        if ref_count(self._store, bytes(digest)) == 0:
            return None
        size = self._blobs.size(digest)
        if size is None or offset > size:
            return None
        data = self._blobs.read_range(digest, offset, length)
        return None if data is None else ModelChunkResponse(size, offset, data)


async def fetch_blob(p2p: P2PService, blobs: BlobStore, digest: Hash32, *, max_size: int = MODEL_MAX,
                     progress: Progress | None = None) -> bytes:
    """One blob from the first peer that serves it whole and true; stored before this returns. A peer whose
    bytes do not hash to `digest` is penalized. LocalFault when no peer could."""
    for peer in p2p.peers_serving("model"):
        try:
            data = await p2p.reqresp.fetch_model(peer, digest, progress=progress, max_size=max_size)
        except InferchainError as exc:  # not found, refused, or a response reqresp already penalized
            logger.info("blob %s not fetched from %s: %s", digest.hex()[:16], peer, exc)
            continue
        if blob_digest(data) != digest:
            p2p.penalize(peer, Offense.BAD_RESPONSE, f"blob {digest.hex()[:16]}: bytes of another hash")
            continue
        await trio.to_thread.run_sync(blobs.put_blobs, {bytes(digest): data})
        return data
    raise LocalFault(f"no peer served blob {digest.hex()[:16]}")


def progress_bar(digest: Hash32) -> Progress:
    """A progress bar on stderr for one blob's download (click's: a bar on a terminal, the label
    elsewhere), finished when the last byte arrives."""
    state: dict[str, Any] = {"bar": None, "got": 0}

    def update(got: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label=f"fetching blob {digest.hex()[:16]}",
                                             file=sys.stderr)
        state["bar"].update(got - state["got"])
        state["got"] = got
        if got >= total:
            state["bar"].render_finish()

    return update


def missing_blobs(store: KVStore, blobs: BlobStore) -> list[Hash32]:
    """Blobs the committed state names that this node does not hold."""
    return [d for d in named_blobs(store) if blobs.size(d) is None]


async def repair_blobs(p2p: P2PService, store: KVStore, blobs: BlobStore, *,
                       progress: Callable[[Hash32], Progress | None] | None = None) -> int:
    """Fetch every missing named blob; how many were fetched. LocalFault if one cannot be."""
    missing = missing_blobs(store, blobs)
    for digest in missing:
        await fetch_blob(p2p, blobs, digest, progress=None if progress is None else progress(digest))
    return len(missing)
