"""Blocks, and the proposal message that carries one."""

from __future__ import annotations

from collections.abc import Sequence
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
    # One per transaction, then at most one system result (`is_results_count_ok`).
    results: Annotated[tuple[TxResult, ...], MaxLen(MAX_BLOCK_TXS + 1)]
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
        validate_body(self.header, tuple(tx.hash for tx in self.txs), self.results, self.last_commit, self.evidence)
        validate_tx_chains(self.header, self.txs)


def validate_body(h: Header, tx_hashes: tuple[Hash32, ...], results: tuple[TxResult, ...],
                  last_commit: Commit | None, evidence: tuple[Evidence, ...]) -> None:
    """The header's hashes match a body given by its transactions' hashes (a full block, or a compact proposal
    before its transactions are found). Raises InvalidBlock."""
    if not is_results_count_ok(len(tx_hashes), len(results)):
        raise InvalidBlock(f"block {h.height}: {len(tx_hashes)} txs but {len(results)} results")
    if merkle_root(list(tx_hashes)) != h.txs_root:
        raise InvalidBlock(f"block {h.height}: txs_root does not match the transactions")
    if compute_results_root(results) != h.results_root:
        raise InvalidBlock(f"block {h.height}: results_root does not match the results")
    if compute_last_commit_hash(last_commit) != h.last_commit_hash:
        raise InvalidBlock(f"block {h.height}: last_commit_hash does not match the last commit")
    if compute_evidence_hash(evidence) != h.evidence_hash:
        raise InvalidBlock(f"block {h.height}: evidence_hash does not match the evidence")
    if (h.height == 1) != (last_commit is None):
        raise InvalidBlock(f"block {h.height}: last commit must be absent exactly at height 1")
    if last_commit is not None and (last_commit.height != h.height - 1 or last_commit.block_id != h.last_block_id):
        raise InvalidBlock(f"block {h.height}: last commit is not for the previous block")


def is_results_count_ok(n_txs: int, n_results: int) -> bool:
    """One result per transaction, in order, then at most one system result: the verdict of a deferred
    registration activating in the block (vm/deferred.py says when one is due; the results root covers it)."""
    return n_results in (n_txs, n_txs + 1)


def validate_tx_chains(h: Header, txs: tuple[Transaction, ...]) -> None:
    """Every transaction of the block is for the header's chain. Raises InvalidBlock."""
    for tx in txs:
        if tx.chain_id != h.chain_id:
            raise InvalidBlock(f"block {h.height}: transaction {tx.hash.hex()[:16]} is for another chain")


def compute_txs_root(txs: tuple[Transaction, ...]) -> Hash32:
    return merkle_root([tx.hash for tx in txs])


def compute_results_root(results: Sequence[TxResult]) -> Hash32:
    # The shared encodings make equal neighbours one object, whose hashes merkle_root computes once.
    return merkle_root(list(encode_results(results)))


def encode_results(results: Sequence[TxResult]) -> tuple[bytes, ...]:
    """Each result's encoding. Results without outputs take few values (a block of transfers: one), and equal
    values encode alike (one canonical encoding), so each distinct one is encoded once and its bytes shared; a
    result with outputs is encoded as it is (its tensors are large, and unique)."""
    memo: dict[TxResult, bytes] = {}
    raws = []
    for r in results:
        if r.outputs:
            raws.append(r.encode())
            continue
        raw = memo.get(r)
        if raw is None:
            raw = memo[r] = r.encode()
        raws.append(raw)
    return tuple(raws)


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
        validate_proposal_signs(self.proposal, self.block.header)

    @property
    def hash(self) -> Hash32:
        return sha256(self.encode())


def validate_proposal_signs(p: Proposal, header: Header) -> None:
    """The proposal signs this header's block, at its height, in a round that may carry a block built in the
    header's round. Raises ValueError (a wire rule: the codec reports it as a DecodeError)."""
    if p.block_id != header.block_id:
        raise ValueError("proposal does not sign this block")
    if p.height != header.height:
        raise ValueError("proposal height differs from the block's")
    if not is_build_round_ok(int(header.round), int(p.round), int(p.pol_round)):
        raise ValueError(f"a proposal of round {int(p.round)} (POL round {int(p.pol_round)}) carries a block "
                         f"built in round {int(header.round)}")
