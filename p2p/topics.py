"""Gossip topics: one per message kind per chain, so nodes of different chains never share a mesh."""

from __future__ import annotations

import enum

from p2p.limits import TopicLimits


class TopicKind(enum.Enum):
    TXS = "txs"  # TxBatch
    PROPOSALS = "proposals"  # core.block.ProposalBlock
    VOTES = "votes"  # core.votes.Vote
    EVIDENCE = "evidence"  # core.evidence.EvidenceEnvelope


def topic_name(chain_id: str, kind: TopicKind) -> str:
    return f"/inferchain/{chain_id}/{kind.value}/1"


def topic_cap(limits: TopicLimits, kind: TopicKind) -> int:
    return {
        TopicKind.TXS: limits.tx_batch,
        TopicKind.PROPOSALS: limits.proposal,
        TopicKind.VOTES: limits.vote,
        TopicKind.EVIDENCE: limits.evidence,
    }[kind]
