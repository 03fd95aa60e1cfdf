"""Compact proposals: a signed proposal whose block names its transactions by hash
(docs/performance-throughput.md, "Compact proposals").

Peers already hold nearly every transaction of a proposal (they came through transaction gossip), so the
proposals topic carries the header, the results, the last commit, the evidence and the transactions' hashes;
a peer rebuilds the block from its mempool and fetches only what it lacks (`node.proposal_relay`). The
hashes are the transactions' full SHA-256 ids, not salted short ids: 32 bytes against ~450 for a transfer,
and no collision a proposer could grind, so there is no collision path to handle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from core.block import Block, ProposalBlock, validate_body, validate_proposal_signs, validate_tx_chains
from core.codec import MaxLen, Wire, wire
from core.errors import InvalidBlock
from core.evidence import Evidence
from core.header import Header, TxResult
from core.limits import MAX_BLOCK_EVIDENCE, MAX_BLOCK_TXS, MAX_COMPACT_PROPOSAL_BYTES
from core.tx import Transaction
from core.types import Hash32
from core.votes import Commit, Proposal


@wire(max_bytes=MAX_COMPACT_PROPOSAL_BYTES)
class CompactProposal(Wire):
    """A `ProposalBlock` with each transaction replaced by its hash; never larger than the full message (a
    hash is 32 bytes, a transaction more)."""

    proposal: Proposal
    header: Header
    tx_hashes: Annotated[tuple[Hash32, ...], MaxLen(MAX_BLOCK_TXS)]
    results: Annotated[tuple[TxResult, ...], MaxLen(MAX_BLOCK_TXS + 1)]  # as Block's
    last_commit: Commit | None
    evidence: Annotated[tuple[Evidence, ...], MaxLen(MAX_BLOCK_EVIDENCE)]

    def validate_wire(self) -> None:
        validate_proposal_signs(self.proposal, self.header)
        if len(set(self.tx_hashes)) != len(self.tx_hashes):
            raise ValueError("a transaction hash appears twice")

    def validate_basic(self) -> None:
        """The header's hashes match what the message carries (Block.validate_basic's rule over hashes), so
        a block rebuilt from transactions with these hashes passes it. Raises InvalidBlock."""
        validate_body(self.header, self.tx_hashes, self.results, self.last_commit, self.evidence)

    def missing(self, lookup: Callable[[bytes], Transaction | None]) -> tuple[list[Transaction | None], list[Hash32]]:
        """The transactions `lookup` finds (None where it does not) and the hashes of those it lacks."""
        found = [lookup(h) for h in self.tx_hashes]
        return found, [h for h, tx in zip(self.tx_hashes, found, strict=True) if tx is None]

    def rebuild(self, txs: Sequence[Transaction]) -> ProposalBlock:
        """The full proposal from the block's transactions in order; raises InvalidBlock if any is not the one
        named (by hash) or is for another chain."""
        if len(txs) != len(self.tx_hashes):
            raise InvalidBlock(f"block {self.header.height}: {len(txs)} transactions for {len(self.tx_hashes)} hashes")
        for tx, tx_hash in zip(txs, self.tx_hashes, strict=True):
            if tx.hash != tx_hash:
                raise InvalidBlock(f"block {self.header.height}: transaction {tx.hash.hex()[:16]} is not the one "
                                   f"named {tx_hash.hex()[:16]}")
        validate_tx_chains(self.header, tuple(txs))
        block = Block(self.header, tuple(txs), self.results, self.last_commit, self.evidence)
        return ProposalBlock(self.proposal, block)


def compact_of(message: ProposalBlock) -> CompactProposal:
    """The compact form of a full proposal (what a proposer publishes)."""
    b = message.block
    return CompactProposal(message.proposal, b.header, tuple(tx.hash for tx in b.txs), b.results, b.last_commit,
                           b.evidence)
