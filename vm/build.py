"""`build_block`: the proposer picks transactions, runs their model work in one hand-off, and writes the
outputs, verdicts, PoI reveal and post-state root into the block.

Transactions that cannot be included (bad signature, nonce, fee) are skipped, never failed. A model this
node has quarantined, or a worker failure, drops the model work from the block instead of stalling: the
block is rebuilt without the transactions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.app import BlockTemplate
from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.errors import LocalFault
from core.evidence import Evidence
from core.header import PROTOCOL_VERSION, Header, TxResult
from core.limits import MAX_BLOCK_TXS, MAX_COMPACT_PROPOSAL_BYTES
from core.state import StateUpdate
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Hash32
from core.validators import ValidatorEntry, ValidatorSet
from vm.activation import proposed_verdict
from vm.apply import BlockExecutor, Resolution
from vm.blockbytes import (
    TxBytes,
    block_size,
    compute_infer_result_bound,
    evidence_raw,
    get_result_bound,
    results_root,
    tx_bytes,
    txs_root,
)
from vm.engine import Engine
from vm.execute import BlockContext, InferWork, RegisterWork
from vm.process import validator_updates
from vm.sandbox.errors import GoldenMismatch
from vm.state import ModelRecord, StateView
from vm.txs import TxKind, infer_payload

HEADER_RESERVE = 4096
# A block must also travel as a compact proposal (core.compact) under its gossip cap: the signed proposal's
# own fields, and 34 bytes (a msgpack bin 32) per transaction hash instead of the transaction.
PROPOSAL_RESERVE = 1024
HASH_ENTRY_BYTES = 34


@dataclass(frozen=True, slots=True)
class Built:
    block: Block
    update: StateUpdate
    results: tuple[TxResult, ...]
    faults: tuple[str, ...]  # local faults met while building (alarms); the block excludes their work
    validator_updates: tuple[ValidatorEntry, ...] = ()
    punished: tuple[Evidence, ...] = ()
    # Transactions whose model work was in a hand-off that met a local fault (a worker killed or timed out):
    # left out of the block; the node backs them off like transactions validators disagreed on.
    faulted: tuple[Hash32, ...] = ()


def build_block(new_view: Callable[[], StateView], compute_update: Callable[[StateView], StateUpdate],
                template: BlockTemplate, txs: Sequence[Transaction], engine: Engine, *,
                verify: Callable[[Transaction, Hash32], bool], reveal: Tensor | None,
                evidence: Sequence[Evidence]) -> Built:
    """Build block `template.height` on the state `new_view()` returns (a fresh view each call).

    `evidence` is the template's evidence that the caller checked; `reveal` the output of challenge h-2
    (None below height 3). Each attempt runs three steps on a fresh view: select the transactions that fit,
    resolve their model work in one hand-off, and trim the block if its outputs made it too large. A step
    that learns something (a model unusable here, a local fault, outputs over the byte limit) narrows the
    candidates and the next attempt starts over; what already ran is memoized, so no work runs twice.
    """
    return _Builder(new_view, compute_update, template, txs, engine, verify, reveal, evidence).build()


@dataclass(slots=True)
class _Selection:
    """One attempt's transactions, executed on `executor`'s view, with their provisional outcomes."""

    executor: BlockExecutor
    picked: list[Transaction]
    # Encodings of the final results by id (results are immutable and shared: `vm.execute._result`), kept alive
    # by the executor's outcomes: `finish` reuses them instead of encoding again.
    result_raws: dict[int, bytes]


class _Builder:
    """The state that carries over between attempts: candidates left, models excluded, faults met, memo."""

    def __init__(self, new_view: Callable[[], StateView], compute_update: Callable[[StateView], StateUpdate],
                 template: BlockTemplate, txs: Sequence[Transaction], engine: Engine,
                 verify: Callable[[Transaction, Hash32], bool], reveal: Tensor | None,
                 evidence: Sequence[Evidence]) -> None:
        self.new_view = new_view
        self.compute_update = compute_update
        self.template = template
        self.engine = engine
        self.verify = verify
        self.reveal = reveal
        self.evidence = tuple(evidence)
        base = new_view()
        self.params = base.params()
        self.ctx = BlockContext(template.chain_id, template.height, template.time, template.proposer, self.params,
                                engine.assembly)
        self.vset = ValidatorSet(base.validator_list(template.height))
        self.next_vset = ValidatorSet(base.validator_list(template.height + 1))
        self.candidates = list(txs)
        self.excluded_models: set[bytes] = set()
        self.no_model_work = False
        self.faults: list[str] = []
        self.faulted: list[Hash32] = []
        self.memo: dict[tuple[object, ...], Resolution] = {}
        self.activation = proposed_verdict(engine.check_deferred)  # memoized across attempts
        self.encoded: dict[int, TxBytes] = {}  # by id(tx): each candidate is encoded and hashed once
        self.commit_raw = None if template.last_commit is None else template.last_commit.encode()
        self.evidence_raws = [evidence_raw(e) for e in evidence]

    def bytes_of(self, tx: Transaction) -> TxBytes:
        tb = self.encoded.get(id(tx))
        if tb is None:
            tb = self.encoded[id(tx)] = tx_bytes(tx)
        return tb

    def build(self) -> Built:
        while True:
            selection = self.select()
            if selection is None:
                continue
            resolutions = self.resolve(selection)
            if resolutions is None:
                continue
            built = self.finish(selection, resolutions)
            if built is not None:
                return built

    def select(self) -> _Selection | None:
        """Execute the candidates that fit the block's gas, bytes and count, in order, on a fresh view.
        None when a transaction's model turned out to be unusable here (it is dropped; start over)."""
        params, template = self.params, self.template
        executor = BlockExecutor(self.new_view(), self.ctx, template.last_block_id, self.activation)
        executor.begin(self.reveal, template.last_commit, self.evidence)
        picked: list[Transaction] = []
        size = HEADER_RESERVE + len(self.commit_raw or b"") + sum(len(e) for e in self.evidence_raws)
        compact = size + PROPOSAL_RESERVE  # the compact proposal: the same, with each transaction as its hash
        view = executor.view
        result_raws: dict[int, bytes] = {}
        plain_bounds: dict[int, int] = {}  # gas limit -> result bound of a transaction without model work
        infer_bounds: dict[tuple[bytes, int], int] = {}  # (model, gas limit) -> an executed inference's bound
        # (model, gas limit) -> (the model's record, an inference's bound before it executes)
        infer_pre_bounds: dict[tuple[bytes, int], tuple[ModelRecord | None, int]] = {}
        for tx in self.candidates:
            if len(picked) >= MAX_BLOCK_TXS:
                break
            tb = self.bytes_of(tx)
            # Room for the result it may write (vm.blockbytes); once executed, what it takes is counted.
            if tx.kind == TxKind.INFER:
                # Per model and gas limit, not per inference: the bound depends on the model's declared outputs
                # only (the record the view holds now: kept with it, so a rewritten record misses).
                payload = infer_payload(tx)
                record = None if payload is None else view.model(payload.model_id)
                key = (b"" if payload is None else payload.model_id, tx.gas_limit)
                known = infer_pre_bounds.get(key)
                if known is not None and known[0] is record:
                    bound = known[1]
                else:
                    bound = get_result_bound(tx, view.model)
                    infer_pre_bounds[key] = (record, bound)
            else:
                bound = plain_bounds.get(tx.gas_limit, -1)
                if bound < 0:
                    bound = plain_bounds[tx.gas_limit] = get_result_bound(tx, view.model)
            if (size + len(tb.raw) + bound > params.consensus.max_block_bytes
                    or compact + HASH_ENTRY_BYTES + bound > MAX_COMPACT_PROPOSAL_BYTES):
                continue
            if not self.verify(tx, tb.hash) or executor.inclusion_error(tx) is not None:
                continue
            if _needs_excluded_work(tx, self.excluded_models, self.no_model_work):
                continue
            outcome = executor.add(tx)
            picked.append(tx)
            # A result without model work is final now; one with work is rewritten by its resolution,
            # which stays within the bound.
            if outcome.work is None:
                raw = result_raws.get(id(outcome.result))
                if raw is None:
                    raw = result_raws[id(outcome.result)] = outcome.result.encode()
                result_size = len(raw)
            elif isinstance(outcome.work, InferWork):  # outputs or a failure code, nothing else (vm.blockbytes)
                key = (bytes(outcome.work.model_id), tx.gas_limit)
                result_size = infer_bounds.get(key, -1)
                if result_size < 0:
                    result_size = infer_bounds[key] = compute_infer_result_bound(tx.gas_limit,
                                                                                 outcome.work.model.meta.outputs)
            else:
                result_size = bound
            size += len(tb.raw) + result_size
            compact += HASH_ENTRY_BYTES + result_size
            if outcome.work is not None and (self.no_model_work or _work_model(outcome.work) in self.excluded_models):
                self.candidates.remove(tx)  # its model turned out to be unusable here: rebuild without it
                return None
        return _Selection(executor, picked, result_raws)

    def resolve(self, selection: _Selection) -> dict[int, Resolution] | None:
        """The selection's model work, run in one hand-off (memoized across attempts). None after a local
        fault: a quarantined model is excluded, or on a worker failure all model work is (start over)."""
        work = selection.executor.work
        keys = {w.index: _memo_key(w) for w in work}
        pending = [w for w in work if keys[w.index] not in self.memo]
        try:
            resolved, _ = self.engine.resolve(pending, self.params)
        except GoldenMismatch as fault:
            self.faults.append(str(fault))
            self.excluded_models.add(bytes(fault.model_id))
            return None
        except LocalFault as fault:
            if self.no_model_work:
                raise
            self.faults.append(str(fault))
            self.faulted.extend(self.bytes_of(selection.picked[w.index]).hash for w in pending)
            self.no_model_work = True
            return None
        for index, resolution in resolved.items():
            self.memo[keys[index]] = resolution
        return {w.index: self.memo[keys[w.index]] for w in work}

    def finish(self, selection: _Selection, resolutions: dict[int, Resolution]) -> Built | None:
        """Close the block with its results; None when its outputs made it exceed the byte limit (trimmed)."""
        template, executor, picked = self.template, selection.executor, selection.picked
        results = executor.finish(resolutions)
        update = self.compute_update(executor.view)
        tx_parts = [self.bytes_of(tx) for tx in picked]
        raws = selection.result_raws
        result_parts = [raws.get(id(r)) or r.encode() for r in results]
        block = assemble(template, tuple(picked), results, self.evidence, self.reveal, self.vset, self.next_vset,
                         update, txs_root([t.hash for t in tx_parts]), results_root(result_parts))
        excess = block_size(block.header.encode(), [t.raw for t in tx_parts], result_parts, self.commit_raw,
                            self.evidence_raws) - self.params.consensus.max_block_bytes
        if excess > 0 and picked:
            self.trim(picked, result_parts[: len(picked)], excess)  # the activation verdict stays
            return None
        view = executor.view
        updates = validator_updates(view.validator_list(self.ctx.height + 1), view.validator_list(self.ctx.height + 2))
        return Built(block, update, results, tuple(self.faults), updates, tuple(executor.punished),
                     tuple(self.faulted))

    def trim(self, picked: list[Transaction], result_parts: list[bytes], excess: int) -> None:
        """Outputs made the block too large: drop transactions from the end until their bytes cover it."""
        for tx, result_raw in zip(reversed(picked), reversed(result_parts), strict=True):
            self.candidates.remove(tx)
            excess -= len(self.bytes_of(tx).raw) + len(result_raw)
            if excess <= 0:
                break


def _work_model(work: InferWork | RegisterWork) -> bytes:
    return bytes(work.model_id)


def _memo_key(work: InferWork | RegisterWork) -> tuple[object, ...]:
    """Same work, same key: a rebuilt block reuses what already ran."""
    if isinstance(work, InferWork):
        return ("infer", bytes(work.model_id), tuple((int(t.dtype), t.shape, t.data) for t in work.inputs))
    return ("register", bytes(work.model_id))


def _needs_excluded_work(tx: Transaction, excluded: set[bytes], no_model_work: bool) -> bool:
    """Cheap pre-filter: an inference on an excluded model (the executor still catches the rest)."""
    if not excluded and not no_model_work:
        return False
    if tx.kind == TxKind.INFER:
        if no_model_work:
            return True
        payload = infer_payload(tx)
        return payload is not None and bytes(payload.model_id) in excluded
    return False


def assemble(template: BlockTemplate, txs: tuple[Transaction, ...], results: tuple[TxResult, ...],
             evidence: tuple[Evidence, ...], reveal: Tensor | None, vset: ValidatorSet,
             next_vset: ValidatorSet, update: StateUpdate, txs_root_: Hash32 | None = None,
             results_root_: Hash32 | None = None) -> Block:
    header = Header(
        version=PROTOCOL_VERSION,
        chain_id=template.chain_id,
        height=template.height,
        round=template.round,
        time=template.time,
        last_block_id=template.last_block_id,
        proposer=template.proposer,
        txs_root=compute_txs_root(txs) if txs_root_ is None else txs_root_,
        results_root=compute_results_root(results) if results_root_ is None else results_root_,
        state_root=update.root,
        validators_hash=vset.hash,
        next_validators_hash=next_vset.hash,
        last_commit_hash=compute_last_commit_hash(template.last_commit),
        evidence_hash=compute_evidence_hash(evidence),
        poi_reveal=reveal,
    )
    return Block(header, txs, results, template.last_commit, evidence)
