"""The node's gossip hooks: what a message must satisfy against this node's chain to be delivered and relayed.

p2p's pipeline (`p2p.validation`) runs a topic's hook after the size cap and the envelope check, so a hook
sees a decoded value whose signatures verified; it decides with the node's state: ACCEPT (deliver and
relay), IGNORE (drop without blaming the sender: a stale or far-future height, a set this node does not
know) or REJECT (drop and penalize the sender). Each check is a plain function of the chain and the value,
so it can be tested and made stricter on its own; `GossipHooks` only binds them to p2p's hook signature.
"""

from __future__ import annotations

from core.block import ProposalBlock
from core.errors import InferchainError
from core.evidence import Evidence, evidence_height
from core.types import Height
from core.votes import Vote
from node.chain import Chain
from p2p.validation import GossipMessage, GossipVerdict


def membership_verdict(chain: Chain, height: int, public_key: bytes, *, behind: int = 1,
                       ahead: int = 1) -> GossipVerdict:
    """Is `public_key` a validator of `height`? Heights outside [next - behind, next + ahead] (next: the
    height being decided) and sets this node cannot compute are IGNOREd; a non-member is REJECTed."""
    current = int(chain.height) + 1
    if height < current - behind or height > current + ahead:
        return GossipVerdict.IGNORE
    try:
        vset = chain.app.validator_set(Height(height))
    except (ValueError, LookupError, InferchainError):
        return GossipVerdict.IGNORE
    return GossipVerdict.ACCEPT if vset.get_by_key(public_key) is not None else GossipVerdict.REJECT


def proposal_verdict(chain: Chain, proposal: ProposalBlock) -> GossipVerdict:
    """A proposal is relayed only from a validator of its height, for a height next to ours."""
    return membership_verdict(chain, int(proposal.proposal.height), proposal.proposal.proposer)


def vote_verdict(chain: Chain, vote: Vote) -> GossipVerdict:
    """A vote is relayed only from a validator of its height, for a height next to ours."""
    return membership_verdict(chain, int(vote.height), vote.validator)


def evidence_verdict(chain: Chain, evidence: Evidence, max_age: int) -> GossipVerdict:
    """Evidence is relayed only against a validator of its height, within `max_age` heights.

    Checking a WrongInference piece means re-running a model, so this cheap membership check comes first:
    a peer cannot make us run models with evidence against keys that never validated.
    """
    return membership_verdict(chain, int(evidence_height(evidence)), evidence.offender, behind=max_age)


class GossipHooks:
    """The verdict functions over this node's chain, as p2p's state hooks (`p2p.validation.StateHook`)."""

    def __init__(self, chain: Chain, evidence_max_age: int) -> None:
        self._chain = chain
        self._evidence_max_age = evidence_max_age

    async def proposal(self, message: GossipMessage) -> GossipVerdict:
        value: ProposalBlock = message.value
        return proposal_verdict(self._chain, value)

    async def vote(self, message: GossipMessage) -> GossipVerdict:
        value: Vote = message.value
        return vote_verdict(self._chain, value)

    async def evidence(self, message: GossipMessage) -> GossipVerdict:
        value: Evidence = message.value.evidence  # the EvidenceEnvelope the envelope check decoded
        return evidence_verdict(self._chain, value, self._evidence_max_age)
