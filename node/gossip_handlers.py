"""Where gossip that passed p2p's pipeline and the node's hooks (`node.gossip_hooks`) goes.

Consensus messages go to the driver; transactions need no handler (the transactions hook,
`node.gossip_hooks.TxAdmission`, already put them in the mempool before deciding to relay). The envelope check
already did the expensive part (signatures; a proposal's `validate_basic`), so each handler records that in the
matching cache before handing the value on; wrong-inference evidence was re-executed by the evidence hook. Until consensus runs (during block sync) consensus messages are dropped:
consensus catch-up recovers what the node needs once it has joined; votes are first shown to block sync
(`on_sync_vote`), which stops syncing once validators are seen voting at its next height.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from core.block import ProposalBlock
from core.compact import CompactProposal
from core.evidence import Evidence
from core.votes import Vote
from node.blockcheck import BlockChecks
from node.driver import ConsensusDriver
from node.proposal_relay import ProposalAssembler
from node.sigcache import VoteVerifier
from p2p.validation import GossipMessage

logger = logging.getLogger(__name__)

# A vote handed to the driver later than this after it was signed is logged with where the time went.
LATE_VOTE_S = 1.0


def describe_arrival(message: GossipMessage, signed_ms: int) -> tuple[float, str]:
    """(seconds since signing, by the signer's clock against ours; where they went) for a consensus message
    about to be handed to the driver: before this node read it (the sender's queue, the wire), then each stage
    of this node's pipeline (`p2p.validation.Arrival`)."""
    now = time.time()
    late_s = now - signed_ms / 1000
    arrival = message.arrival
    if arrival is None:
        return late_s, "stages unknown"
    in_handler = trio.current_time() - arrival.handled if arrival.handled else 0.0
    via = "from its origin" if message.forwarder == message.origin else f"relayed by {str(message.forwarder)[-6:]}"
    return late_s, (f"{via}, read {arrival.read_wall - signed_ms / 1000:.2f} s after signing, then "
                    f"{arrival.describe()}, handler {in_handler:.2f} s")


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
        late_s, stages = describe_arrival(message, int(value.proposal.timestamp))
        logger.info("proposal %d/%d to the driver %.2f s after signing: %s", int(value.proposal.height),
                    int(value.proposal.round), late_s, stages)
        await driver.on_proposal(value)

    async def vote(self, message: GossipMessage) -> None:
        driver = self._driver()
        vote: Vote = message.value
        if driver is None:
            if self._on_sync_vote is not None:
                self._on_sync_vote(vote)
            return
        self._vote_verifier.mark_verified(vote, self._chain_id)  # the envelope check verified it
        late_s, stages = describe_arrival(message, int(vote.timestamp))
        if late_s > LATE_VOTE_S:
            logger.info("vote %d/%d %s to the driver %.2f s after signing: %s", int(vote.height), int(vote.round),
                        vote.type.name.lower(), late_s, stages)
        await driver.on_vote(vote)

    async def evidence(self, message: GossipMessage) -> None:
        driver = self._driver()
        if driver is not None:
            evidence: Evidence = message.value.evidence  # the EvidenceEnvelope the envelope check decoded
            await driver.on_evidence(evidence, confirmed=self._is_evidence_confirmed(evidence))
