"""Evidence checks and the pending-evidence pool (dedup, expiry by height).

Consensus checks what needs no state: two signed, conflicting messages of one signer at one height and
round (DuplicateVote, DuplicateProposal), or a signed proposal whose transaction and result are proven
against the header it signs (WrongInference; whether the output is wrong is the application's call), and
that the evidence is not older than `max_age` heights. Whether the offender still has stake to slash, and
whether it was already punished, is the application's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.errors import InvalidEvidence
from core.evidence import DuplicateProposal, DuplicateVote, Evidence, WrongInference, evidence_hash
from core.keys import verify
from core.merkle import verify_merkle_proof
from core.types import Hash32
from core.votes import Proposal

Verifier = Callable[[bytes, bytes, bytes], bool]
EvidenceKey = tuple[object, ...]


def evidence_height(evidence: Evidence) -> int:
    if isinstance(evidence, DuplicateVote):
        return int(evidence.vote_a.height)
    if isinstance(evidence, DuplicateProposal):
        return int(evidence.proposal_a.height)
    return int(evidence.proposal.height)


def evidence_key(evidence: Evidence) -> EvidenceKey:
    """One key per offence: a validator equivocating three ways at one step is one offence."""
    if isinstance(evidence, DuplicateVote):
        v = evidence.vote_a
        return ("vote", bytes(v.validator), int(v.height), int(v.round), int(v.type))
    if isinstance(evidence, DuplicateProposal):
        p = evidence.proposal_a
        return ("proposal", bytes(p.proposer), int(p.height), int(p.round))
    return ("inference", bytes(evidence.proposal.proposer), bytes(evidence.header.block_id),
            int(evidence.tx_index))


def check_evidence(evidence: Evidence, chain_id: str, height: int, max_age: int,
                   verifier: Verifier = verify) -> None:
    """Raises InvalidEvidence unless `evidence` proves what it claims and is at most `max_age` old at
    `height` (the height of the block that would include it)."""
    h = evidence_height(evidence)
    if h > height or h + max_age < height:
        raise InvalidEvidence(f"evidence of height {h} is outside the window at height {height}")
    if isinstance(evidence, DuplicateVote):
        a, b = evidence.vote_a, evidence.vote_b
        if (a.validator, a.type, a.height, a.round) != (b.validator, b.type, b.height, b.round):
            raise InvalidEvidence("duplicate-vote evidence with votes of different signers or steps")
        if a.block_id == b.block_id:
            raise InvalidEvidence("duplicate-vote evidence with votes for the same block")
        if not a.encode() < b.encode():
            raise InvalidEvidence("duplicate-vote evidence not in canonical order")
        for v in (a, b):
            if not verifier(v.validator, v.sign_bytes(chain_id), v.signature):
                raise InvalidEvidence("duplicate-vote evidence with a bad signature")
    elif isinstance(evidence, DuplicateProposal):
        pa, pb = evidence.proposal_a, evidence.proposal_b
        if (pa.proposer, pa.height, pa.round) != (pb.proposer, pb.height, pb.round):
            raise InvalidEvidence("duplicate-proposal evidence with proposals of different signers or rounds")
        if pa.block_id == pb.block_id:
            raise InvalidEvidence("duplicate-proposal evidence with proposals for the same block")
        if not pa.encode() < pb.encode():
            raise InvalidEvidence("duplicate-proposal evidence not in canonical order")
        for p in (pa, pb):
            if not verifier(p.proposer, p.sign_bytes(chain_id), p.signature):
                raise InvalidEvidence("duplicate-proposal evidence with a bad signature")
    else:
        check_wrong_inference_proofs(evidence, chain_id, verifier)


def check_wrong_inference_proofs(evidence: WrongInference, chain_id: str, verifier: Verifier = verify) -> None:
    p, header = evidence.proposal, evidence.header
    if header.block_id != p.block_id or header.height != p.height or header.chain_id != chain_id:
        raise InvalidEvidence("wrong-inference evidence whose header is not the one the proposal signs")
    if not verifier(p.proposer, p.sign_bytes(chain_id), p.signature):
        raise InvalidEvidence("wrong-inference evidence with a bad proposal signature")
    if evidence.tx_proof.index != evidence.tx_index or evidence.result_proof.index != evidence.tx_index:
        raise InvalidEvidence("wrong-inference evidence whose proofs are for another transaction")
    if not verify_merkle_proof(header.txs_root, evidence.tx.hash, evidence.tx_proof):
        raise InvalidEvidence("wrong-inference evidence whose transaction is not in the block")
    if not verify_merkle_proof(header.results_root, evidence.result.encode(), evidence.result_proof):
        raise InvalidEvidence("wrong-inference evidence whose result is not in the block")


def duplicate_proposal(a: Proposal, b: Proposal) -> DuplicateProposal:
    """Evidence in canonical order (by encoding), so one offence has one evidence hash."""
    return DuplicateProposal(a, b) if a.encode() < b.encode() else DuplicateProposal(b, a)


class EvidencePool:
    """Verified evidence waiting for a block: one entry per offence, dropped once committed or expired."""

    def __init__(self, max_age: int) -> None:
        self.max_age = max_age
        self._pending: dict[EvidenceKey, tuple[int, Hash32, Evidence]] = {}
        self._committed: dict[EvidenceKey, int] = {}  # offence -> its height, kept until it expires

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, evidence: Evidence, height: int) -> bool:
        """Add checked evidence; False when the offence is already pending, committed or expired."""
        key = evidence_key(evidence)
        h = evidence_height(evidence)
        if key in self._pending or key in self._committed or h + self.max_age < height:
            return False
        self._pending[key] = (h, evidence_hash(evidence), evidence)
        return True

    def pending(self, limit: int, height: int) -> tuple[Evidence, ...]:
        """Oldest first (then by hash): what a proposer at `height` includes."""
        self.prune(height)
        items = sorted(self._pending.values(), key=lambda t: (t[0], bytes(t[1])))
        return tuple(e for _, _, e in items[:limit])

    def mark_committed(self, evidence: Iterable[Evidence]) -> None:
        for e in evidence:
            key = evidence_key(e)
            self._pending.pop(key, None)
            self._committed[key] = evidence_height(e)

    def is_committed(self, evidence: Evidence) -> bool:
        return evidence_key(evidence) in self._committed

    def knows(self, evidence: Evidence) -> bool:
        """The offence is already pending or committed (no need to check this copy)."""
        key = evidence_key(evidence)
        return key in self._pending or key in self._committed

    def prune(self, height: int) -> None:
        cutoff = height - self.max_age
        for key in [k for k, (h, _, _) in self._pending.items() if h < cutoff]:
            del self._pending[key]
        for key in [k for k, h in self._committed.items() if h < cutoff]:
            del self._committed[key]
