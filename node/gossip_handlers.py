"""Where gossip that passed p2p's pipeline and the node's hooks (`node.gossip_hooks`) goes.

Consensus messages go to the driver; transactions need no handler (the transactions hook,
`node.gossip_hooks.TxAdmission`, already put them in the mempool before deciding to relay). The envelope check
already did the expensive part (signatures; a proposal's `validate_basic`), so each handler records that in the
matching cache before handing the value on; wrong-inference evidence was re-executed by the evidence hook. Until consensus runs (during block sync) consensus messages are dropped:
consensus catch-up recovers what the node needs once it has joined; votes are first shown to block sync
(`on_sync_vote`), which stops syncing once validators are seen voting at its next height.
"""

from __future__ import annotations

from collections.abc import Callable

from core.block import ProposalBlock
from core.compact import CompactProposal
from core.evidence import Evidence
from core.votes import Vote
from node.blockcheck import BlockChecks
from node.driver import ConsensusDriver
from node.proposal_relay import ProposalAssembler
from node.sigcache import VoteVerifier
from p2p.validation import GossipMessage


class GossipHandlers:
    """One handler per topic; `driver` returns the running consensus driver, or None before it starts."""

    def __init__(self, *, chain_id: str, block_checks: BlockChecks, vote_verifier: VoteVerifier,
                 driver: Callable[[], ConsensusDriver | None],
                 on_sync_vote: Callable[[Vote], None] | None = None,
                 is_evidence_confirmed: Callable[[Evidence], bool] | None = None,
                 assembler: ProposalAssembler | None = None) -> None:
        """`assembler` rebuilds compact proposals; without one they are dropped (full ones still pass)."""
        self._assembler = assembler
        self._chain_id = chain_id
        self._is_evidence_confirmed = is_evidence_confirmed or (lambda evidence: False)
        self._block_checks = block_checks
        self._vote_verifier = vote_verifier
        self._driver = driver
        self._on_sync_vote = on_sync_vote

    async def proposal(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is None:
            return
        value: ProposalBlock | CompactProposal = message.value
        if isinstance(value, CompactProposal):
            if self._assembler is None:
                return
            rebuilt = await self._assembler.assemble(value, forwarder=message.forwarder, origin=message.origin)
            if rebuilt is None:
                return
            value = rebuilt  # the envelope check ran the compact validate_basic, rebuild matched every tx hash
        self._block_checks.mark(value.block)  # the envelope check ran validate_basic (in a thread if large)
        await driver.on_proposal(value)

    async def vote(self, message: GossipMessage) -> None:
        driver = self._driver()
        vote: Vote = message.value
        if driver is None:
            if self._on_sync_vote is not None:
                self._on_sync_vote(vote)
            return
        self._vote_verifier.mark_verified(vote, self._chain_id)  # the envelope check verified it
        await driver.on_vote(vote)

    async def evidence(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is not None:
            evidence: Evidence = message.value.evidence  # the EvidenceEnvelope the envelope check decoded
            await driver.on_evidence(evidence, confirmed=self._is_evidence_confirmed(evidence))
