"""What each attack sends, built with the real wire types (docs/security.md lists the attacks and defences).

- `lying_status`: a peer that claims a height it does not have and answers every block request NOT_FOUND.
- `unfunded_batches`: validly signed transactions from keys that hold nothing, in gossip batches.
- `wrong_round_proposals`: proposals signed by a validator's key for rounds it does not propose in, each
  carrying a heavy (but well-formed) block.
- `false_wrong_inference`: evidence built from a public proposal with an inference, claiming its (correct)
  output is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from core.block import Block, ProposalBlock, compute_last_commit_hash, compute_results_root, compute_txs_root
from core.evidence import EvidenceEnvelope
from core.hashing import sha256
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Amount, Height, Round, SignatureBytes, Timestamp
from core.votes import Commit, Proposal, Vote
from p2p.messages import ChainStatus, StoredBlock, TxBatch, VotesRequest
from p2p.service import P2PService
from vm.evidence import make_wrong_inference
from vm.txs import Transfer, build_tx

LIE_HEIGHT = 10**9
JUNK_GAS = 10_000


@dataclass
class LiarStats:
    """What the lying peer was asked (the test reads it from the synchronous side)."""

    status_requests: int = 0
    block_requests: int = 0
    heights_asked: list[int] = field(default_factory=list)


def lying_status(chain_id: str, stats: LiarStats, height: int = LIE_HEIGHT) -> Callable[[P2PService], None]:
    """`AdversaryPeer(configure=...)`: claim `height`, serve no block at all (NOT_FOUND) and no vote."""

    def configure(service: P2PService) -> None:
        async def status() -> ChainStatus:
            stats.status_requests += 1
            await trio.lowlevel.checkpoint()
            return ChainStatus(chain_id, Height(height), sha256(b"a head nobody has"), Height(1))

        async def block(h: Height) -> StoredBlock | None:
            stats.block_requests += 1
            stats.heights_asked.append(int(h))
            await trio.lowlevel.checkpoint()
            return None

        async def votes(request: VotesRequest) -> list[Vote]:
            await trio.lowlevel.checkpoint()
            return []

        service.reqresp.serve_status(status)
        service.reqresp.serve_blocks(block)
        service.reqresp.serve_votes(votes)

    return configure


def junk_key(i: int) -> PrivateKey:
    """Keys that never held anything (not in genesis, never sent to)."""
    return PrivateKey.derive("adversary junk", "account", i)


def unfunded_txs(chain_id: str, count: int, *, keys: int = 256) -> list[Transaction]:
    """`count` validly signed transfers from `keys` unfunded keys (nonces counting up per key)."""
    senders = [junk_key(i) for i in range(keys)]
    to = junk_key(keys).address
    return [build_tx(senders[i % keys], Transfer(to, Amount(1)), chain_id=chain_id, nonce=i // keys, gas_limit=JUNK_GAS,
                     fee=JUNK_GAS) for i in range(count)]


def batches(txs: list[Transaction], per_batch: int) -> list[bytes]:
    return [TxBatch(tuple(txs[i:i + per_batch])).encode() for i in range(0, len(txs), per_batch)]


def heavy_block(template: Block, filler: Transaction, count: int, parent: Block, parent_commit: Commit) -> Block:
    """A block on top of `parent` (its commit as the last commit, so `validate_basic` holds and it decodes as
    a proposal of the next height) carrying `count` copies of `filler` and `template`'s first result: well
    formed, heavy, and useless to consensus (its state root and proposer are `template`'s)."""
    txs = (filler,) * count
    if not template.results:
        raise ValueError("the template block needs one transaction result to copy")
    results = (template.results[0],) * count
    header = template.header.replace(height=Height(int(parent.height) + 1), last_block_id=parent.id,
                                     last_commit_hash=compute_last_commit_hash(parent_commit),
                                     txs_root=compute_txs_root(txs), results_root=compute_results_root(results))
    return template.replace(header=header, txs=txs, results=results, last_commit=parent_commit)


def wrong_round_proposals(key: PrivateKey, chain_id: str, block: Block, rounds: Iterable[int]) -> list[bytes]:
    """Proposals for (block's height, r) signed by `key` for each round r, each carrying `block` as built in
    round r (a fresh proposal must carry a block of its own round, or it does not even decode)."""
    out = []
    for r in rounds:
        built = block.replace(header=block.header.replace(round=Round(r)))
        proposal = Proposal(built.height, Round(r), -1, built.id, Timestamp(built.header.time), key.public_key,
                            SignatureBytes(b"\0" * 64)).signed(key, chain_id)
        out.append(ProposalBlock(proposal, built).encode())
    return out


def false_wrong_inference(signed: ProposalBlock, tx_index: int) -> bytes:
    """Evidence claiming the (correct) output of transaction `tx_index` of a public proposal is wrong."""
    return EvidenceEnvelope(make_wrong_inference(signed, tx_index)).encode()
