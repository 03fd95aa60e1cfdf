"""Stateless checks of each topic's messages with core's wire types: decode, chain id, signatures.

Each check takes the message bytes and returns the decoded value or raises a RemoteError whose class
says what was wrong (DecodeError, WrongChain, InvalidSignature, ...). Checks that need chain state, such as
validator-set membership, belong to the node's hook, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.block import ProposalBlock
from core.compact import CompactProposal
from core.errors import DecodeError, InvalidSignature, InvalidTransaction
from core.evidence import EvidenceEnvelope, WrongInference, validate_evidence_basic
from core.tx import Transaction
from core.votes import Vote
from p2p.errors import WrongChain
from p2p.messages import TxBatch
from p2p.topics import TopicKind

EnvelopeCheck = Callable[[bytes], Any]


TxVerifier = Callable[[Transaction, bytes], bool]


def decode_tx_batch(data: bytes, chain_id: str, verify: TxVerifier | None = None) -> TxBatch:
    """`verify(tx, tx_hash)` lets the node use its verified-signature cache (each signature checked once
    per node, docs/design.md §4.11); by default every signature is verified here."""
    batch = TxBatch.decode(data)
    if not batch.txs:
        raise DecodeError("empty transaction batch")
    seen: set[bytes] = set()
    for tx in batch.txs:
        if tx.chain_id != chain_id:
            raise WrongChain(f"transaction for chain {tx.chain_id!r}, expected {chain_id!r}")
        tx_hash = tx.hash
        if tx_hash in seen:
            raise InvalidTransaction(f"transaction {tx_hash.hex()[:16]} twice in one batch")
        seen.add(tx_hash)
        if not (verify(tx, tx_hash) if verify is not None else tx.verify_signature()):
            raise InvalidSignature(f"transaction {tx_hash.hex()[:16]}: bad signature")
    return batch


def decode_proposal(data: bytes, chain_id: str) -> ProposalBlock | CompactProposal:
    """A proposal with its full block, or its compact form (transactions by hash, what proposers publish):
    the two encode as msgpack arrays of different lengths, so a message decodes as at most one of them."""
    message: ProposalBlock | CompactProposal
    try:
        message = CompactProposal.decode(data)
    except DecodeError:
        message = ProposalBlock.decode(data)
    header = message.header if isinstance(message, CompactProposal) else message.block.header
    if header.chain_id != chain_id:
        raise WrongChain(f"block for chain {header.chain_id!r}, expected {chain_id!r}")
    if not message.proposal.verify_signature(chain_id):
        raise InvalidSignature(f"proposal {message.proposal.height}/{message.proposal.round}: bad signature")
    if isinstance(message, CompactProposal):
        message.validate_basic()
    else:
        message.block.validate_basic()
    return message


def decode_vote(data: bytes, chain_id: str) -> Vote:
    """A vote signs over the chain id, so a vote of another chain fails here as a bad signature."""
    vote = Vote.decode(data)
    if not vote.verify_signature(chain_id):
        raise InvalidSignature(f"vote {vote.height}/{vote.round}/{vote.type.name}: bad signature")
    return vote


def decode_evidence(data: bytes, chain_id: str) -> EvidenceEnvelope:
    """Core's stateless evidence rules (the same consensus applies, so nothing is relayed that consensus
    would refuse); re-running a model (wrong inference) and validator-set membership are the node's hook."""
    envelope = EvidenceEnvelope.decode(data)
    ev = envelope.evidence
    if isinstance(ev, WrongInference) and ev.header.chain_id != chain_id:
        raise WrongChain(f"evidence for chain {ev.header.chain_id!r}, expected {chain_id!r}")
    validate_evidence_basic(ev, chain_id)
    return envelope


def core_envelopes(chain_id: str) -> dict[TopicKind, EnvelopeCheck]:
    """The default envelope check of every topic, bound to `chain_id`."""
    return {
        TopicKind.TXS: lambda data: decode_tx_batch(data, chain_id),
        TopicKind.PROPOSALS: lambda data: decode_proposal(data, chain_id),
        TopicKind.VOTES: lambda data: decode_vote(data, chain_id),
        TopicKind.EVIDENCE: lambda data: decode_evidence(data, chain_id),
    }
