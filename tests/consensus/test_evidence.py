"""Evidence checks and the pool: canonical order, signatures, age window, one entry per offence."""

from __future__ import annotations

import pytest

from consensus.evidence import EvidencePool, validate_block_evidence, validate_evidence
from core.errors import InvalidEvidence
from core.evidence import DuplicateVote, duplicate_vote, is_evidence_in_window
from core.hashing import sha256
from core.types import Timestamp
from core.votes import VoteType
from tests.consensus.sim.cluster import CHAIN_ID
from tests.consensus.test_state import make_world, signed_vote
from tests.core.test_evidence import wrong_inference

pytestmark = pytest.mark.consensus

WORLD = make_world([1, 1, 1, 1])
BAD = WORLD.keys[0]


def dup(h: int, r: int = 0, ids: tuple[bytes, bytes] = (b"a", b"b")) -> DuplicateVote:
    return duplicate_vote(signed_vote(BAD, VoteType.PRECOMMIT, h, r, sha256(ids[0])),
                          signed_vote(BAD, VoteType.PRECOMMIT, h, r, sha256(ids[1])))


def test_duplicate_vote_checks() -> None:
    ev = dup(5)
    validate_evidence(ev, CHAIN_ID, 5, 10)
    with pytest.raises(InvalidEvidence):
        validate_evidence(DuplicateVote(ev.vote_b, ev.vote_a), CHAIN_ID, 5, 10)  # not canonical
    with pytest.raises(InvalidEvidence):
        validate_evidence(ev, CHAIN_ID, 16, 10)  # too old
    with pytest.raises(InvalidEvidence):
        validate_evidence(ev, CHAIN_ID, 4, 10)  # from the future
    with pytest.raises(InvalidEvidence):
        validate_evidence(ev, "other-chain", 5, 10)
    same = signed_vote(BAD, VoteType.PRECOMMIT, 5, 0, sha256(b"a"))
    with pytest.raises(InvalidEvidence):
        validate_evidence(duplicate_vote(same, same.replace(timestamp=Timestamp(1)).signed(BAD, CHAIN_ID)),
                       CHAIN_ID, 5, 10)
    other = signed_vote(WORLD.keys[1], VoteType.PRECOMMIT, 5, 0, sha256(b"b"))
    with pytest.raises(InvalidEvidence):
        validate_evidence(duplicate_vote(ev.vote_a, other), CHAIN_ID, 5, 10)
    forged = ev.vote_b.replace(round=ev.vote_b.round)  # same fields, then break the signature
    forged = forged.replace(signature=ev.vote_a.signature)
    with pytest.raises(InvalidEvidence):
        validate_evidence(duplicate_vote(ev.vote_a, forged), CHAIN_ID, 5, 10)


def test_pool_dedups_offences_orders_oldest_first_and_expires() -> None:
    pool = EvidencePool(max_age=10)
    assert pool.add(dup(7), 8)
    assert not pool.add(dup(7), 8)
    assert not pool.add(dup(7, ids=(b"a", b"c")), 8)  # a third twin: the same offence
    assert pool.add(dup(5), 8)
    assert pool.pending(10, 8) == (dup(5), dup(7))
    assert pool.pending(1, 8) == (dup(5),)
    pool.mark_committed([dup(5)])
    assert pool.pending(10, 9) == (dup(7),)
    assert not pool.add(dup(5), 9)  # committed offences are not re-added from gossip
    assert pool.pending(10, 18) == ()  # expired
    assert not pool.add(dup(7), 18)


def test_pool_keeps_one_entry_per_offence_as_the_vm_punishes_it() -> None:
    """Two wrong outputs in one signed proposal are one offence (the VM slashes it once): once one piece
    is committed, the other is not proposed again for as long as it would otherwise stay pending."""
    pool = EvidencePool(max_age=10)
    first, second = wrong_inference(0), wrong_inference(1)
    assert pool.add(first, 6)
    assert not pool.add(second, 6)
    pool.mark_committed([first])
    assert pool.knows(second)
    assert not pool.add(second, 7)
    assert pool.pending(10, 7) == ()


def test_a_block_carries_evidence_of_earlier_heights_within_the_window() -> None:
    """One window for consensus's block check, its pool and the VM (`is_evidence_in_window`): evidence of
    height h goes in blocks h+1 .. h+max_age (the pool holds it back at h itself)."""
    ev = dup(5)
    for block_height in (6, 15):
        validate_block_evidence(ev, CHAIN_ID, block_height, 10)
    for block_height in (5, 4, 16):
        with pytest.raises(InvalidEvidence):
            validate_block_evidence(ev, CHAIN_ID, block_height, 10)
    pool = EvidencePool(max_age=10)
    assert pool.add(ev, 5)
    assert pool.pending(10, 5) == ()
    assert pool.pending(10, 6) == (ev,)
    assert [is_evidence_in_window(5, b, 10) for b in (5, 6, 15, 16)] == [False, True, True, False]
    assert not is_evidence_in_window(0, 1, 10)  # no set signs height 0: such "evidence" proves nothing
