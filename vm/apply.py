"""`apply_block(state, block)`: the state transition. Pure, and it runs no model of the block's transactions.

Model work in the block (inference outputs, registration verdicts, a deferred activation's verdict: its
system result, vm/deferred.py) is taken from the block's committed results; everything else is recomputed here
and must equal what the block says. `BlockExecutor` is the one pipeline that build, validate and apply share,
so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.block import Block
from core.errors import DecodeError, InvalidBlock
from core.evidence import Evidence
from core.header import TxResult, TxStatus
from core.records import record
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Gas, Hash32, Height
from core.validators import ValidatorEntry
from core.votes import Commit
from vm.activation import VerdictSource, committed_verdict, process_activations
from vm.assembly import AssemblyMemo
from vm.blockbytes import get_block_bytes
from vm.execute import (
    BlockContext,
    BlockModels,
    InferWork,
    RegisterWork,
    TxExecution,
    Work,
    drop_upload,
    execute_tx,
    inclusion_error,
    register_model,
)
from vm.process import (
    Ledger,
    close_block,
    expire_uploads,
    fix_commitments,
    punish_evidence,
    release_unbonding,
    score_poi,
    validator_updates,
)
from vm.retire import process_purge_retired
from vm.state import RegistrationData, StateView
from vm.upgrades import process_upgrade


@record  # built per inference: frozen to mypy, not at run time (core/records.py, vm.execute.InferWork)
class InferResolution:
    """How an inference came out: OK with canonical outputs, or INFERENCE_FAILED with a stable code."""

    status: TxStatus
    outputs: tuple[Tensor, ...] = ()
    log: str = ""
    # The committed result this resolution was read from (`committed_resolution`), if any: the final result is
    # that very value when its gas matches, so a validator and apply reuse it instead of building an equal one.
    committed: TxResult | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RegisterResolution:
    accepted: bool
    gas_per_call: int = 0
    log: str = ""
    gas_load: int = 0
    # Whether this node is sure of the verdict: only a deferred activation's check can be unsure (its golden
    # outputs near the tolerance's edge; vm/deferred.py lets a validator defer to the proposer then).
    certain: bool = True


Resolution = InferResolution | RegisterResolution


class BlockExecutor:
    """Executes one block on a view: `begin`, then `add` per transaction, then `finish` with the
    resolved model work. Build, validate and apply differ only in where the resolutions come from."""

    __slots__ = ("_addresses", "_outcomes", "_sender", "ctx", "gas_used", "last_block_id", "ledger", "models",
                 "punished", "verdict_of", "view")

    def __init__(self, view: StateView, ctx: BlockContext, last_block_id: Hash32,
                 verdict_of: VerdictSource | None = None) -> None:
        self.view = view
        # The verdict on a deferred registration activating at this height (vm/deferred.py): the builder's
        # check, or the block's system result (checked by a validator, taken as committed by apply).
        self.verdict_of = verdict_of
        self.ctx = ctx
        self.last_block_id = last_block_id
        self.ledger = Ledger()
        self.models = BlockModels(ctx.params.vm.max_block_models)
        self._outcomes: list[TxExecution] = []
        self.punished: list[Evidence] = []
        self.gas_used = 0  # by the transactions added so far: what the block's gas rule counts
        self._sender: tuple[Transaction, Address] | None = None  # the last checked tx's sender address
        self._addresses: dict[bytes, Address] = {}  # sender public key -> address

    def begin(self, reveal: Tensor | None, last_commit: Commit | None, evidence: Sequence[Evidence]) -> None:
        view, ctx = self.view, self.ctx
        process_upgrade(view, ctx.height)  # a scheduled upgrade runs first, or this node stops here
        # Evidence first: an unbonding entry that finishes in this block is still slashable in it.
        self.punished = punish_evidence(view, ctx, evidence, self.ledger)
        release_unbonding(view, ctx)
        expire_uploads(view, ctx)
        process_purge_retired(view, int(ctx.height))
        score_poi(view, ctx, reveal, self.ledger)
        fix_commitments(view, ctx, last_commit, self.ledger)

    def inclusion_error(self, tx: Transaction) -> str | None:
        """Why `tx` cannot join the block after those added so far (None: it can). The block's gas rule is
        here, as in Ethereum: the gas its transactions used so far plus this one's limit fits
        `max_block_gas`. Counting used gas, not the limits, matters for inferences: each must reserve its
        model's load (its block's first call pays it) but only one per model per block uses it."""
        left = self.ctx.params.consensus.max_block_gas - self.gas_used
        if tx.gas_limit > left:
            return f"gas limit {tx.gas_limit:d} exceeds the block's gas left {left:d}"
        sender = self._addresses.get(tx.sender)
        if sender is None:  # one hash per sender and block, not per transaction
            sender = self._addresses[tx.sender] = tx.sender_address
        self._sender = (tx, sender)
        reason = inclusion_error(self.view, self.ctx, tx, sender)
        return reason if reason is not None else self.models.inclusion_error(self.view, tx)

    def add(self, tx: Transaction) -> TxExecution:
        """Execute `tx`, which the caller has checked with `inclusion_error`."""
        sender = self._sender[1] if self._sender is not None and self._sender[0] is tx else None
        outcome = execute_tx(self.view, self.ctx, len(self._outcomes), tx, sender, models=self.models)
        self.ledger.fees += outcome.fee
        self.gas_used += outcome.result.gas_used
        self._outcomes.append(outcome)
        return outcome

    @property
    def work(self) -> list[Work]:
        return [o.work for o in self._outcomes if o.work is not None]

    def finish(self, resolutions: Mapping[int, Resolution]) -> tuple[TxResult, ...]:
        """Write the registration verdicts, close the block; the final results, in order, then the verdict of
        a deferred activation due at this height (the block's system result), if any."""
        results = []
        for outcome in self._outcomes:
            work = outcome.work
            if work is None:
                results.append(outcome.result)
                continue
            resolution = resolutions[work.index]
            results.append(final_result(outcome.result, work, resolution))
            if isinstance(work, RegisterWork):
                assert isinstance(resolution, RegisterResolution)
                if resolution.accepted:
                    register_model(self.view, self.ctx, work, resolution.gas_per_call, resolution.gas_load)
                else:
                    drop_upload(self.view, work.model_id)
        activation = process_activations(self.view, self.ctx.height, self.ctx.params, self.verdict_of)
        close_block(self.view, self.ctx, self.last_block_id, self.ledger)
        return (*results, activation) if activation is not None else tuple(results)


def final_result(provisional: TxResult, work: Work, resolution: Resolution) -> TxResult:
    if isinstance(work, InferWork):
        assert isinstance(resolution, InferResolution)
        committed = resolution.committed
        if committed is not None and committed.gas_used == provisional.gas_used:
            return committed  # its status, outputs and log are the resolution's, its data empty: the same value
        return TxResult(resolution.status, provisional.gas_used, resolution.outputs, b"", resolution.log)
    assert isinstance(resolution, RegisterResolution)
    if resolution.accepted:
        data = RegistrationData(work.model_id, Gas(resolution.gas_per_call), Gas(resolution.gas_load)).encode()
        return TxResult(TxStatus.OK, provisional.gas_used, (), data, "")
    return TxResult(TxStatus.MODEL_REJECTED, provisional.gas_used, (), b"", resolution.log)


def committed_resolution(work: Work, result: TxResult) -> Resolution:
    """The resolution a committed result states for `work`; InvalidBlock if it cannot be one."""
    if isinstance(work, InferWork):
        if result.status not in (TxStatus.OK, TxStatus.INFERENCE_FAILED) or result.data:
            raise InvalidBlock(f"tx {work.index}: result is not an inference outcome")
        if result.status is TxStatus.INFERENCE_FAILED and result.outputs:
            raise InvalidBlock(f"tx {work.index}: a failed inference carries outputs")
        return InferResolution(result.status, result.outputs, result.log, result)
    if result.status is TxStatus.MODEL_REJECTED:
        return RegisterResolution(False, 0, result.log)
    if result.status is not TxStatus.OK:
        raise InvalidBlock(f"tx {work.index}: result is not a registration verdict")
    try:
        data = RegistrationData.decode(result.data)
    except DecodeError:
        raise InvalidBlock(f"tx {work.index}: malformed registration data") from None
    if data.model_id != work.model_id:
        raise InvalidBlock(f"tx {work.index}: registration data names another model")
    return RegisterResolution(True, int(data.gas_per_call), "", int(data.gas_load))


@dataclass(frozen=True, slots=True)
class ApplyResult:
    state: StateView
    receipts: tuple[TxResult, ...]
    # Changes of the validator set, effective at height + 2 (power 0 removes).
    validator_updates: tuple[ValidatorEntry, ...]
    punished: tuple[Evidence, ...]


def context_for(view: StateView, block: Block, assembly: AssemblyMemo | None = None) -> BlockContext:
    h = block.header
    return BlockContext(h.chain_id, h.height, h.time, h.proposer, view.params(), assembly)


def _verify(tx: Transaction, tx_hash: Hash32) -> bool:
    return tx.verify_signature()


def system_result(block: Block) -> TxResult | None:
    """The block's result after its transactions' (a deferred activation's verdict), if it carries one."""
    return block.results[len(block.txs)] if len(block.results) > len(block.txs) else None


def validate_results_count(block: Block, results: Sequence[TxResult]) -> None:
    """Execution produced as many results as the block carries: a system result exactly when one is due."""
    if len(results) != len(block.results):
        raise InvalidBlock(f"block {block.height}: carries {len(block.results)} results, execution gives "
                           f"{len(results)} (an activation verdict where none is due)")


def apply_block(state: StateView, block: Block,
                verify: Callable[[Transaction, Hash32], bool] = _verify, *, body_checked: bool = False,
                assembly: AssemblyMemo | None = None) -> ApplyResult:
    """Apply a block that consensus committed, on `state` (the view at the previous height). A deferred
    activation's verdict is the block's (block sync never re-runs the check). `body_checked`: the caller ran
    `validate_basic` on this very block object (`vm.blockbytes.get_block_bytes` then skips the header's hashes).
    `assembly`: the application's memo of completed uploads (vm/assembly.py).

    Raises InvalidBlock if the block is not a valid successor (which a commit by honest validators rules
    out); the caller still compares the resulting state root with the header's.
    """
    chain = state.chain()
    header = block.header
    if header.height != chain.height + 1:
        raise InvalidBlock(f"block {header.height} does not follow height {chain.height}")
    parts = get_block_bytes(block, body_checked=body_checked)
    ctx = context_for(state, block, assembly)
    executor = BlockExecutor(state, ctx, header.last_block_id, committed_verdict(system_result(block)))
    try:
        executor.begin(header.poi_reveal, block.last_commit, block.evidence)
    except ValueError as exc:
        raise InvalidBlock(f"block {header.height}: {exc}") from None
    for i, tx in enumerate(block.txs):
        if not verify(tx, parts.txs[i].hash):
            raise InvalidBlock(f"block {header.height}: tx {i} has a bad signature")
        reason = executor.inclusion_error(tx)
        if reason is not None:
            raise InvalidBlock(f"block {header.height}: tx {i} cannot be included: {reason}")
        executor.add(tx)
    resolutions = {w.index: committed_resolution(w, block.results[w.index]) for w in executor.work}
    results = executor.finish(resolutions)
    validate_results_count(block, results)
    for i, (mine, theirs) in enumerate(zip(results, block.results, strict=True)):
        if mine != theirs:
            raise InvalidBlock(f"block {header.height}: result of tx {i} differs from execution")
    updates = validator_updates(state.validator_list(header.height + 1), state.validator_list(header.height + 2))
    return ApplyResult(state, results, updates, tuple(executor.punished))


def height_of(view: StateView) -> Height:
    return view.chain().height
