"""Evidence checks and the pending-evidence pool (dedup, expiry by height)."""

from __future__ import annotations

from core.evidence import Evidence
from core.types import Height


class EvidencePool:
    """Verified evidence waiting to be included in a block."""

    def __init__(self, max_age: int) -> None:
        self.max_age = max_age

    def add(self, evidence: Evidence, height: Height) -> bool:
        raise NotImplementedError

    def pending(self, limit: int) -> tuple[Evidence, ...]:
        raise NotImplementedError
