"""Evidence of misbehaviour: proofs anyone can check, included in blocks and punished by the VM."""

from __future__ import annotations

from core.codec import U32, Wire, wire
from core.hashing import sha256
from core.header import Header, TxResult
from core.limits import MAX_TX_BYTES
from core.merkle import MerkleProof
from core.tx import Transaction
from core.types import Hash32, PublicKeyBytes
from core.votes import Proposal, Vote


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
