"""Evidence checks and the pending-evidence pool (dedup by offence, expiry by height).

What proves an offence without state is core's (`core.evidence.validate_evidence_basic`); consensus adds
the height window (`core.evidence.is_evidence_in_window`: a block carries evidence of strictly earlier
heights, at most `max_age` back). Whether the offender was a validator at the offence height, still has
stake to slash, and was not punished already, is the application's (`vm.process.evidence_problem`).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import InvalidEvidence
from core.evidence import (
    Evidence,
    Verifier,
    evidence_hash,
    evidence_height,
    is_evidence_in_window,
    offence_id,
    validate_evidence_basic,
)
from core.keys import verify
from core.types import Hash32


def validate_evidence(evidence: Evidence, chain_id: str, height: int, max_age: int,
                   verifier: Verifier = verify) -> None:
    """Raises InvalidEvidence unless `evidence` proves what it claims (core's stateless rules) and is at
    most `max_age` old at `height` (the height of the block that would include it)."""
    h = evidence_height(evidence)
    if h > height or h + max_age < height:
        raise InvalidEvidence(f"evidence of height {h} is outside the window at height {height}")
    validate_evidence_basic(evidence, chain_id, verifier)


def validate_block_evidence(evidence: Evidence, chain_id: str, block_height: int, max_age: int,
                            verifier: Verifier = verify) -> None:
    """Raises InvalidEvidence unless block `block_height` may carry `evidence`: inside the window and
    proving what it claims (core's stateless rules)."""
    h = evidence_height(evidence)
    if not is_evidence_in_window(h, block_height, max_age):
        raise InvalidEvidence(f"evidence of height {h} is outside the window of block {block_height}")
    validate_evidence_basic(evidence, chain_id, verifier)


class EvidencePool:
    """Verified evidence waiting for a block: one entry per offence, dropped once committed or expired."""

    def __init__(self, max_age: int) -> None:
        self.max_age = max_age
        self._pending: dict[Hash32, tuple[int, Hash32, Evidence]] = {}
        self._committed: dict[Hash32, int] = {}  # offence id -> its height, kept until it expires

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, evidence: Evidence, height: int) -> bool:
        """Add checked evidence; False when the offence is already pending, committed or expired."""
        key = offence_id(evidence)
        h = int(evidence_height(evidence))
        if key in self._pending or key in self._committed or h + self.max_age < height:
            return False
        self._pending[key] = (h, evidence_hash(evidence), evidence)
        return True

    def pending(self, limit: int, height: int) -> tuple[Evidence, ...]:
        """Oldest first (then by hash): what a proposer at `height` includes (evidence of `height` itself
        waits for the next block)."""
        self.prune(height)
        items = sorted((t for t in self._pending.values() if is_evidence_in_window(t[0], height, self.max_age)),
                       key=lambda t: (t[0], bytes(t[1])))
        return tuple(e for _, _, e in items[:limit])

    def mark_committed(self, evidence: Iterable[Evidence]) -> None:
        for e in evidence:
            key = offence_id(e)
            self._pending.pop(key, None)
            self._committed[key] = int(evidence_height(e))

    def knows(self, evidence: Evidence) -> bool:
        """The offence is already pending or committed (no need to check this copy)."""
        key = offence_id(evidence)
        return key in self._pending or key in self._committed

    def prune(self, height: int) -> None:
        cutoff = height - self.max_age
        for key in [k for k, (h, _, _) in self._pending.items() if h < cutoff]:
            del self._pending[key]
        for key in [k for k, h in self._committed.items() if h < cutoff]:
            del self._committed[key]
