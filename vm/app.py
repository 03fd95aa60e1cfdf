"""`VMApplication`: the VM behind `core.app.Application`, over the node's KVStore.

It owns the authenticated state map, the sandbox executor (a worker pool unless one is passed in), the
signature caches and the per-height PoI challenge outputs. Executions computed by `build_block` and
`validate_block` are kept by block id, so `finalize_block` only stages their writes and a block already
executed on the same state is not executed again; a block it has not seen (block sync, replay) is applied
with the pure `apply_block`, which never runs a model. Registration checks go through `vm.checkmemo`, so a
completing chunk proposed again in a later round is not checked again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.app import AppInfo, BlockTemplate, FinalizeOutcome, Verdict
from core.blobs import BlobStore, MemoryBlobs
from core.block import Block, ProposalBlock
from core.codec import Wire, wire
from core.errors import InvalidBlock, LocalFault, StorageError
from core.evidence import Evidence, WrongInference, evidence_hash, evidence_height
from core.hashing import ZERO_HASH, sha256
from core.header import TxResult
from core.state import AuthenticatedMap, StateUpdate
from core.store import KeySpace, KVStore
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Hash32, Height, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import Vote
from vm import upgrades
from vm.apply import apply_block
from vm.assembly import AssemblyMemo
from vm.blobrefs import collect_garbage, stage_blob_changes
from vm.build import build_block
from vm.checkmemo import CheckMemo
from vm.deferred import PENDING, get_deferred, pending_in_order
from vm.engine import Engine, challenge_for, deferred_check_job, sandbox_limits
from vm.evidence import is_wrong_inference, make_wrong_inference, precheck_wrong_inference
from vm.execute import BlockContext, admission_error
from vm.genesis import Genesis, GenesisModel, genesis_state
from vm.gov.store import get_upgrade_plan
from vm.params import Params
from vm.poi import compute_commitment
from vm.process import select_punishable
from vm.retire import get_evidence_model
from vm.sandbox.executor import Executor
from vm.state import Account, BlobChanges, ModelRecord, StateView
from vm.validate import Checks, is_equivocation, validate_block

if TYPE_CHECKING:
    from core.store import WriteBatch

logger = logging.getLogger(__name__)

META_KEY = bytes([KeySpace.META]) + b"vm/app"


@wire(max_bytes=64)
class AppMeta(Wire):
    """The id of the last applied block: not part of the state (a block's id depends on its state root)."""

    height: Height
    block_id: Hash32


@dataclass(frozen=True, slots=True)
class Execution:
    """A block executed on a known base version, ready to be staged by `finalize_block`."""

    base_version: int
    update: StateUpdate
    validator_updates: tuple[ValidatorEntry, ...]
    punished: tuple[Evidence, ...]
    blobs: BlobChanges


class _LRU:
    """A small bounded cache of booleans (signature checks), safe across threads."""

    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[bytes, bool] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def check(self, key: bytes, compute: Callable[[], bool]) -> bool:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value


class VMApplication:
    """The application of docs/design.md §1 over one LevelDB (`store`).

    `executor`: the sandbox's `WorkerPool` on a node (created here with `workers` processes when None),
    `LocalExecutor` in tools. `verify_tx(tx, tx_hash)`: the node's shared signature cache
    (`node.sigcache.SigCache.verify` has that signature), else an internal one. `alarm`: called with one line on every local fault (a worker failure, a quarantined model).
    """

    def __init__(self, store: KVStore, genesis: Genesis, *, executor: Executor | None = None, workers: int = 1,
                 verify_tx: Callable[[Transaction, Hash32], bool] | None = None,
                 alarm: Callable[[str], None] | None = None, blobs: BlobStore | None = None,
                 body_checked: Callable[[Block], bool] | None = None) -> None:
        self.store = store
        # Whether the node ran `validate_basic` on this very block object (node.blockcheck.BlockChecks): the
        # header's hashes are then compared with the body once per node, not again here.
        self._body_checked: Callable[[Block], bool] = body_checked or (lambda block: False)
        # Model bytes; a node passes its node.blobstore.FileBlobStore, tools keep them in memory.
        self.blobs: BlobStore = MemoryBlobs() if blobs is None else blobs
        self._blob_changes: OrderedDict[tuple[int, bytes], BlobChanges] = OrderedDict()
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.state_map = AuthenticatedMap(store)
        if executor is None:
            from vm.sandbox.limits import WorkerLimits
            from vm.sandbox.worker import WorkerPool

            # The pool's memory budget counts the resident models the chain lets every validator pin.
            executor = WorkerPool(size=workers,
                                  limits=WorkerLimits(resident_model_bytes=int(genesis.params.vm.max_resident_bytes)))
        self.executor = executor
        # Registration checks are memoized in front of the sandbox: one completing chunk reaches the VM in
        # every round's block, the proposer's build and finalize (vm/checkmemo.py).
        self.check_memo = CheckMemo(executor, height=lambda: self.state_map.latest_version() or 0)
        # Completed uploads' facts, computed ahead (node/uploadahead.py) or by the first execution: this
        # application's own (vm/assembly.py), so another application in the process never shares it.
        self.assembly_memo = AssemblyMemo()
        self._preload_failed: set[bytes] = set()  # resident models this node could not load ahead
        self.engine = Engine(self.check_memo, self._model_bytes, note_digest=self.check_memo.note_digest,
                             assembly=self.assembly_memo)
        self._tx_sigs = _LRU(200_000)
        self._vote_sigs = _LRU(20_000)
        self._confirmed: OrderedDict[bytes, None] = OrderedDict()  # hashes of proven wrong-inference evidence
        self._verify_tx: Callable[[Transaction, Hash32], bool] = verify_tx or (
            lambda tx, tx_hash: self._tx_sigs.check(tx_hash, tx.verify_signature))
        self._alarm = alarm or (lambda line: logger.error("VM local fault: %s", line))
        self._challenges: OrderedDict[tuple[int, bytes], Tensor | None] = OrderedDict()
        self._executions: OrderedDict[bytes, Execution] = OrderedDict()
        self.reused_executions = 0  # validations answered from `_executions` (diagnostics and tests)
        # Blocks `finalize_block` staged from a stored execution ("reused") or had to execute again: one this
        # node never executed ("unexecuted": not validated, e.g. decided by peers' precommits or synced, or
        # evicted) or executed on another state version ("other_base"). The node's metrics show them.
        self.finalize_counts: dict[str, int] = {"reused": 0, "unexecuted": 0, "other_base": 0}
        self._wrong_exact: OrderedDict[bytes, tuple[int, ...]] = OrderedDict()
        self._build_faults: OrderedDict[bytes, tuple[Hash32, ...]] = OrderedDict()
        self._lock = threading.RLock()
        self._vsets: OrderedDict[int, ValidatorSet] = OrderedDict()
        self._params: tuple[int, Params] | None = None
        if self.state_map.latest_version() is None:
            self._init_genesis()
        elif self._view(0).params() != genesis.params:  # governance changes the latest ones
            raise StorageError("the database holds another chain's state (parameters differ from genesis)")
        self._restore_genesis_blobs()
        collect_garbage(self.store, self.blobs, sweep=True)

    # ------------------------------------------------------------------------------------------ setup

    def _init_genesis(self) -> None:
        view = genesis_state(self.genesis, self._genesis_gas)
        update = self.state_map.compute_update(None, 0, view.changes())
        with self.store.write_batch(sync=True) as batch:
            stage_blob_changes(self.store, self.blobs, batch, view.blob_changes())
            self.state_map.stage(batch, update)
            batch.put(META_KEY, AppMeta(Height(0), ZERO_HASH).encode())

    def _restore_genesis_blobs(self) -> None:
        """Genesis models' bytes come with the genesis file: a blob store that lacks them (a new directory, an
        in-memory store over a kept database) gets them back from there rather than from peers."""
        missing = {bytes(sha256(m.model_bytes)): m.model_bytes for m in self.genesis.models}
        missing = {d: data for d, data in missing.items() if self.blobs.size(Hash32(d)) is None}
        if missing:
            self.blobs.put_blobs(missing)

    def _genesis_gas(self, model: GenesisModel) -> tuple[int, int]:
        """The model's checked gas per call and its load gas, from the sandbox: its worker process holds the ONNX
        checker anyway (for the PoI challenge), so starting a chain does not load onnx into the node process."""
        from vm.engine import model_load_gas, model_spec
        from vm.sandbox.executor import CheckJob

        limits = sandbox_limits(self.genesis.params)
        [result] = self.executor.run_batch([CheckJob(model.model_bytes, model_spec(model.meta, limits))])
        if result.info is None:
            raise result.error or LocalFault("the sandbox returned no verdict on a genesis model")
        return result.info.gas_per_call, model_load_gas(limits.gas, model.meta, len(model.model_bytes), result.info)

    def close(self) -> None:
        self.engine.close()

    # ------------------------------------------------------------------------------------------ reads

    @property
    def last_height(self) -> int:
        latest = self.state_map.latest_version()
        if latest is None:
            raise StorageError("state is not initialised")
        return latest

    def _view(self, version: int | None = None) -> StateView:
        return StateView(self.state_map, self.last_height if version is None else version, self.blobs)

    def view(self, version: int | None = None) -> StateView:
        """A read-only view of the committed state at `version` (default: the latest)."""
        return self._view(version)

    def _meta(self) -> AppMeta:
        raw = self.store.get(META_KEY)
        if raw is None:
            raise StorageError("application metadata missing")
        return AppMeta.decode(raw)

    def _model_bytes(self, model_id: Hash32) -> bytes:
        view = self._view()
        record = get_evidence_model(view, model_id)  # a retired model's bytes too, for evidence about it
        if record is None:
            raise LookupError(f"model {model_id.hex()[:16]} is not registered")
        return view.model_bytes(record)

    def info(self) -> AppInfo:
        version = self.last_height
        meta = self._meta()
        chain = self._view(version).chain()
        return AppInfo(self.chain_id, Height(version), meta.block_id, Timestamp(chain.time),
                       self.state_map.root(version))

    def validator_set(self, height: Height | int) -> ValidatorSet:
        h = int(height)
        with self._lock:
            cached = self._vsets.get(h)
        if cached is not None:  # the set of a height never changes once it is known
            return cached
        last = self.last_height
        if h < 1 or h > last + 2:
            raise ValueError(f"validator set of height {h} is not known (last height {last})")
        version = last if h >= last - 5 else max(0, h - 2)
        vset = ValidatorSet(self._view(version).validator_list(h))
        with self._lock:
            self._vsets[h] = vset
            while len(self._vsets) > 64:
                self._vsets.popitem(last=False)
        return vset

    # ------------------------------------------------------------------------------------------ PoI

    def _prev_block_id(self, height: int) -> Hash32:
        """Id of block height-1, for heights up to last+1."""
        last = self.last_height
        if height == 1:
            return ZERO_HASH
        if height - 1 == last:
            return self._meta().block_id
        chain = self._view(last).chain()
        if height == last:
            return chain.last_block_id
        if height == last - 1:
            return chain.prev_block_id
        return self._view(height).chain().last_block_id  # chain record of version h holds id(h-1)

    def challenge_output(self, height: int) -> Tensor | None:
        """This node's output for the PoI challenge of `height` (cached), or None when it cannot run it."""
        prev = self._prev_block_id(height)
        key = (height, bytes(prev))
        with self._lock:
            if key in self._challenges:
                return self._challenges[key]
        try:
            # On the state block `height` was built on, not the latest: governance changes the PoI models,
            # and every node must pose the same challenge whenever it computes it.
            view = self._view(height - 1)
            challenge = challenge_for(view, self.chain_id, height, prev)
            outputs = self.engine.run_challenge(challenge, view.params())
            output: Tensor | None = outputs[0] if outputs else None
        except LocalFault as fault:
            self._alarm(f"PoI challenge {height}: {fault}")
            return None
        with self._lock:
            self._challenges[key] = output
            while len(self._challenges) > 8:
                self._challenges.popitem(last=False)
        return output

    def poi_commitment(self, height: Height | int, validator: Address) -> Hash32 | None:
        output = self.challenge_output(int(height))
        return None if output is None else compute_commitment(output, validator, int(height))

    # ------------------------------------------------------------------------------------------ blocks

    def _remember(self, block_id: bytes, execution: Execution) -> None:
        with self._lock:
            self._executions[block_id] = execution
            while len(self._executions) > 16:
                self._executions.popitem(last=False)

    def _compute_update_for(self, height: int) -> Callable[[StateView], StateUpdate]:
        def compute(view: StateView) -> StateUpdate:
            update = view.compute_update(self.state_map, height)
            # The view's blobs go with its update to `finalize_block`; the same base and root name the same
            # blobs (the state lists their hashes), so that pair is the key.
            with self._lock:
                self._blob_changes[(int(view.version or 0), bytes(update.root))] = view.blob_changes()
                while len(self._blob_changes) > 32:
                    self._blob_changes.popitem(last=False)
            return update

        return compute

    def _blobs_of(self, version: int, update: StateUpdate) -> BlobChanges:
        with self._lock:
            changes = self._blob_changes.get((version, bytes(update.root)))
        if changes is None:
            raise LocalFault("the blobs of an executed block were forgotten")
        return changes

    def _usable_evidence(self, evidence: Sequence[Evidence], ctx: BlockContext) -> list[Evidence]:
        """The proposer's filter: what proves its offence, then what `validate_block` accepts (the one
        stateful rule, `vm.process.evidence_problem`, applied in order on a scratch view)."""
        proven = [ev for ev in evidence if self.is_valid_evidence(ev)]
        return select_punishable(self._view(), ctx, proven)

    def build_block(self, template: BlockTemplate, txs: Sequence[Transaction]) -> Block:
        """Raises LocalFault when this node cannot compute the PoI reveal the block must carry, or when its
        state already moved past the template (a commit landed while the build waited for its thread)."""
        version = self.last_height
        h = int(template.height)
        if h <= version:
            raise LocalFault(f"cannot build block {h}: state is already at height {version}")
        if h != version + 1:
            raise ValueError(f"cannot build block {h} on state at height {version}")
        params = self._view(version).params()
        reveal = None
        if h >= 3:
            reveal = self.challenge_output(h - 2)
            if reveal is None:
                raise LocalFault(f"cannot compute the PoI reveal for height {h - 2}")
        ctx = BlockContext(template.chain_id, template.height, template.time, template.proposer, params,
                           self.assembly_memo)
        evidence = self._usable_evidence(template.evidence, ctx)
        built = build_block(lambda: self._view(version), self._compute_update_for(h), template, txs, self.engine,
                            verify=self._verify_tx, reveal=reveal, evidence=evidence)
        for fault in built.faults:
            self._alarm(f"building block {h}: {fault}")
        if built.faulted:
            with self._lock:
                self._build_faults[bytes(built.block.id)] = built.faulted
                while len(self._build_faults) > 16:
                    self._build_faults.popitem(last=False)
        self._remember(built.block.id, Execution(version, built.update, built.validator_updates, built.punished,
                                                 self._blobs_of(version, built.update)))
        return built.block

    def build_faults(self, block: Block) -> tuple[Hash32, ...]:
        """Hashes of the transactions `build_block` left out of `block` because their model work met a local
        fault on this node (a worker killed, out of time or memory); asked once per built block."""
        with self._lock:
            return self._build_faults.pop(bytes(block.id), ())

    def validate_block(self, block: Block) -> Verdict:
        version = self.last_height
        h = int(block.height)
        if self._executed(block, version):
            return Verdict.valid()
        meta = self._meta()
        checks = Checks(
            chain_id=self.chain_id,
            last_block_id=meta.block_id,
            verify_tx=self._verify_tx,
            verify_vote=self._verify_vote,
            reveal=lambda: self._required_reveal(h),
            is_wrong_inference=self._is_wrong_inference_strict,
            is_body_checked=self._body_checked,
        )
        validated = validate_block(lambda: self._view(version), self._compute_update_for(h), block, self.engine,
                                   checks)
        if validated.verdict.kind.value == "local_fault":
            self._alarm(f"validating block {h}: {validated.verdict.reason}")
        if validated.wrong_exact:
            with self._lock:
                self._wrong_exact[bytes(block.id)] = validated.wrong_exact
                while len(self._wrong_exact) > 16:
                    self._wrong_exact.popitem(last=False)
        if validated.update is not None:
            self._remember(block.id, Execution(version, validated.update, validated.validator_updates,
                                               validated.punished, self._blobs_of(version, validated.update)))
        return validated.verdict

    def _executed(self, block: Block, version: int) -> bool:
        """Whether `block` was already executed, and so found valid, on this state version: built here, or
        validated before (a later round re-proposing the same block, Tendermint's proof-of-lock case). Its id
        is its header's hash, which covers the parent, the state root and the body's hashes; the body is
        checked against the header again, since a peer may send another body under a known header."""
        with self._lock:
            execution = self._executions.get(bytes(block.id))
        if execution is None or execution.base_version != version:
            return False
        if self._body_checked(block):
            with self._lock:
                self.reused_executions += 1
            return True
        try:
            block.validate_basic()
        except InvalidBlock:
            return False  # the full validation gives the verdict
        with self._lock:
            self.reused_executions += 1
        return True

    def _required_reveal(self, height: int) -> Tensor | None:
        reveal = self.challenge_output(height - 2)
        if reveal is None:
            raise LocalFault(f"cannot compute the PoI output of height {height - 2}")
        return reveal

    def finalize_block(self, block: Block, batch: WriteBatch) -> FinalizeOutcome:
        version = self.last_height
        h = int(block.height)
        with self._lock:
            execution = self._executions.get(bytes(block.id))
            path = "unexecuted" if execution is None else "reused" if execution.base_version == version \
                else "other_base"
            self.finalize_counts[path] += 1
        if execution is None or execution.base_version != version:
            view = self._view(version)
            result = apply_block(view, block, self._verify_tx, body_checked=self._body_checked(block),
                                 assembly=self.assembly_memo)
            update = view.compute_update(self.state_map, h)
            execution = Execution(version, update, result.validator_updates, result.punished, view.blob_changes())
        if execution.update.root != block.header.state_root:
            raise InvalidBlock(f"block {h}: applying it gives another state root than its header")
        collect_garbage(self.store, self.blobs)  # what the last commit stopped naming; that batch is durable
        stage_blob_changes(self.store, self.blobs, batch, execution.blobs)  # blobs fsynced before the state
        self.state_map.stage(batch, execution.update)
        batch.put(META_KEY, AppMeta(Height(h), block.id).encode())
        with self._lock:
            self._executions.pop(bytes(block.id), None)
        return FinalizeOutcome(Height(h), execution.update.root, execution.validator_updates, execution.punished)

    # ------------------------------------------------------------------------------------------ evidence

    def _verify_vote(self, vote: Vote) -> bool:
        return self._vote_sigs.check(vote.hash, lambda: vote.verify_signature(self.chain_id))

    def _validator_set_or_none(self, height: Height) -> ValidatorSet | None:
        try:
            return self.validator_set(height)
        except (ValueError, LookupError, StorageError):
            return None

    def _model_record(self, model_id: Hash32) -> ModelRecord | None:
        return get_evidence_model(self._view(), model_id)  # a retired model's is kept for the evidence age

    def _is_wrong_inference_strict(self, ev: WrongInference) -> bool:
        """For validation: LocalFault propagates (this node cannot judge the block). A confirmed piece of
        evidence is remembered by its hash, so proposing and validating blocks that carry it (every round
        until it is included) runs its model once; a refusal is not remembered (this node may lack the
        model's registration yet)."""
        key = bytes(evidence_hash(ev))
        with self._lock:
            if key in self._confirmed:
                return True
        proven = is_wrong_inference(ev, chain_id=self.chain_id, validator_set=self._validator_set_or_none,
                                    model=self._model_record, engine=self.engine, params=self._view().params())
        if proven:
            with self._lock:
                self._confirmed[key] = None
                while len(self._confirmed) > 1024:
                    self._confirmed.popitem(last=False)
        return proven

    def is_valid_evidence(self, evidence: Evidence) -> bool:
        if isinstance(evidence, WrongInference):
            try:
                return self._is_wrong_inference_strict(evidence)
            except LocalFault as fault:
                self._alarm(f"checking evidence: {fault}")
                return False
        if not is_equivocation(evidence, self.chain_id):
            return False
        vset = self._validator_set_or_none(evidence_height(evidence))
        return vset is not None and vset.get_by_key(evidence.offender) is not None

    def check_wrong_inference(self, evidence: WrongInference) -> bool | None:
        """`is_valid_evidence` for a wrong-inference claim, telling our own fault apart: True when the model's
        real output proves the claim, False when it refutes it, None when this node cannot run the model now
        (a local fault: the claim is neither relayed nor blamed on its sender)."""
        try:
            return self._is_wrong_inference_strict(evidence)
        except LocalFault as fault:
            self._alarm(f"checking evidence: {fault}")
            return None

    def precheck_wrong_inference(self, evidence: WrongInference, committed: TxResult | None) -> str | None:
        """The cheap checks of wrong-inference evidence, no model run (`vm.evidence.precheck_wrong_inference`):
        why it proves nothing, or None when it is worth `is_valid_evidence` (which re-runs the model).
        `committed`: the result the chain committed for the evidence's transaction (None: not committed)."""
        return precheck_wrong_inference(evidence, chain_id=self.chain_id, validator_set=self._validator_set_or_none,
                                        model=self._model_record, committed=committed)

    def wrong_inference_evidence(self, signed: ProposalBlock) -> tuple[WrongInference, ...]:
        """Evidence against `signed`'s proposer for each exact output that `validate_block` found wrong."""
        with self._lock:
            indices = self._wrong_exact.get(bytes(signed.block.id), ())
        return tuple(make_wrong_inference(signed, i) for i in indices)

    # ------------------------------------------------------------------------------------------ mempool

    def check_tx(self, tx: Transaction, *, account: Account | None = None, verify: bool = True) -> str | None:
        """Why `tx` should not be taken for the next block (None: it may): `vm.execute.admission_error`
        against the sender's committed account, or against `account` (the mempool's projection of it after
        the sender's pending transactions); the signature too unless `verify` is False."""
        if verify and not self._verify_tx(tx, tx.hash):
            return "invalid signature"
        if account is None:
            account = self._view().account(tx.sender_address)
        return admission_error(tx, self.chain_id, self.current_params().vm, account)

    def upgrade_needed(self, height: int) -> str | None:
        """Why this node cannot run block `height` (None: it can): a software upgrade is scheduled there and
        this build's registry lacks it (vm/upgrades.py). One line, naming the version to run."""
        plan = get_upgrade_plan(self._view())
        if plan is None or plan.height != height or plan.name in upgrades.REGISTRY:
            return None
        return upgrades.upgrade_needed_message(plan.name, height, plan.info)

    def precompute_deferred(self, executor: Executor, limit: int = 2) -> int:
        """Run the checks of the next `limit` pending deferred registrations (vm/deferred.py) on `executor`, ahead
        of their activation heights, into the check memo under the keys their activation will ask for (under
        the committed parameters: a change before the activation only makes the activation compute it), kept
        there until they leave that window (`CheckMemo.precompute_window`). How many ran; LocalFault from
        `executor` propagates, and the faulting check's answer is not kept."""
        view = self._view()
        params = view.params()
        jobs = []
        for model_id, record in pending_in_order(view, limit):
            model_bytes = view.get_blob(record.header.bytes_hash)  # checked against that hash on read
            self.check_memo.note_digest(model_bytes, record.header.bytes_hash)
            job = deferred_check_job(model_id, record, model_bytes, params)
            if job is not None:
                jobs.append(job)
        return self.check_memo.precompute_window(jobs, executor)

    def preload_resident(self, executor: Executor | None = None) -> int:
        """Load every resident model (vm/resident.py: registered, or pending activation) that its worker does
        not hold yet into `executor` (default: this node's own pool, whose workers the block path uses),
        pinned, one model per hand-off so a block's batch waits for one load at most. How many loaded. A
        model this node fails to load is alarmed once and left to the block path (a local fault there, as
        today)."""
        from vm.engine import resident_preload_job
        from vm.resident import get_resident_set

        target = self.executor if executor is None else executor
        holds = getattr(target, "holds", None)
        if holds is None:  # an executor that cannot say what it holds (a test double) is not preloaded
            return 0
        view = self._view()
        limits = sandbox_limits(view.params())
        loaded = 0
        for model_id in get_resident_set(view).models:
            if holds(bytes(model_id)) or bytes(model_id) in self._preload_failed:
                continue
            record = view.model(model_id)
            if record is not None:
                meta, model_bytes = record.meta, view.model_bytes(record)
            else:
                pending = get_deferred(view, model_id)
                if pending is None or pending.status != PENDING:
                    continue
                meta, model_bytes = pending.header.meta, view.get_blob(pending.header.bytes_hash)
            job = resident_preload_job(model_id, meta, model_bytes, limits)
            if job is None:
                continue
            try:
                target.run_batch([job])
            except LocalFault as exc:  # alarmed once: later passes leave it to the block path
                self._preload_failed.add(bytes(model_id))
                self._alarm(f"loading resident model {model_id.hex()[:16]} ahead: {exc}")
                continue
            loaded += 1
        return loaded

    def current_params(self) -> Params:
        """The parameters in force for the next block: the committed state's (governance changes them)."""
        height = self.last_height
        with self._lock:
            cached = self._params
            if cached is not None and cached[0] == height:
                return cached[1]
        params = self._view(height).params()
        with self._lock:
            self._params = (height, params)
        return params

