"""Blocks, and the proposal message that carries one."""

from __future__ import annotations

from typing import Annotated

from core.codec import MaxLen, Wire, wire
from core.errors import InvalidBlock
from core.evidence import Evidence, evidence_hash
from core.hashing import ZERO_HASH, sha256
from core.header import Header, TxResult, is_build_round_ok
from core.limits import MAX_BLOCK_BYTES, MAX_BLOCK_EVIDENCE, MAX_BLOCK_TXS, MAX_PROPOSAL_MESSAGE_BYTES
from core.merkle import merkle_root
from core.tx import Transaction
from core.types import Hash32, Height
from core.votes import Commit, Proposal


@wire(max_bytes=MAX_BLOCK_BYTES)
class Block(Wire):
    header: Header
    txs: Annotated[tuple[Transaction, ...], MaxLen(MAX_BLOCK_TXS)]
    results: Annotated[tuple[TxResult, ...], MaxLen(MAX_BLOCK_TXS)]
    last_commit: Commit | None  # None only in block 1
    evidence: Annotated[tuple[Evidence, ...], MaxLen(MAX_BLOCK_EVIDENCE)]

    @property
    def id(self) -> Hash32:
        return self.header.block_id

    @property
    def height(self) -> Height:
        return self.header.height

    def validate_basic(self) -> None:
        """Checks that need no state: the header's hashes match the body. Raises InvalidBlock."""
        h = self.header
        if len(self.results) != len(self.txs):
            raise InvalidBlock(f"block {h.height}: {len(self.txs)} txs but {len(self.results)} results")
        if compute_txs_root(self.txs) != h.txs_root:
            raise InvalidBlock(f"block {h.height}: txs_root does not match the transactions")
        if compute_results_root(self.results) != h.results_root:
            raise InvalidBlock(f"block {h.height}: results_root does not match the results")
        if compute_last_commit_hash(self.last_commit) != h.last_commit_hash:
            raise InvalidBlock(f"block {h.height}: last_commit_hash does not match the last commit")
        if compute_evidence_hash(self.evidence) != h.evidence_hash:
            raise InvalidBlock(f"block {h.height}: evidence_hash does not match the evidence")
        if (h.height == 1) != (self.last_commit is None):
            raise InvalidBlock(f"block {h.height}: last commit must be absent exactly at height 1")
        if self.last_commit is not None and (
                self.last_commit.height != h.height - 1 or self.last_commit.block_id != h.last_block_id):
            raise InvalidBlock(f"block {h.height}: last commit is not for the previous block")
        for tx in self.txs:
            if tx.chain_id != h.chain_id:
                raise InvalidBlock(f"block {h.height}: transaction {tx.hash.hex()[:16]} is for another chain")


def compute_txs_root(txs: tuple[Transaction, ...]) -> Hash32:
    return merkle_root([tx.hash for tx in txs])


def compute_results_root(results: tuple[TxResult, ...]) -> Hash32:
    return merkle_root([r.encode() for r in results])


def compute_last_commit_hash(commit: Commit | None) -> Hash32:
    return ZERO_HASH if commit is None else commit.hash


def compute_evidence_hash(evidence: tuple[Evidence, ...]) -> Hash32:
    return merkle_root([evidence_hash(e) for e in evidence])


@wire(max_bytes=MAX_PROPOSAL_MESSAGE_BYTES)
class ProposalBlock(Wire):
    """What a proposer gossips and its signer persists: the signed proposal with its block."""

    proposal: Proposal
    block: Block

    def validate_wire(self) -> None:
        if self.proposal.block_id != self.block.id:
            raise ValueError("proposal does not sign this block")
        if self.proposal.height != self.block.height:
            raise ValueError("proposal height differs from the block's")
        p = self.proposal
        if not is_build_round_ok(int(self.block.header.round), int(p.round), int(p.pol_round)):
            raise ValueError(f"a proposal of round {int(p.round)} (POL round {int(p.pol_round)}) carries a block "
                             f"built in round {int(self.block.header.round)}")

    @property
    def hash(self) -> Hash32:
        return sha256(self.encode())
