"""Governance at the end of each block: close the deposit periods and the votes that end at its height,
in proposal order, and carry out the proposals that passed. Deterministic: state and the block height only.
Each closing is recorded as an event of the block, in state (`Ge` + height: provable like any record).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.types import Amount
from vm.gov.content import ContentRefused, execute_content
from vm.gov.store import (
    DEPOSIT_END,
    ESCROW,
    VOTING_END,
    deposits_key,
    events_key,
    get_deposits,
    get_proposal,
    get_queue,
    get_votes,
    move_balance,
    proposal_key,
    queue_key,
    votes_key,
)
from vm.gov.tally import Verdict, burns_deposit, compute_tally, compute_verdict
from vm.gov.types import MAX_RESULT_LOG_BYTES, GovEvent, GovEvents, Proposal, ProposalStatus
from vm.state import StateView

if TYPE_CHECKING:
    from vm.execute import BlockContext


def process_gov_end_block(view: StateView, ctx: BlockContext) -> int:
    """Close what ends at `ctx.height`; returns the amount burned: proposal deposits, and resident deposits a
    passed retirement burns (the caller's ledger)."""
    burned = 0
    height = int(ctx.height)
    gov = ctx.params.gov
    closed: list[Proposal] = []
    for proposal_id in get_queue(view, DEPOSIT_END, height).proposal_ids:
        proposal = get_proposal(view, proposal_id)
        if proposal is None or proposal.status is not ProposalStatus.DEPOSIT_PERIOD:
            continue  # its vote opened: the voting queue closes it
        burned += _settle_deposits(view, proposal_id, burn=gov.burn_deposit_prevote)
        proposal = proposal.replace(status=ProposalStatus.REJECTED,
                                    result_log="rejected: the deposit period ended below the minimum")
        view.put(proposal_key(proposal_id), proposal)
        closed.append(proposal)
    view.delete(queue_key(DEPOSIT_END, height))
    for proposal_id in get_queue(view, VOTING_END, height).proposal_ids:
        proposal = get_proposal(view, proposal_id)
        assert proposal is not None and proposal.status is ProposalStatus.VOTING_PERIOD
        spent, proposal = _close_vote(view, ctx, proposal)
        burned += spent
        closed.append(proposal)
    view.delete(queue_key(VOTING_END, height))
    if closed:
        view.put(events_key(height), GovEvents(tuple(GovEvent(p.proposal_id, p.status, p.result_log)
                                                     for p in closed)))
    return burned


def _close_vote(view: StateView, ctx: BlockContext, proposal: Proposal) -> tuple[int, Proposal]:
    gov = ctx.params.gov
    pid = int(proposal.proposal_id)
    tally = compute_tally(view, int(ctx.height), get_votes(view, pid))
    verdict = compute_verdict(tally, gov)
    burned = _settle_deposits(view, pid, burn=burns_deposit(verdict, gov))
    view.delete(votes_key(pid))
    status, log = ProposalStatus.REJECTED, verdict.value
    if verdict is Verdict.PASSED:
        # Read the parameters from state, not ctx: an earlier proposal in this block may have changed them.
        try:
            burned += execute_content(view, view.params(), int(ctx.height), proposal.content, pid)
            status, log = ProposalStatus.PASSED, "passed and executed"
        except ContentRefused as exc:
            status, log = ProposalStatus.FAILED, f"passed, but execution failed: {exc}"
    proposal = proposal.replace(status=status, tally=tally, result_log=_clip(log))
    view.put(proposal_key(pid), proposal)
    return burned, proposal


def _settle_deposits(view: StateView, proposal_id: int, *, burn: bool) -> int:
    """Refund every deposit from escrow, or burn them all; returns the amount burned."""
    deposits = get_deposits(view, proposal_id)
    total = sum(e.amount for e in deposits.entries)
    if burn:
        escrow = view.account(ESCROW)
        view.set_account(ESCROW, escrow.replace(balance=Amount(escrow.balance - total)))
    else:
        for entry in deposits.entries:
            move_balance(view, ESCROW, entry.depositor, entry.amount)
    view.delete(deposits_key(proposal_id))
    return total if burn else 0


def _clip(log: str) -> str:
    data = log.encode()
    return log if len(data) <= MAX_RESULT_LOG_BYTES else data[:MAX_RESULT_LOG_BYTES].decode(errors="ignore")
