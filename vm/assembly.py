"""A completed upload as the block path sees it: its size, hash verdict and parse facts, from a memo filled ahead.

The chunk that completes an upload used to make every execution of its block (each round's build, every
validator's validation, the apply) read all the chunks back, hash the ~100 MB, parse it for the check's price
and keep a copy to write at commit: seconds on a loaded machine, per node, per round. All of that is a pure
function of the upload's chunk list (each chunk named by its SHA-256 in the upload record, the completing one
by the hash the block computes of its bytes anyway): `compute_facts` computes it, and an `AssemblyMemo` keeps
its answers under `compute_assembly_key` (the header's hash and size and the chunk hashes in order). Each VM
application owns one (`VMApplication.assembly_memo`, handed to its executions through `BlockContext`), so two
applications in one process (tests, in-process devnets) never share answers or waits. The node fills it ahead, from the committed chunks and the mempool's (node/uploadahead.py), and writes the whole
model's blob then; the block path asks the memo (`assemble_upload`) and on a miss computes the same answer
itself, and keeps it for the next execution. So a hit and a miss give one result; only the time differs.
Only uploads whose bytes match their header are memoized: a mismatch stays on the slow path it always took.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from core.blobs import blob_digest
from core.types import Hash32
from vm.state import StateView, Upload
from vm.txs import UploadHeader

# Bumped with any change to what `compute_assembly` decides (the facts' parser); part of every key.
ASSEMBLY_CODE_VERSION = 1
# How long a block path that misses waits for a preparation of the same upload under way (node/uploadahead.py)
# before computing it itself: about what computing it costs on a loaded machine. Speed only, never a result.
PREPARATION_WAIT_S = 20.0


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What the completing chunk's rules read of the whole model: its size, whether it is the model the
    header names (`total_bytes` long, hashing to `bytes_hash`), and the parse facts that price its check
    (`vm.sandbox.meter.check_facts`: graph nodes, propagated initializer elements; 0, 0 if it does not parse)."""

    size: int
    matches: bool
    nodes: int
    elements: int


@dataclass(frozen=True, slots=True)
class Assembly:
    """A completed upload: its facts, its chunks' digests in order, and its bytes when this execution had to
    read them (a memo miss); `model_bytes` reads them on demand otherwise."""

    facts: ModelFacts
    parts: tuple[Hash32, ...]
    data: bytes | None

    def model_bytes(self, view: StateView) -> bytes:
        """The whole model: the bytes this execution assembled, or its chunks read from `view` now."""
        if self.data is not None:
            return self.data
        return b"".join(view.get_blob(d) for d in self.parts)


def compute_assembly_key(header: UploadHeader, parts: Sequence[bytes]) -> bytes:
    """The digest of everything an assembly's facts depend on: the header's hash and size, the chunks' hashes
    in order, and this build's parser (ASSEMBLY_CODE_VERSION)."""
    h = hashlib.sha256(b"inferchain/assembly/v1")
    h.update(ASSEMBLY_CODE_VERSION.to_bytes(4, "big"))
    h.update(bytes(header.bytes_hash))
    h.update(int(header.total_bytes).to_bytes(8, "big"))
    h.update(len(parts).to_bytes(4, "big"))
    for digest in parts:
        h.update(bytes(digest))
    return h.digest()


def compute_facts(header: UploadHeader, model_bytes: bytes) -> ModelFacts:
    """The facts of `model_bytes` as the upload `header`'s model: the one rule (pure)."""
    from vm.sandbox.meter import check_facts  # onnx's protobuf: loaded on the first registration

    nodes, elements = check_facts(model_bytes)
    matches = len(model_bytes) == int(header.total_bytes) and blob_digest(model_bytes) == header.bytes_hash
    return ModelFacts(len(model_bytes), matches, nodes, elements)


class AssemblyMemo:
    """A bounded, thread-safe map from `compute_assembly_key` to the facts of matching uploads."""

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._facts: OrderedDict[bytes, ModelFacts] = OrderedDict()
        self._preparing: dict[bytes, threading.Event] = {}  # keys a preparation is computing now
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.waiting = 0  # block paths waiting for a preparation now
        self.waited = 0  # misses answered by a preparation they waited for

    def get(self, key: bytes) -> ModelFacts | None:
        with self._lock:
            facts = self._facts.get(key)
            if facts is None:
                self.misses += 1
            else:
                self.hits += 1
                self._facts.move_to_end(key)
            return facts

    def has(self, key: bytes) -> bool:
        with self._lock:
            return key in self._facts

    def put(self, key: bytes, facts: ModelFacts) -> None:
        """Keep `facts` (only a matching upload's: a mismatch is never memoized)."""
        if not facts.matches:
            return
        with self._lock:
            self._facts[key] = facts
            self._facts.move_to_end(key)
            while len(self._facts) > self._capacity:
                self._facts.popitem(last=False)

    @contextmanager
    def preparing(self, key: bytes) -> Iterator[bool]:
        """Mark `key` as being computed ahead while the block is entered (yields False, and marks nothing,
        when it is known or already under way): a block path that misses it meanwhile waits for this answer
        (`wait`) instead of computing the same one alongside."""
        with self._lock:
            if key in self._facts or key in self._preparing:
                mine = None
            else:
                mine = self._preparing[key] = threading.Event()
        try:
            yield mine is not None
        finally:
            if mine is not None:
                with self._lock:
                    del self._preparing[key]
                mine.set()

    def wait(self, key: bytes, timeout_s: float) -> ModelFacts | None:
        """The facts of `key` once a preparation under way finishes (at most `timeout_s`); None when none is
        under way, it found a mismatch, or it took longer. Only how long the caller waits depends on timing:
        a None makes it compute the same answer itself."""
        with self._lock:
            event = self._preparing.get(key)
            if event is not None:
                self.waiting += 1
        if event is None:
            return None
        try:
            if not event.wait(timeout_s):
                return None
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            facts = self._facts.get(key)
            self.waited += facts is not None
            return facts

    def clear(self) -> None:
        with self._lock:
            self._facts.clear()


def upload_parts(upload: Upload, index: int, digest: Hash32) -> tuple[Hash32, ...]:
    """The chunk hashes of `upload` once chunk `index` (hashing to `digest`) lands: every chunk listed."""
    parts = []
    for i in range(upload.header.n_chunks):
        landed = digest if i == index else upload.chunk_hash(i)
        assert landed is not None, "an upload completes only when every other chunk landed"
        parts.append(landed)
    return tuple(parts)


def assemble_upload(view: StateView, upload: Upload, index: int, data: bytes, digest: Hash32,
                    memo: AssemblyMemo | None) -> Assembly:
    """The upload completed by chunk `index` (`data`, hashing to `digest`): from `memo` when the node
    prepared it, else read, hashed and parsed here (and memoized when it matches its header). `memo` None
    (an execution outside a VM application: tools, benches): always computed here, nothing kept."""
    parts = upload_parts(upload, index, digest)
    key = compute_assembly_key(upload.header, parts)
    facts = None if memo is None else memo.get(key)
    if facts is None and memo is not None:
        facts = memo.wait(key, PREPARATION_WAIT_S)
    if facts is not None:
        return Assembly(facts, parts, None)
    model_bytes = b"".join(data if i == index else view.get_blob(d) for i, d in enumerate(parts))
    facts = compute_facts(upload.header, model_bytes)
    if memo is not None:
        memo.put(key, facts)
    return Assembly(facts, parts, model_bytes)


def prepare_assembly(header: UploadHeader, chunks: Sequence[bytes], memo: AssemblyMemo) -> bytes | None:
    """Ahead of the block (node/uploadahead.py, within `memo.preparing` of its key): compute and memoize the
    facts of the upload whose chunks, in order, are `chunks`. Returns the whole model when it matches its
    header (the caller stores its blob), else None (nothing kept: the block computes the rejection itself)."""
    parts = tuple(blob_digest(c) for c in chunks)
    key = compute_assembly_key(header, parts)
    model_bytes = b"".join(chunks)
    facts = compute_facts(header, model_bytes)
    if not facts.matches:
        return None
    memo.put(key, facts)
    return model_bytes
