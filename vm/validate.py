"""`validate_block`: a validator re-executes a proposal before prevoting and returns a verdict.

Valid; invalid, naming the transactions at fault (an output beyond tolerance, a wrong verdict, a result
that execution does not reproduce, a transaction that could not be included); or a local fault when this
node cannot judge (worker failure, quarantined model), on which it prevotes nil and raises an alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.app import Verdict
from core.block import Block
from core.errors import InvalidBlock, InvalidEvidence, LocalError, RemoteError
from core.evidence import DuplicateProposal, DuplicateVote, Evidence, WrongInference, validate_evidence_basic
from core.header import HeaderRules, TxResult, validate_header
from core.state import StateUpdate
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Hash32
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import Vote
from vm.activation import checked_verdict
from vm.apply import BlockExecutor, Resolution, committed_resolution, system_result, validate_results_count
from vm.blockbytes import BlockBytes, get_block_bytes
from vm.engine import Engine, resolutions_agree
from vm.execute import BlockContext, InferWork, Work
from vm.params import Params
from vm.process import validator_updates
from vm.state import StateView
from vm.txs import ModelClass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Validated:
    verdict: Verdict
    update: StateUpdate | None = None  # the post-state, when valid
    results: tuple[TxResult, ...] = ()
    # Transactions whose committed output of an `exact` model differs from this node's: evidence material.
    wrong_exact: tuple[int, ...] = ()
    validator_updates: tuple[ValidatorEntry, ...] = ()
    punished: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class Checks:
    """What validation needs from the node beyond state: signature checks (cached), the last block id,
    the expected PoI reveal, and the evidence check that runs a model."""

    chain_id: str
    last_block_id: Hash32
    verify_tx: Callable[[Transaction, Hash32], bool]
    verify_vote: Callable[[Vote], bool]
    reveal: Callable[[], Tensor | None]
    is_wrong_inference: Callable[[WrongInference], bool]
    # Whether the node already ran `validate_basic` on this very block object (node.blockcheck.BlockChecks):
    # then the header's hashes are not compared with the body again (`get_block_bytes`).
    is_body_checked: Callable[[Block], bool] = lambda block: False


def validate_block(new_view: Callable[[], StateView], compute_update: Callable[[StateView], StateUpdate],
                   block: Block, engine: Engine, checks: Checks) -> Validated:
    try:
        return _validate(new_view, compute_update, block, engine, checks)
    except LocalError as fault:  # this node's fault (worker, limit, storage): it cannot judge the block
        return Validated(Verdict.local_fault(str(fault)))
    except RemoteError as exc:  # the proposer's fault: a verdict on the block
        return Validated(Verdict.invalid(str(exc)))
    except Exception as exc:
        # A bug of ours met on a peer's block: never a verdict on the proposer, never a crash of every
        # validator it reaches; logged with its traceback and alarmed as a local fault (prevote nil).
        logger.exception("validating block %d failed inside this node", block.height)
        return Validated(Verdict.local_fault(f"internal error: {type(exc).__name__}: {exc}"))


def _validate(new_view: Callable[[], StateView], compute_update: Callable[[StateView], StateUpdate],
              block: Block, engine: Engine, checks: Checks) -> Validated:
    """The steps in order, each refusing what it can: the block's frame (header, limits, last commit,
    evidence, PoI reveal), its transactions' admission, their work re-executed, and the results and root."""
    view = new_view()
    params = view.params()
    parts = get_block_bytes(block, body_checked=checks.is_body_checked(block))
    _validate_frame(view, params, block, parts, checks)
    header = block.header
    executor = BlockExecutor(view, BlockContext(header.chain_id, header.height, header.time, header.proposer,
                                                params, engine.assembly), header.last_block_id,
                             checked_verdict(system_result(block), engine.check_deferred, int(header.round)))
    try:
        executor.begin(header.poi_reveal, block.last_commit, block.evidence)
    except ValueError as exc:
        raise InvalidBlock(str(exc)) from None
    refused = _admit_txs(executor, block, parts, checks)
    if refused is not None:
        return refused
    committed = _reproduce_work(executor.work, block, engine, params)
    if isinstance(committed, Validated):
        return committed
    results = executor.finish(committed)
    validate_results_count(block, results)
    mismatched = [i for i, (mine, theirs) in enumerate(zip(results, block.results, strict=True)) if mine != theirs]
    if mismatched:
        return Validated(Verdict.invalid("results that execution does not reproduce", mismatched))
    update = compute_update(view)
    if update.root != header.state_root:
        raise InvalidBlock("state root differs from execution")
    h = int(header.height)
    updates = validator_updates(view.validator_list(h + 1), view.validator_list(h + 2))
    return Validated(Verdict.valid(), update, results, (), updates, tuple(executor.punished))


def _validate_frame(view: StateView, params: Params, block: Block, parts: BlockBytes, checks: Checks) -> None:
    """Everything but the transactions: height and header (`core.header.validate_header`), the byte limit
    (the gas rule counts used gas, transaction by transaction: `BlockExecutor.inclusion_error`), the last
    commit's signers, the evidence's proofs and the PoI reveal; raises InvalidBlock."""
    chain = view.chain()
    header = block.header
    h = int(header.height)
    if h != chain.height + 1:
        raise InvalidBlock(f"block {h} does not follow height {chain.height}")
    vset = ValidatorSet(view.validator_list(h))
    validate_header(header, HeaderRules(checks.chain_id, chain.height + 1, checks.last_block_id, chain.time, vset,
                                        ValidatorSet(view.validator_list(h + 1)).hash))
    if parts.size > params.consensus.max_block_bytes:
        raise InvalidBlock("block exceeds max_block_bytes")
    if block.last_commit is not None:
        members = ValidatorSet(view.validator_list(h - 1))
        for vote in block.last_commit.precommits:
            if members.get_by_key(vote.validator) is None:
                raise InvalidBlock("last commit holds a precommit of a non-member")
            if not checks.verify_vote(vote):
                raise InvalidBlock("last commit holds a badly signed precommit")
    for i, ev in enumerate(block.evidence):
        _validate_evidence(i, ev, checks)
    expected_reveal = checks.reveal() if h >= 3 else None
    if header.poi_reveal != expected_reveal:
        raise InvalidBlock("PoI reveal differs from this node's challenge output")


def _admit_txs(executor: BlockExecutor, block: Block, parts: BlockBytes, checks: Checks) -> Validated | None:
    """Each transaction's signature and inclusion rules, in block order; the verdict naming those that
    cannot be included, or None when all were added to `executor`."""
    bad: list[int] = []
    for i, tx in enumerate(block.txs):
        if not checks.verify_tx(tx, parts.txs[i].hash) or executor.inclusion_error(tx) is not None:
            bad.append(i)
            continue
        executor.add(tx)
    return Validated(Verdict.invalid("transactions that cannot be included", bad)) if bad else None


def _reproduce_work(work: Sequence[Work], block: Block, engine: Engine, params: Params
                    ) -> dict[int, Resolution] | Validated:
    """The block's claimed outcome of each piece of work, once this node's own run agrees with every one;
    otherwise the verdict naming those that are not outcomes or that this node does not reproduce."""
    committed: dict[int, Resolution] = {}
    bad: list[int] = []
    for w in work:
        try:
            committed[w.index] = committed_resolution(w, block.results[w.index])
        except InvalidBlock:
            bad.append(w.index)
    if bad:
        return Validated(Verdict.invalid("results that are not outcomes of their work", sorted(bad)))
    local, _ = engine.resolve(work, params)
    wrong_exact = []
    for w in work:
        meta = w.model.meta if isinstance(w, InferWork) else None
        why = resolutions_agree(meta, committed[w.index], local[w.index])
        if why is not None:
            bad.append(w.index)
            if meta is not None and meta.model_class is ModelClass.EXACT:
                wrong_exact.append(w.index)
    if bad:
        return Validated(Verdict.invalid("model outputs or verdicts this node does not reproduce", sorted(bad),
                                         wrong_exact), wrong_exact=tuple(wrong_exact))
    return committed


def _validate_evidence(index: int, ev: Evidence, checks: Checks) -> None:
    """That evidence proves its offence (the same test the proposer's filter applies: `is_equivocation`, or
    the model re-run); whether it may be punished in this block is `vm.process.evidence_problem`, which the
    executor applies in `begin`."""
    proven = checks.is_wrong_inference(ev) if isinstance(ev, WrongInference) else is_equivocation(ev, checks.chain_id)
    if not proven:
        raise InvalidBlock(f"evidence {index} does not prove its offence")


def is_equivocation(ev: DuplicateVote | DuplicateProposal, chain_id: str) -> bool:
    """Core's stateless rules: two validly signed messages of one signer, same kind, height and round,
    different block ids, in canonical order."""
    try:
        validate_evidence_basic(ev, chain_id)
    except InvalidEvidence:
        return False
    return True
