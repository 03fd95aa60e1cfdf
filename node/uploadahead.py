"""Uploads prepared before the block that completes them (vm/assembly.py; docs/sandbox.md, "The completing chunk").

The mempool tells this service of every model chunk it takes (`note`); after each such note and each commit,
a pass looks for uploads whose every chunk is either committed (the upload record lists its hash; its bytes
are a blob) or waiting in the mempool. For each one it has not prepared yet, a thread assembles the model,
hashes and parses it (`vm.assembly.prepare_assembly`: the memo the block path asks), and stores the whole
model's blob, so that the completing block neither reads, hashes, parses nor writes the ~100 MB: it finds the
facts under the chunks' hashes and names the blob this node already holds. A chunk list that does not match
its header is not kept (the block rejects it the slow way); a mempool chunk that is not the one a block
carries only makes the block's lookup miss. Nothing here decides anything the block path would not.

A blob prepared for an upload that then closes without completing (it expired, or its chunks left the
mempool before its upload opened) is listed as garbage once no chunk of it waits in the mempool
(`vm.blobrefs.list_garbage`): the next block's commit deletes it unless a record names it by then (the
same bytes completed by another upload: that commit composes the blob from its chunks if it was deleted).
A node that restarts forgets what it prepared; the start-up sweep (`vm.blobrefs.collect_garbage`) takes
those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from core.blobs import BlobStore, blob_digest
from core.errors import DecodeError, InferchainError, StorageError
from core.tx import Transaction
from core.types import Hash32
from vm.app import VMApplication
from vm.assembly import AssemblyMemo, compute_assembly_key, prepare_assembly
from vm.blobrefs import list_garbage
from vm.deferred import REJECTED, get_deferred
from vm.state import Upload, upload_key
from vm.txs import ModelChunk, TxKind, UploadHeader

logger = logging.getLogger(__name__)

# Uploads followed at once, and keys remembered as tried: a bound on what hostile chunks can make this keep.
MAX_UPLOADS = 64
MAX_TRIED = 256
_MODEL_CHUNK = int(TxKind.MODEL_CHUNK)  # a plain int: the enum's attribute costs more than the comparison

class UploadAhead:
    """`note` is the mempool's add listener; `wake()` after a commit; `run` prepares what became whole."""

    def __init__(self, app: VMApplication, blobs: BlobStore, get_tx: Callable[[bytes], Transaction | None], *,
                 memo: AssemblyMemo | None = None) -> None:
        self._app = app
        self._blobs = blobs
        self._get_tx = get_tx
        self._memo = app.assembly_memo if memo is None else memo  # the memo the application's blocks ask
        self._noted: dict[bytes, dict[int, bytes]] = {}  # model id -> chunk index -> a mempool tx's hash
        self._tried: dict[bytes, None] = {}  # assembly keys prepared or found mismatched, oldest first
        self._digests: dict[bytes, Hash32] = {}  # a noted chunk tx's hash -> its chunk's digest, once prepared
        self._stored: dict[bytes, Hash32] = {}  # model id -> the blob prepared for it, until its upload closes
        self.dropped = 0  # prepared blobs listed as garbage: their upload closed without completing
        self._wanted = trio.Event()
        self._passed = trio.Event()
        self.prepared = 0  # uploads this node prepared ahead of their completing block

    def note(self, tx_hash: Hash32, tx: Transaction, from_client: bool, entered: int) -> None:
        if tx.kind != _MODEL_CHUNK:  # the mempool calls this for every transaction it takes: most are not chunks
            return
        try:
            chunk = ModelChunk.decode(tx.payload)
        except DecodeError:
            return
        mid = bytes(chunk.model_id)
        if mid not in self._noted and len(self._noted) >= MAX_UPLOADS:
            return
        self._noted.setdefault(mid, {})[int(chunk.index)] = bytes(tx_hash)
        self._wanted.set()

    def wake(self) -> None:
        self._wanted.set()

    async def next_pass(self) -> None:
        """Wait until the pass under way (or the next one) has finished."""
        await self._passed.wait()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            for mid in list(self._noted):
                found = self._gather(mid)
                if found is None or self._tried_already(*found):
                    continue
                try:
                    self._digests.update(await trio.to_thread.run_sync(self._prepare, mid, *found))
                except InferchainError as exc:  # this node's store: the block will compute it itself
                    logger.warning("preparing upload %s ahead: %s", mid.hex()[:16], exc)
            self._drop_closed()
            passed, self._passed = self._passed, trio.Event()
            passed.set()

    def _gather(self, mid: bytes) -> tuple[UploadHeader, list[Hash32 | None], dict[int, Transaction]] | None:
        """The header of upload `mid`, its committed chunks' hashes (None where not committed) and the others'
        mempool transactions by index, if every chunk is one or the other (on the event loop: the mempool is
        read there; the chunks are decoded in `_prepare`'s thread); None otherwise. Forgets uploads that
        closed and chunks that left."""
        noted = self._noted[mid]
        txs: dict[int, Transaction] = {}
        for index, tx_hash in list(noted.items()):
            tx = self._get_tx(tx_hash)
            if tx is None:
                del noted[index]
                self._digests.pop(tx_hash, None)
            else:
                txs[index] = tx
        view = self._app.view()
        upload = view.get(upload_key(Hash32(mid)), Upload)
        deferred, model = get_deferred(view, Hash32(mid)), view.model(Hash32(mid))
        if upload is None and ((deferred is not None and deferred.status != REJECTED) or model is not None):
            for tx_hash in noted.values():
                self._digests.pop(tx_hash, None)
            noted.clear()
            at = deferred.queued_at if deferred is not None else model.registered_at  # type: ignore[union-attr]
            logger.info("upload of model %s completed by block %d", mid.hex()[:16], int(at))
        if not noted:
            del self._noted[mid]
            return None
        if upload is not None:
            header: UploadHeader | None = upload.header
        else:  # the header's chunk (the first) waits in the mempool too
            first = self._decoded(mid, 0, txs)
            header = None if first is None else first.header
        if header is None:
            return None
        landed = [None if upload is None else upload.chunk_hash(i) for i in range(int(header.n_chunks))]
        missing = [i for i, h in enumerate(landed) if h is None]
        if any(i not in txs for i in missing):  # counted before anything is decoded: most passes stop here
            return None
        return header, landed, {i: txs[i] for i in missing}

    def _tried_already(self, header: UploadHeader, landed: list[Hash32 | None],
                       pending: dict[int, Transaction]) -> bool:
        """Whether this chunk list was prepared (or found mismatched) by an earlier pass, known from the digests
        that pass computed without decoding or hashing a chunk again; False when a pending chunk is new."""
        digests = [h if h is not None else self._digests.get(bytes(pending[i].hash)) for i, h in enumerate(landed)]
        if any(d is None for d in digests):
            return False
        key = compute_assembly_key(header, [d for d in digests if d is not None])
        return key in self._tried or self._memo.has(key)

    def _decoded(self, mid: bytes, index: int, txs: dict[int, Transaction]) -> ModelChunk | None:
        """Chunk `index` of upload `mid` from its mempool transaction; a payload that is not that chunk is
        forgotten."""
        tx = txs.get(index)
        chunk = None if tx is None else _chunk(tx)
        if chunk is None or bytes(chunk.model_id) != mid or int(chunk.index) != index:
            self._noted[mid].pop(index, None)
            return None
        return chunk

    def _drop_closed(self) -> None:
        """List as garbage the blobs prepared for uploads that closed without completing (no upload record,
        no pending or registered model, no chunk of it waiting in the mempool)."""
        if not self._stored:
            return
        view = self._app.view()
        dropped = []
        for mid, digest in list(self._stored.items()):
            if mid in self._noted or view.get(upload_key(Hash32(mid)), Upload) is not None:
                continue  # still open, or its chunks still wait
            del self._stored[mid]
            deferred, model = get_deferred(view, Hash32(mid)), view.model(Hash32(mid))
            if (deferred is not None and deferred.status != REJECTED) or model is not None:
                continue  # completed: a record names the blob
            if digest in self._stored.values():
                continue  # the same bytes prepared for another upload still open
            dropped.append(digest)
            logger.info("upload of model %s closed without completing: its prepared blob %s listed as garbage",
                        mid.hex()[:16], bytes(digest).hex()[:16])
        if dropped:
            list_garbage(self._app.store, dropped)
            self.dropped += len(dropped)

    def _prepare(self, mid: bytes, header: UploadHeader, landed: list[Hash32 | None],
                 pending_txs: dict[int, Transaction]) -> dict[bytes, Hash32]:
        """In a thread: decode the pending chunks and prepare the upload unless this key was tried; store its
        blob when it matches. The pending chunk transactions' digests, by transaction hash (`_tried_already`)."""
        pending: dict[int, bytes] = {}
        for i, tx in pending_txs.items():
            chunk = _chunk(tx)
            if chunk is None:  # the mempool took it as a chunk: not reached; the block will judge it
                return {}
            pending[i] = bytes(chunk.data)
        known = {i: blob_digest(data) for i, data in pending.items()}
        seen = {bytes(pending_txs[i].hash): d for i, d in known.items()}
        digests = [known[i] if h is None else h for i, h in enumerate(landed)]
        key = compute_assembly_key(header, digests)
        if key in self._tried or self._memo.has(key):
            return seen
        self._tried[key] = None
        while len(self._tried) > MAX_TRIED:
            del self._tried[next(iter(self._tried))]
        with self._memo.preparing(key) as mine:  # a block that misses it meanwhile waits for this answer
            if not mine:
                return seen
            chunks = [pending[i] if h is None else self._committed_chunk(h) for i, h in enumerate(landed)]
            model_bytes = prepare_assembly(header, chunks, self._memo)
        if model_bytes is None:
            return seen
        self._blobs.put_blobs({bytes(header.bytes_hash): model_bytes})
        self._stored[mid] = header.bytes_hash
        while len(self._stored) > MAX_UPLOADS:  # forgotten: left to the start-up sweep
            del self._stored[next(iter(self._stored))]
        self.prepared += 1
        logger.info("upload of %s prepared ahead: %d bytes in %d chunks", bytes(header.bytes_hash).hex()[:16],
                    len(model_bytes), len(landed))
        return seen

    def _committed_chunk(self, digest: Hash32) -> bytes:
        data = self._blobs.get_blob(digest)
        if data is None:
            raise StorageError(f"chunk blob {bytes(digest).hex()[:16]} is missing from this node")
        return data


def _chunk(tx: Transaction) -> ModelChunk | None:
    try:
        return ModelChunk.decode(tx.payload)
    except DecodeError:
        return None
