"""Where gossip that passed p2p's pipeline and the node's hooks (`node.gossip_hooks`) goes.

Transactions go to the mempool, consensus messages to the driver. The envelope check already did the
expensive part (signatures; a proposal's `validate_basic`), so each handler records that in the matching
cache before handing the value on. Until consensus runs (during block sync) consensus messages are dropped:
consensus catch-up recovers what the node needs once it has joined.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from core.block import ProposalBlock
from core.evidence import Evidence
from core.votes import Vote
from node.blockcheck import BlockChecks
from node.driver import ConsensusDriver
from node.mempool import Mempool
from node.sigcache import VoteVerifier
from p2p.messages import TxBatch
from p2p.validation import GossipMessage

# Let other tasks run every this many transactions of one batch (a full batch holds thousands).
_CHECKPOINT_EVERY = 256


class GossipHandlers:
    """One handler per topic; `driver` returns the running consensus driver, or None before it starts."""

    def __init__(self, *, chain_id: str, mempool: Mempool, block_checks: BlockChecks, vote_verifier: VoteVerifier,
                 driver: Callable[[], ConsensusDriver | None]) -> None:
        self._chain_id = chain_id
        self._mempool = mempool
        self._block_checks = block_checks
        self._vote_verifier = vote_verifier
        self._driver = driver

    async def tx_batch(self, message: GossipMessage) -> None:
        batch: TxBatch = message.value
        for i, tx in enumerate(batch.txs):
            if i and i % _CHECKPOINT_EVERY == 0:
                await trio.lowlevel.checkpoint()
            self._mempool.add(tx, signature_checked=True)  # the envelope check verified every signature

    async def proposal(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is not None:
            pb: ProposalBlock = message.value
            self._block_checks.mark(pb.block)  # the envelope check ran validate_basic (in a thread if large)
            await driver.on_proposal(pb)

    async def vote(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is not None:
            vote: Vote = message.value
            self._vote_verifier.mark_verified(vote, self._chain_id)  # the envelope check verified it
            await driver.on_vote(vote)

    async def evidence(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is not None:
            evidence: Evidence = message.value.evidence  # the EvidenceEnvelope the envelope check decoded
            await driver.on_evidence(evidence)
