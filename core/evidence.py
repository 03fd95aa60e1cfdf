"""Evidence of misbehaviour: proofs anyone can check, included in blocks and punished by the VM.

The stateless rules live here, once, so that gossip (p2p), consensus and the application agree on what
proves an offence and on which offence it is; each layer adds only its stateful checks (age window,
validator-set membership, re-running a model).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from core.codec import U32, Wire, wire
from core.errors import InvalidEvidence, InvalidEvidenceSignature
from core.hashing import sha256, sha256_concat
from core.header import Header, TxResult
from core.keys import verify as verify_ed25519
from core.limits import MAX_TX_BYTES
from core.merkle import MerkleProof, verify_merkle_proof
from core.tx import Transaction
from core.types import Hash32, Height, PublicKeyBytes, Round
from core.votes import Proposal, Vote

Verifier = Callable[[bytes, bytes, bytes], bool]
"""(public key, message, signature) -> valid; lets a caller route checks through its signature cache."""


@wire(max_bytes=1200, tag=1)
class DuplicateVote(Wire):
    """Two votes of one validator, same type, height and round, different block ids."""

    vote_a: Vote
    vote_b: Vote

    @property
    def offender(self) -> PublicKeyBytes:
        return self.vote_a.validator


@wire(max_bytes=1200, tag=2)
class DuplicateProposal(Wire):
    """Two signed proposals of one proposer for the same height and round with different block ids."""

    proposal_a: Proposal
    proposal_b: Proposal

    @property
    def offender(self) -> PublicKeyBytes:
        return self.proposal_a.proposer


@wire(max_bytes=MAX_TX_BYTES + 300 * 1024, tag=3)
class WrongInference(Wire):
    """A signed proposal whose block claims a wrong output of an `exact` model for one transaction.

    The proposal signs the header's id; the proofs tie the transaction and its claimed result to the
    header's roots. Any node re-runs the model on the transaction and compares bit for bit.
    """

    proposal: Proposal
    header: Header
    tx_index: U32
    tx: Transaction
    result: TxResult
    tx_proof: MerkleProof
    result_proof: MerkleProof

    @property
    def offender(self) -> PublicKeyBytes:
        return self.proposal.proposer


Evidence = DuplicateVote | DuplicateProposal | WrongInference


@wire(max_bytes=MAX_TX_BYTES + 301 * 1024)
class EvidenceEnvelope(Wire):
    """One piece of evidence as a standalone message (gossip, RPC, storage)."""

    evidence: Evidence

    @property
    def hash(self) -> Hash32:
        return sha256(self.encode())


def evidence_hash(evidence: Evidence) -> Hash32:
    return EvidenceEnvelope(evidence).hash


def evidence_height(evidence: Evidence) -> Height:
    """The height of the offence (not of the block that carries the evidence)."""
    if isinstance(evidence, DuplicateVote):
        return evidence.vote_a.height
    if isinstance(evidence, DuplicateProposal):
        return evidence.proposal_a.height
    return evidence.proposal.height


def evidence_round(evidence: Evidence) -> Round:
    if isinstance(evidence, DuplicateVote):
        return evidence.vote_a.round
    if isinstance(evidence, DuplicateProposal):
        return evidence.proposal_a.round
    return evidence.proposal.round


def is_evidence_in_window(offence_height: int, block_height: int, max_age: int) -> bool:
    """Whether block `block_height` may carry evidence of an offence at `offence_height`: a strictly earlier
    height (at least 1: there is no validator set of height 0) at most `max_age` back (consensus's block
    check, its pool and the VM all ask this)."""
    return 1 <= offence_height < block_height <= offence_height + max_age


class OffenceKind(enum.Enum):
    """What kind of offence; the value is part of the offence id's preimage (and so of state keys)."""

    VOTE = b"vote"
    PROPOSAL = b"proposal"
    INFERENCE = b"inference"


def compute_offence_id(kind: OffenceKind, offender: bytes, height: int, round_: int,
                       vote_type: int | None = None) -> Hash32:
    """`offence_id` from its parts (for observers that saw the conflicting messages, not the evidence)."""
    subkind = b"" if vote_type is None else bytes([vote_type])
    return sha256_concat(b"inferchain/offence\x00", kind.value, subkind, offender, height.to_bytes(8, "big"),
                         round_.to_bytes(4, "big"))


def offence_id(evidence: Evidence) -> Hash32:
    """One id per offence, however many ways it is proven: kind (and vote type), offender, height, round.

    A validator equivocating three ways at one step, or a proposal with several wrong outputs, is one
    offence. The VM stores this id in its state (so its bytes are part of the state root), and the
    evidence pool deduplicates by it, so the two never disagree on what was already punished.
    """
    if isinstance(evidence, DuplicateVote):
        kind, vote_type = OffenceKind.VOTE, int(evidence.vote_a.type)
    elif isinstance(evidence, DuplicateProposal):
        kind, vote_type = OffenceKind.PROPOSAL, None
    else:
        kind, vote_type = OffenceKind.INFERENCE, None
    return compute_offence_id(kind, evidence.offender, evidence_height(evidence), evidence_round(evidence),
                              vote_type)


def duplicate_vote(a: Vote, b: Vote) -> DuplicateVote:
    """Evidence in canonical order (by encoding), so one pair of votes has one evidence hash."""
    return DuplicateVote(a, b) if a.encode() < b.encode() else DuplicateVote(b, a)


def duplicate_proposal(a: Proposal, b: Proposal) -> DuplicateProposal:
    """Evidence in canonical order (by encoding), so one pair of proposals has one evidence hash."""
    return DuplicateProposal(a, b) if a.encode() < b.encode() else DuplicateProposal(b, a)


def validate_evidence_basic(evidence: Evidence, chain_id: str, verify: Verifier = verify_ed25519) -> None:
    """Raises InvalidEvidence (InvalidEvidenceSignature for a bad signature) unless `evidence` proves what
    it claims without any chain state: two validly signed conflicting messages of one signer at one
    height and round in canonical order, or a signed proposal whose transaction and claimed result are
    Merkle-proven against the header it signs (whether that output is wrong is the application's call).
    Cheap structural checks run before any signature is verified."""
    if isinstance(evidence, DuplicateVote):
        a, b = evidence.vote_a, evidence.vote_b
        if (a.validator, a.type, a.height, a.round) != (b.validator, b.type, b.height, b.round):
            raise InvalidEvidence("duplicate-vote evidence with votes of different signers or steps")
        if a.block_id == b.block_id:
            raise InvalidEvidence("duplicate-vote evidence with votes for the same block")
        if not a.encode() < b.encode():
            raise InvalidEvidence("duplicate-vote evidence not in canonical order")
        for v in (a, b):
            if not verify(v.validator, v.sign_bytes(chain_id), v.signature):
                raise InvalidEvidenceSignature("duplicate-vote evidence with a bad signature")
    elif isinstance(evidence, DuplicateProposal):
        pa, pb = evidence.proposal_a, evidence.proposal_b
        if (pa.proposer, pa.height, pa.round) != (pb.proposer, pb.height, pb.round):
            raise InvalidEvidence("duplicate-proposal evidence with proposals of different signers or rounds")
        if pa.block_id == pb.block_id:
            raise InvalidEvidence("duplicate-proposal evidence with proposals for the same block")
        if not pa.encode() < pb.encode():
            raise InvalidEvidence("duplicate-proposal evidence not in canonical order")
        for p in (pa, pb):
            if not verify(p.proposer, p.sign_bytes(chain_id), p.signature):
                raise InvalidEvidenceSignature("duplicate-proposal evidence with a bad signature")
    else:
        _validate_wrong_inference_basic(evidence, chain_id, verify)


def _validate_wrong_inference_basic(evidence: WrongInference, chain_id: str, verify: Verifier) -> None:
    p, header = evidence.proposal, evidence.header
    if header.block_id != p.block_id or header.height != p.height or header.chain_id != chain_id:
        raise InvalidEvidence("wrong-inference evidence whose header is not the one the proposal signs")
    if evidence.tx_proof.index != evidence.tx_index or evidence.result_proof.index != evidence.tx_index:
        raise InvalidEvidence("wrong-inference evidence whose proofs are for another transaction")
    if not verify_merkle_proof(header.txs_root, evidence.tx.hash, evidence.tx_proof):
        raise InvalidEvidence("wrong-inference evidence whose transaction is not in the block")
    if not verify_merkle_proof(header.results_root, evidence.result.encode(), evidence.result_proof):
        raise InvalidEvidence("wrong-inference evidence whose result is not in the block")
    if not verify(p.proposer, p.sign_bytes(chain_id), p.signature):
        raise InvalidEvidenceSignature("wrong-inference evidence with a bad proposal signature")
