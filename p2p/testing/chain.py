"""A deterministic synthetic chain of wire-valid blocks with signed commits, for tests, p2p.testing.node and bench.

The blocks pass `Block.validate_basic` and their commits carry real precommit signatures of a known
validator set, but no VM ran: state and results roots are placeholders. Never use outside tests and benches.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.hashing import ZERO_HASH, sha256
from core.header import PROTOCOL_VERSION, Header, TxResult, TxStatus
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Gas, Hash32, Height, Round, SignatureBytes, Timestamp
from core.votes import Commit, Vote, VoteType
from p2p.messages import StoredBlock

SEED_PHRASE = "inferchain p2p test chain (public, insecure)"
_ZERO_SIG = SignatureBytes(b"\x00" * 64)


def validator_keys(n: int = 4) -> list[PrivateKey]:
    return [PrivateKey.derive(SEED_PHRASE, "validator", i) for i in range(n)]


def account_key(i: int = 0) -> PrivateKey:
    return PrivateKey.derive(SEED_PHRASE, "account", i)


def make_tx(chain_id: str, nonce: int, payload_bytes: int = 100, key: PrivateKey | None = None) -> Transaction:
    payload = sha256(nonce.to_bytes(8, "big")) * (payload_bytes // 32 + 1)
    return Transaction.create(key or account_key(), chain_id=chain_id, nonce=nonce, gas_limit=1000, fee=1,
                              kind=0, payload=payload[:payload_bytes])


def make_vote(chain_id: str, key: PrivateKey, height: int, round_: int = 0,
              vote_type: VoteType = VoteType.PREVOTE, block_id: Hash32 | None = None, ts: int = 0) -> Vote:
    poi = sha256(b"poi" + height.to_bytes(8, "big")) if vote_type is VoteType.PRECOMMIT else None
    unsigned = Vote(vote_type, Height(height), Round(round_), block_id, Timestamp(ts), key.public_key, poi,
                    _ZERO_SIG)
    return unsigned.signed(key, chain_id)


@dataclass(frozen=True, slots=True)
class TestChain:
    chain_id: str
    blocks: tuple[Block, ...]  # blocks[i] is height i + 1
    commits: tuple[Commit, ...]

    def stored(self, height: int) -> StoredBlock | None:
        if not 1 <= height <= len(self.blocks):
            return None
        return StoredBlock(Height(height), self.blocks[height - 1].encode(), self.commits[height - 1].encode())

    @property
    def head(self) -> Block:
        return self.blocks[-1]


def build_chain(chain_id: str, length: int, *, txs_per_block: int = 0, tx_payload: int = 100,
                validators: int = 4) -> TestChain:
    keys = validator_keys(validators)
    blocks: list[Block] = []
    commits: list[Commit] = []
    last_commit: Commit | None = None
    last_id = ZERO_HASH
    nonce = 0
    for h in range(1, length + 1):
        txs = []
        for _ in range(txs_per_block):
            txs.append(make_tx(chain_id, nonce, tx_payload))
            nonce += 1
        results = tuple(TxResult(TxStatus.OK, Gas(0), (), b"", "") for _ in txs)
        header = Header(
            version=PROTOCOL_VERSION, chain_id=chain_id, height=Height(h), round=Round(0), time=Timestamp(1_700_000_000_000 + h),
            last_block_id=last_id, proposer=keys[h % validators].address,
            txs_root=compute_txs_root(tuple(txs)), results_root=compute_results_root(results),
            state_root=sha256(b"state" + h.to_bytes(8, "big")), validators_hash=ZERO_HASH,
            next_validators_hash=ZERO_HASH, last_commit_hash=compute_last_commit_hash(last_commit),
            evidence_hash=compute_evidence_hash(()), poi_reveal=None,
        )
        block = Block(header, tuple(txs), results, last_commit, ())
        precommits = tuple(
            sorted((make_vote(chain_id, k, h, 0, VoteType.PRECOMMIT, block.id, h) for k in keys),
                   key=lambda v: v.validator_address)
        )
        commit = Commit(Height(h), Round(0), block.id, precommits)
        blocks.append(block)
        commits.append(commit)
        last_commit, last_id = commit, block.id
    return TestChain(chain_id, tuple(blocks), tuple(commits))
