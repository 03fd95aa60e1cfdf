"""Core's stateless evidence rules and offence ids: what gossip, consensus and the VM all agree on."""

from __future__ import annotations

import pytest

from core.errors import InvalidEvidence, InvalidSignature
from core.evidence import (
    DuplicateProposal,
    DuplicateVote,
    WrongInference,
    duplicate_proposal,
    duplicate_vote,
    evidence_height,
    offence_id,
    validate_evidence_basic,
)
from core.hashing import ZERO_HASH, sha256
from core.header import PROTOCOL_VERSION, Header, TxResult, TxStatus
from core.keys import PrivateKey
from core.merkle import merkle_proof, merkle_root
from core.tx import Transaction
from core.types import Gas, Hash32, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Proposal, Vote, VoteType

pytestmark = pytest.mark.core

CHAIN = "evidence-test"
KEY = PrivateKey(b"\x07" * 32)
OTHER = PrivateKey(b"\x08" * 32)


def vote(block: bytes, key: PrivateKey = KEY, h: int = 5, r: int = 1) -> Vote:
    return Vote(VoteType.PRECOMMIT, Height(h), Round(r), sha256(block), Timestamp(1), key.public_key, ZERO_HASH,
                ZERO_SIGNATURE).signed(key, CHAIN)


def proposal(block_id: Hash32, h: int = 5, r: int = 1) -> Proposal:
    return Proposal(Height(h), Round(r), -1, block_id, Timestamp(1), KEY.public_key, ZERO_SIGNATURE).signed(KEY, CHAIN)


def wrong_inference(index: int) -> WrongInference:
    """A signed proposal of a two-transaction block; the evidence names transaction `index`."""
    txs = tuple(Transaction.create(OTHER, chain_id=CHAIN, nonce=n, gas_limit=10, fee=10, kind=1, payload=b"x")
                for n in range(2))
    results = tuple(TxResult(TxStatus.OK, Gas(n), (), b"", "") for n in range(2))
    tx_leaves, result_leaves = [tx.hash for tx in txs], [r.encode() for r in results]
    header = Header(PROTOCOL_VERSION, CHAIN, Height(5), Round(0), Timestamp(9), ZERO_HASH, KEY.address,
                    merkle_root(tx_leaves), merkle_root(result_leaves), ZERO_HASH, ZERO_HASH, ZERO_HASH,
                    ZERO_HASH, ZERO_HASH, None)
    return WrongInference(proposal(header.block_id), header, index, txs[index], results[index],
                          merkle_proof(tx_leaves, index), merkle_proof(result_leaves, index))


def test_offence_ids_are_pinned_because_the_vm_stores_them_in_state() -> None:
    # Vectors computed with the VM's former `evidence_identity`: changing them changes state roots.
    assert offence_id(duplicate_vote(vote(b"a"), vote(b"b"))).hex() == (
        "f1ecf4ee93d36402698efe997fde199d04ccb908467d624f3aa88726ed394469")
    assert offence_id(duplicate_proposal(proposal(sha256(b"a")), proposal(sha256(b"b")))).hex() == (
        "fdbc7a46bcfd6537f5d19a6fe748341e94c6e692165f99f8e7278c03a0b50fa8")
    assert offence_id(wrong_inference(0)).hex() == (
        "f4c0012764faa21af4912bf5fd94d0469c5166c8872e1b2856ebbe269baa94fb")


def test_one_offence_however_it_is_proven() -> None:
    twins = [vote(b"a"), vote(b"b"), vote(b"c")]
    assert offence_id(duplicate_vote(twins[0], twins[1])) == offence_id(duplicate_vote(twins[1], twins[2]))
    # Several wrong outputs in one signed proposal are one offence (the VM punishes it once).
    assert offence_id(wrong_inference(0)) == offence_id(wrong_inference(1))
    assert offence_id(duplicate_vote(vote(b"a"), vote(b"b"))) != offence_id(
        duplicate_vote(vote(b"a", r=2), vote(b"b", r=2)))
    assert evidence_height(wrong_inference(1)) == 5


def test_duplicate_votes_must_be_in_canonical_order_and_signed() -> None:
    ev = duplicate_vote(vote(b"a"), vote(b"b"))
    validate_evidence_basic(ev, CHAIN)
    with pytest.raises(InvalidEvidence, match="canonical order"):
        validate_evidence_basic(DuplicateVote(ev.vote_b, ev.vote_a), CHAIN)
    with pytest.raises(InvalidEvidence, match="same block"):
        validate_evidence_basic(DuplicateVote(ev.vote_a, ev.vote_a), CHAIN)
    with pytest.raises(InvalidEvidence, match="different signers"):
        validate_evidence_basic(duplicate_vote(vote(b"a"), vote(b"b", key=OTHER)), CHAIN)
    forged = duplicate_vote(ev.vote_a, ev.vote_b.replace(timestamp=Timestamp(2)))
    # A bad signature is both invalid evidence (consensus) and a bad signature (gossip scoring).
    with pytest.raises(InvalidEvidence, match="bad signature") as caught:
        validate_evidence_basic(forged, CHAIN)
    assert isinstance(caught.value, InvalidSignature)
    with pytest.raises(InvalidSignature):
        validate_evidence_basic(ev, "other-chain")


def test_duplicate_proposals_must_be_in_canonical_order_and_signed() -> None:
    ev = duplicate_proposal(proposal(sha256(b"a")), proposal(sha256(b"b")))
    validate_evidence_basic(ev, CHAIN)
    with pytest.raises(InvalidEvidence, match="canonical order"):
        validate_evidence_basic(DuplicateProposal(ev.proposal_b, ev.proposal_a), CHAIN)
    with pytest.raises(InvalidEvidence, match="different signers or rounds"):
        validate_evidence_basic(duplicate_proposal(ev.proposal_a, proposal(sha256(b"b"), r=2)), CHAIN)
    with pytest.raises(InvalidSignature):
        validate_evidence_basic(duplicate_proposal(ev.proposal_a, ev.proposal_b.replace(timestamp=Timestamp(2))),
                                CHAIN)


def test_wrong_inference_must_prove_its_transaction_and_result_against_the_signed_header() -> None:
    ev = wrong_inference(1)
    validate_evidence_basic(ev, CHAIN)
    with pytest.raises(InvalidEvidence, match="another transaction"):
        validate_evidence_basic(ev.replace(tx_index=0), CHAIN)
    with pytest.raises(InvalidEvidence, match="transaction is not in the block"):
        validate_evidence_basic(ev.replace(tx=wrong_inference(0).tx), CHAIN)
    with pytest.raises(InvalidEvidence, match="result is not in the block"):
        validate_evidence_basic(ev.replace(result=wrong_inference(0).result), CHAIN)
    with pytest.raises(InvalidEvidence, match="header is not the one"):
        validate_evidence_basic(ev.replace(header=ev.header.replace(time=Timestamp(10))), CHAIN)
    with pytest.raises(InvalidSignature):
        validate_evidence_basic(ev.replace(proposal=ev.proposal.replace(timestamp=Timestamp(2))), CHAIN)
