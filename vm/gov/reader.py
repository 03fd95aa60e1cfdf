"""Read-only access to governance records for queries (the node's RPC and CLI); nothing here writes."""

from __future__ import annotations

from vm.gov.store import (
    get_applied_upgrades,
    get_deposits,
    get_events,
    get_next_proposal_id,
    get_proposal,
    get_upgrade_plan,
    get_votes,
)
from vm.gov.tally import compute_tally
from vm.gov.types import (
    AppliedUpgrades,
    DepositList,
    GovEvents,
    Proposal,
    ProposalStatus,
    TallyResult,
    UpgradePlan,
    VoteList,
)
from vm.state import StateView

MAX_PAGE = 100


class GovReader:
    __slots__ = ("_view",)

    def __init__(self, view: StateView) -> None:
        self._view = view

    def proposal(self, proposal_id: int) -> Proposal | None:
        return get_proposal(self._view, proposal_id)

    def proposals(self, after: int = 0, limit: int = MAX_PAGE, status: ProposalStatus | None = None) -> list[Proposal]:
        """Up to `limit` proposals with ids above `after`, in id order, optionally of one status."""
        out: list[Proposal] = []
        last = get_next_proposal_id(self._view) - 1
        for proposal_id in range(max(after, 0) + 1, last + 1):
            if len(out) >= min(limit, MAX_PAGE):
                break
            found = get_proposal(self._view, proposal_id)
            if found is not None and (status is None or found.status is status):
                out.append(found)
        return out

    def deposits(self, proposal_id: int) -> DepositList:
        return get_deposits(self._view, proposal_id)

    def votes(self, proposal_id: int) -> VoteList:
        return get_votes(self._view, proposal_id)

    def current_tally(self, proposal: Proposal) -> TallyResult | None:
        """The tally if the vote ended now (a proposal in its voting period), else the final one."""
        if proposal.status is not ProposalStatus.VOTING_PERIOD:
            return proposal.tally
        return compute_tally(self._view, self._view.chain().height, get_votes(self._view, proposal.proposal_id))

    def events(self, height: int) -> GovEvents:
        return get_events(self._view, height)

    def upgrade_plan(self) -> UpgradePlan | None:
        return get_upgrade_plan(self._view)

    def applied_upgrades(self) -> AppliedUpgrades:
        return get_applied_upgrades(self._view)
