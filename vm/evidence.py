"""Evidence of a wrong `exact` inference: build it from a signed proposal, check it by re-running.

A proposal signs the header's id; Merkle proofs tie the transaction and its claimed result to the header's
roots; any node re-runs the model on the transaction's inputs and compares bit for bit. A claimed result
that is not an inference outcome (e.g. FAILED for a stateful reason) proves nothing and is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from core.block import ProposalBlock
from core.errors import DecodeError, InvalidBlock, InvalidEvidence
from core.evidence import WrongInference, validate_evidence_basic
from core.header import TxResult
from core.merkle import merkle_proof
from core.types import Hash32, Height
from core.validators import ValidatorSet
from vm.apply import committed_resolution
from vm.engine import Engine, resolutions_agree
from vm.execute import InferWork
from vm.params import Params
from vm.state import ModelRecord
from vm.txs import Infer, ModelClass, TxKind


def make_wrong_inference(signed: ProposalBlock, tx_index: int) -> WrongInference:
    """Evidence that `signed`'s block claims a wrong output for transaction `tx_index`."""
    block = signed.block
    tx_proof = merkle_proof([tx.hash for tx in block.txs], tx_index)
    result_proof = merkle_proof([r.encode() for r in block.results], tx_index)
    return WrongInference(signed.proposal, block.header, tx_index, block.txs[tx_index], block.results[tx_index],
                          tx_proof, result_proof)


# The one precheck refusal that may mean only that the checking node is behind (see precheck_wrong_inference).
NOT_COMMITTED = "the transaction is not in a committed block"


def precheck_wrong_inference(ev: WrongInference, *, chain_id: str,
                             validator_set: Callable[[Height], ValidatorSet | None],
                             model: Callable[[Hash32], ModelRecord | None],
                             committed: TxResult | None) -> str | None:
    """The cheap parts of checking wrong-inference evidence, before any model runs: why it cannot prove an
    offence (its sender made a false or useless claim), or None when it is worth re-running the model.

    Stateless proofs (signature, Merkle proofs against the signed header); the proposer was a validator at
    the evidence's height; the transaction is an inference on a registered `exact` model with inputs of its
    declared shapes; the claimed result is an inference outcome; and the transaction is in a committed block
    (`committed`: the result the chain committed for it, which the caller looks up; None when it is not
    committed) whose committed result differs from the claimed one (a claim that repeats what the chain
    committed, which validators re-executed, proves nothing).
    """
    try:
        validate_evidence_basic(ev, chain_id)
    except InvalidEvidence as exc:
        return str(exc)
    vset = validator_set(ev.header.height)
    if vset is None or vset.get_by_key(ev.proposal.proposer) is None:
        return "the proposer was not a validator at the evidence's height"
    work = _infer_work(ev, model)
    if isinstance(work, str):
        return work
    try:
        committed_resolution(work, ev.result)
    except InvalidBlock:
        return "the claimed result is not an inference outcome"
    if committed is None:
        return NOT_COMMITTED
    if committed == ev.result:
        return "the claimed result is the committed one"
    return None


def _infer_work(ev: WrongInference, model: Callable[[Hash32], ModelRecord | None]) -> InferWork | str:
    if ev.tx.kind != TxKind.INFER:
        return "the transaction is not an inference"
    try:
        payload = Infer.decode(ev.tx.payload)
    except DecodeError:
        return "the transaction's payload does not decode"
    record = model(payload.model_id)
    if record is None or record.meta.model_class is not ModelClass.EXACT:
        return "the model is not a registered exact model"
    specs = record.meta.inputs
    if len(payload.inputs) != len(specs) or any(t.dtype != s.dtype or t.shape != s.shape
                                                for t, s in zip(payload.inputs, specs, strict=False)):
        return "the inputs do not match the model's declared inputs"
    return InferWork(0, payload.model_id, record, payload.inputs)


def is_wrong_inference(ev: WrongInference, *, chain_id: str,
                       validator_set: Callable[[Height], ValidatorSet | None],
                       model: Callable[[Hash32], ModelRecord | None], engine: Engine,
                       params: Params) -> bool:
    """True when the evidence proves its proposer signed a wrong exact output: the stateless proofs, the
    proposer's membership at the evidence's height, then the model re-run, compared bit for bit. Raises
    LocalFault when this node cannot run the model (it cannot judge)."""
    try:
        validate_evidence_basic(ev, chain_id)
    except InvalidEvidence:
        return False
    vset = validator_set(ev.header.height)
    if vset is None or vset.get_by_key(ev.proposal.proposer) is None:
        return False
    work = _infer_work(ev, model)
    if isinstance(work, str):
        return False
    try:
        claimed = committed_resolution(work, ev.result)
    except InvalidBlock:
        return False
    local, _ = engine.resolve([work], params)
    return resolutions_agree(work.model.meta, claimed, local[0]) is not None


__all__ = ["is_wrong_inference", "make_wrong_inference", "precheck_wrong_inference"]
