"""`CheckMemo`: an executor in front of the sandbox that answers a registration check it has already run.

A registration check (`CheckJob`: the model check, the ONNX Runtime session build and the golden runs) is a
pure function of the job: the model bytes, the spec (declared inputs, class, grid, tolerance and the chain's
sandbox caps and gas prices, everything the check reads from the parameters), the golden inputs and the gas
left for them, under this build's checker and runtime. The same completing chunk reaches the VM several times
in one height (round r's block, round r+1's block with another header, the proposer's own build, finalize),
so the sandbox's answer is kept, keyed by a digest of exactly those inputs, and reused: the same `JobResult`
object, hence the same verdict, gas and results. Inference jobs pass through untouched.

A local fault is not a decision: one fault raises out of `run_batch` and stores no answer, so the next block
runs the check again. But a check that faults on every node (its golden run needs more memory than this
node's workers have) would be run again by each validator at each activation, up to `vm.max_postponements`
+ 1 of them, each run costing a worker. So once the *same* check has faulted `FAULTS_DECIDED` times, each
time in a batch of its own (so no other job of a block can have caused it), this node has decided that it
cannot run it: the memo raises that LocalFault again without handing the job to the sandbox. It is still a
local fault, never an answer: the builder postpones, a validator accepts an undecided verdict (as when its
own check faults: docs/sandbox.md "Undecided verdicts") and cannot judge a decided one (prevote nil), so a
proposer can make no verdict out of it. The decided faults are an LRU of `capacity` keys.

A decision holds on the block path for one height: the *committed* height when the last fault happened
(`height`, read from the node's state, never a clock). Within it the rounds' blocks refuse the check without
running it; at a later height (the entry's next activation, after a postponement) the block path runs it once
again, and a fault then decides at once for that height (the count is kept), while an answer forgets the
faults. The background pass (`precompute_window`, after every commit) never runs a decided check again: at
any height, it would cost a worker per block. So a fault that will not recur (a worker killed from outside
twice) costs this node the activation it was decided in at most, not every later one up to
`vm.max_postponements`; a check that faults everywhere costs one run per activation height on the block
path (the background's first two runs aside) instead of two in all.

Two areas, each bounded: the LRU of recent checks (`capacity` entries and `max_bytes` of golden outputs),
and the *precomputed* answers of deferred registrations (vm/deferred.py), kept outside the LRU until their
entry leaves the window the node precomputes (`precompute_window`): however many synchronous checks pass
through in between, an answer computed ahead of its activation is still there at the activation height. The
window is the next `ahead` pending entries (node/precompute.py), so that area holds at most `ahead` answers.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata

import numpy as np

from core.errors import LocalFault
from vm.sandbox.executor import CheckJob, Executor, Job, JobResult

# Bumped with any change to what a check decides. The memo lives in one process, where the code cannot change
# under it; the version (with the runtime's) is in the key so that a memo ever kept longer could not outlive it.
CHECK_CODE_VERSION = 1
# Faults of the same check, each in a batch of its own, after which this node stops running it (`CheckMemo`).
FAULTS_DECIDED = 2
# How long a block path that misses a check waits for the background run of the same check under way
# (`precompute_window`) before running it itself: about what a big model's check costs on a loaded machine.
# Speed only, never a result: either way the answer is the same job's.
RUNNING_WAIT_S = 30.0


def _runtime_versions() -> bytes:
    """The pinned checker and runtime versions, read from package metadata (importing onnx or onnxruntime in
    the node process would cost ~1 s of CPU that the sandbox workers already pay)."""
    parts = []
    for name in ("onnx", "onnxruntime"):
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=?")
    return ";".join(parts).encode()


def _put(h: hashlib._Hash, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def _put_feeds(h: hashlib._Hash, feeds: Mapping[str, np.ndarray]) -> None:
    h.update(len(feeds).to_bytes(4, "big"))
    for name, value in feeds.items():  # in the job's order: the order the worker sees
        array = np.ascontiguousarray(value)
        _put(h, name.encode())
        _put(h, array.dtype.str.encode())
        _put(h, repr(tuple(int(d) for d in array.shape)).encode())
        _put(h, array.tobytes())


def compute_check_key(job: CheckJob, code: bytes, model_hash: bytes | None = None) -> bytes:
    """The digest of everything a check's answer depends on: the model's content hash (`model_hash` when the
    caller knows it: the SHA-256 of `job.model_bytes`), the spec (with the chain's sandbox caps and gas
    schedule, all integers and strings, so its repr is canonical within one build), the golden inputs, the
    gas left for them, and `code` (checker and runtime versions)."""
    h = hashlib.sha256(b"inferchain/check-memo/v1")
    _put(h, code)
    _put(h, hashlib.sha256(job.model_bytes).digest() if model_hash is None else model_hash)
    _put(h, repr(job.spec).encode())
    h.update(len(job.golden_inputs).to_bytes(4, "big"))
    for feeds in job.golden_inputs:
        _put_feeds(h, feeds)
    h.update(int(job.gas_left).to_bytes(16, "big", signed=True))
    return h.digest()


def compute_result_bytes(result: JobResult) -> int:
    """What a kept answer costs beyond its fixed part: the bytes of its golden outputs."""
    return sum(int(array.nbytes) for outputs in result.golden or () for array in (outputs or {}).values())


def _frozen(result: JobResult) -> JobResult:
    """The result with its arrays made read-only: one object is handed to every later caller."""
    for outputs in result.golden or ():
        for array in (outputs or {}).values():
            array.flags.writeable = False
    return result


class CheckMemo:
    """An `Executor` that memoizes registration checks (an LRU of `capacity` results holding at most
    `max_bytes` of golden outputs, plus the precomputed deferred answers) and forwards everything else, in one
    `run_batch` of the wrapped executor per call. `hits` and `misses` count checks answered from the memo and
    checks sent to the sandbox."""

    def __init__(self, executor: Executor, capacity: int = 8, max_bytes: int = 64 << 20,
                 height: Callable[[], int] | None = None) -> None:
        """`height`: the node's committed height (a decided fault holds at the height it was decided at);
        None: one height for ever (a memo outside a node: tools, tests)."""
        self.executor = executor
        self._height: Callable[[], int] = height or (lambda: 0)
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._items: OrderedDict[bytes, JobResult] = OrderedDict()
        self._item_bytes: dict[bytes, int] = {}
        self._bytes = 0
        # Deferred registrations' answers computed ahead (`precompute_window`): never evicted by the LRU.
        self._ahead: dict[bytes, JobResult] = {}
        self._lock = threading.Lock()
        self._code = f"check={CHECK_CODE_VERSION};".encode() + _runtime_versions()
        self.hits = 0
        self.misses = 0
        self.precomputed = 0  # checks answered ahead by `precompute` (deferred registrations)
        # Known SHA-256s of model bytes about to be checked, by the bytes object's id (the object is kept, so
        # its id cannot be reused while listed): a 100 MB model is not hashed again for its key.
        self._digests: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self.hashed = 0  # keys for which the model bytes were hashed here
        # Checks that faulted when run alone: (faults, the first fault's message, the committed height of the
        # last one), an LRU of `capacity` keys.
        self._faults: OrderedDict[bytes, tuple[int, str, int]] = OrderedDict()
        self.faults_answered = 0  # batches refused with a decided fault, nothing handed to the sandbox
        # Keys `precompute_window` is computing now: a block path that misses one waits for it (`run_batch`).
        self._running: dict[bytes, threading.Event] = {}
        self.waiting = 0  # block paths waiting for a background run now
        self.waited = 0  # checks a block path took from a background run it waited for

    def __len__(self) -> int:
        with self._lock:
            return len(self._items) + len(self._ahead)

    @property
    def kept_bytes(self) -> int:
        """Golden-output bytes held by the LRU (the precomputed area is bounded by its window instead)."""
        with self._lock:
            return self._bytes

    def _keep(self, key: bytes, result: JobResult) -> None:
        """Into the LRU (lock held), evicting the least recently used past `capacity` or `max_bytes`; an answer
        larger than `max_bytes` alone is not kept."""
        size = compute_result_bytes(result)
        if size > self._max_bytes:
            return
        self._bytes -= self._item_bytes.pop(key, 0)
        self._items[key] = _frozen(result)
        self._items.move_to_end(key)
        self._item_bytes[key] = size
        self._bytes += size
        while len(self._items) > self._capacity or self._bytes > self._max_bytes:
            old, _ = self._items.popitem(last=False)
            self._bytes -= self._item_bytes.pop(old)

    def _note_fault(self, key: bytes, fault: LocalFault, height: int) -> None:
        """The check under `key` faulted in a batch of its own at committed height `height` (lock held)."""
        count, message, _ = self._faults.pop(key, (0, str(fault), height))
        self._faults[key] = (count + 1, message, height)
        while len(self._faults) > self._capacity:
            self._faults.popitem(last=False)

    def _decided_fault(self, key: bytes, height: int, *, background: bool = False) -> LocalFault | None:
        """The fault this node decided it cannot get past for `key` (lock held), or None: never decided, or, on
        the block path at committed height `height`, decided at an earlier height (the check runs once
        again). The background pass takes a decision of any height."""
        count, message, at = self._faults.get(key, (0, "", 0))
        if count < FAULTS_DECIDED or (at != height and not background):
            return None
        self._faults.move_to_end(key)
        return LocalFault(f"{message} (this check faulted {count} times alone on this node, the last after "
                          f"height {at}: not run again there)")

    def faults(self, job: CheckJob) -> int:
        """How many times `job`'s check faulted here alone (0: never, forgotten, or answered since)."""
        key = self._key(job)
        with self._lock:
            return self._faults.get(key, (0, "", 0))[0]

    def note_digest(self, model_bytes: bytes, digest: bytes) -> None:
        """`digest` is the SHA-256 of `model_bytes` (the VM checked it against the upload header): the key of a
        job carrying this very object uses it."""
        with self._lock:
            self._digests[id(model_bytes)] = (model_bytes, bytes(digest))
            while len(self._digests) > 8:
                self._digests.popitem(last=False)

    def _key(self, job: CheckJob) -> bytes:
        with self._lock:
            known = self._digests.get(id(job.model_bytes))
        if known is not None and known[0] is job.model_bytes:
            return compute_check_key(job, self._code, known[1])
        with self._lock:
            self.hashed += 1
        return compute_check_key(job, self._code)

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        # Keys first, outside the lock: hashing a large model's bytes takes tens of milliseconds.
        keys = {i: self._key(job) for i, job in enumerate(jobs) if isinstance(job, CheckJob)}
        height = self._height() if keys else 0
        results: dict[int, JobResult] = {}
        with self._lock:
            for i, key in keys.items():
                decided = self._decided_fault(key, height)
                if decided is not None:  # the batch would fault on it: this node cannot decide it
                    self.faults_answered += 1
                    raise decided
                hit = self._ahead.get(key)
                if hit is None:
                    hit = self._items.get(key)
                    if hit is not None:
                        self._items.move_to_end(key)
                if hit is not None:
                    self.hits += 1
                    results[i] = hit
            running = {i: self._running[key] for i, key in keys.items() if i not in results and key in self._running}
            self.waiting += bool(running)
        if running:
            self._wait_for_running(running, keys, results)
        with self._lock:
            self.misses += len(keys) - len(results)
        forward = [i for i in range(len(jobs)) if i not in results]
        # Raises LocalFault when this node cannot decide: no answer is kept, and the fault is counted only
        # against a check that ran alone (a fault in a larger batch may be another job's).
        try:
            answered = self.executor.run_batch([jobs[i] for i in forward]) if forward else []
        except LocalFault as fault:
            if len(forward) == 1 and forward[0] in keys:
                with self._lock:
                    self._note_fault(keys[forward[0]], fault, height)
            raise
        with self._lock:
            for i, result in zip(forward, answered, strict=True):
                results[i] = result
                if i in keys:
                    self._keep(keys[i], result)
                    self._faults.pop(keys[i], None)  # it ran: what faulted before did not recur
        return [results[i] for i in range(len(jobs))]

    def _wait_for_running(self, running: Mapping[int, threading.Event], keys: Mapping[int, bytes],
                          results: dict[int, JobResult]) -> None:
        """The background runs of these very checks: their answers, not a second run alongside (at most
        RUNNING_WAIT_S each; an answer not there then, or a fault, leaves the check to the caller)."""
        try:
            for i, event in running.items():
                event.wait(RUNNING_WAIT_S)
                with self._lock:
                    hit = self._ahead.get(keys[i])
                    if hit is not None:
                        self.hits += 1
                        self.waited += 1
                        results[i] = hit
        finally:
            with self._lock:
                self.waiting -= 1

    def precompute_window(self, jobs: Sequence[CheckJob], executor: Executor) -> int:
        """Keep the answers of exactly `jobs` (the pending deferred registrations the node checks ahead, in
        activation order) outside the LRU until a later window no longer lists them, computing on `executor`
        (a node's background worker, not the pool the block path waits on) those not known yet, under the keys
        their activation's jobs will have. How many ran; a local fault raises out of `executor` (counted against
        its check), and what was computed before it is kept; a check whose fault is decided is skipped."""
        keys = [self._key(job) for job in jobs]
        height = self._height() if keys else 0
        with self._lock:
            self._ahead = {key: self._ahead[key] for key in keys if key in self._ahead}
            for key in keys:  # already in the LRU (a check computed on the block path): moved out of its reach
                if key not in self._ahead and key in self._items:
                    self._ahead[key] = self._items.pop(key)
                    self._bytes -= self._item_bytes.pop(key)
        ran = 0
        for key, job in zip(keys, jobs, strict=True):
            with self._lock:
                if key in self._ahead or self._decided_fault(key, height, background=True) is not None:
                    continue
                running = self._running[key] = threading.Event()
            try:
                [result] = executor.run_batch([job])
            except LocalFault as fault:  # alone on the background worker: counted as the block path's are
                with self._lock:
                    self._note_fault(key, fault, height)
                raise
            else:
                with self._lock:
                    self._ahead[key] = _frozen(result)
                    self._faults.pop(key, None)
                    self.precomputed += 1
            finally:
                with self._lock:
                    del self._running[key]
                running.set()  # a block path waiting for it takes the answer, or runs it itself after a fault
            ran += 1
        return ran

    def close(self) -> None:
        self.executor.close()
