"""The three governance transactions: submit a proposal, deposit on it, vote on it.

Each checks everything first and then writes (a refusal writes nothing but the envelope's fee and nonce,
which `vm.execute` has charged). `charge` is the transaction's gas meter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from core.types import Address, Amount, Height
from vm.gov.content import ContentRefused, validate_content
from vm.gov.store import (
    DEPOSIT_END,
    ESCROW,
    VOTING_END,
    deposits_key,
    enqueue,
    get_deposits,
    get_next_proposal_id,
    get_proposal,
    get_votes,
    is_queue_full,
    move_balance,
    proposal_key,
    set_next_proposal_id,
    votes_key,
)
from vm.gov.tally import has_voting_power
from vm.gov.types import (
    MAX_DEPOSITORS,
    MAX_VOTERS,
    Deposit,
    DepositEntry,
    DepositList,
    Proposal,
    ProposalStatus,
    SubmitProposal,
    Vote,
    VoteEntry,
    VoteList,
)
from vm.state import StateView

if TYPE_CHECKING:
    from vm.execute import BlockContext


class GovRefused(Exception):
    """A governance rule refused the transaction (before any write); the message is one line."""


Charge = Callable[[int], None]


def process_submit_proposal(view: StateView, ctx: BlockContext, sender: Address, p: SubmitProposal,
                            charge: Charge) -> bytes:
    """Open a proposal; its id (8 bytes, big-endian) is the result's data."""
    gov = ctx.params.gov
    charge(gov.gas_submit_proposal)
    if not p.title.strip():
        raise GovRefused("a proposal needs a title")
    try:
        validate_content(view, ctx.params, int(ctx.height), p.content)
    except ContentRefused as exc:
        raise GovRefused(f"invalid proposal: {exc}") from None
    _check_first_deposit(ctx, p.initial_deposit)
    _check_balance(view, sender, p.initial_deposit)
    deposit_end = Height(ctx.height + gov.max_deposit_blocks)
    if is_queue_full(view, DEPOSIT_END, deposit_end):
        raise GovRefused(f"too many proposals already end their deposit period at height {deposit_end:d}")
    opens = p.initial_deposit >= gov.min_deposit
    if opens and is_queue_full(view, VOTING_END, ctx.height + gov.voting_blocks):
        raise GovRefused("too many proposals already end their vote at that height")
    # -- writes
    proposal_id = get_next_proposal_id(view)
    set_next_proposal_id(view, proposal_id + 1)
    proposal = Proposal(proposal_id, sender, p.title, p.summary, p.content, ProposalStatus.DEPOSIT_PERIOD,
                        ctx.height, deposit_end, Height(0), Height(0), p.initial_deposit, None, "")
    move_balance(view, sender, ESCROW, p.initial_deposit)
    view.put(deposits_key(proposal_id), DepositList((DepositEntry(sender, p.initial_deposit),)))
    enqueue(view, DEPOSIT_END, deposit_end, proposal_id)
    view.put(proposal_key(proposal_id), _open_vote(view, ctx, proposal) if opens else proposal)
    return proposal_id.to_bytes(8, "big")


def process_deposit(view: StateView, ctx: BlockContext, sender: Address, p: Deposit, charge: Charge) -> bytes:
    """Add to a proposal's deposit (in its deposit or voting period); reaching the minimum opens the vote."""
    gov = ctx.params.gov
    charge(gov.gas_deposit)
    proposal = get_proposal(view, p.proposal_id)
    if proposal is None:
        raise GovRefused(f"no proposal {p.proposal_id:d}")
    if proposal.status not in (ProposalStatus.DEPOSIT_PERIOD, ProposalStatus.VOTING_PERIOD):
        raise GovRefused(f"proposal {p.proposal_id:d} no longer takes deposits")
    if p.amount == 0:
        raise GovRefused("deposit amount must be positive")
    _check_balance(view, sender, p.amount)
    deposits = get_deposits(view, p.proposal_id)
    previous = next((e.amount for e in deposits.entries if e.depositor == sender), None)
    if previous is None:
        if len(deposits.entries) >= MAX_DEPOSITORS:
            raise GovRefused(f"proposal {p.proposal_id:d} has {MAX_DEPOSITORS} depositors already")
        _check_first_deposit(ctx, p.amount)
    total = Amount(proposal.total_deposit + p.amount)
    opens = proposal.status is ProposalStatus.DEPOSIT_PERIOD and total >= gov.min_deposit
    if opens and is_queue_full(view, VOTING_END, ctx.height + gov.voting_blocks):
        raise GovRefused("too many proposals already end their vote at that height")
    # -- writes
    move_balance(view, sender, ESCROW, p.amount)
    entries = {e.depositor: e.amount for e in deposits.entries}
    entries[sender] = Amount((previous or 0) + p.amount)
    view.put(deposits_key(p.proposal_id),
             DepositList(tuple(DepositEntry(a, entries[a]) for a in sorted(entries))))
    proposal = proposal.replace(total_deposit=total)
    view.put(proposal_key(p.proposal_id), _open_vote(view, ctx, proposal) if opens else proposal)
    return b""


def process_vote(view: StateView, ctx: BlockContext, sender: Address, p: Vote, charge: Charge) -> bytes:
    """Record (or replace) the sender's vote; its weight is decided at the tally."""
    charge(ctx.params.gov.gas_vote)
    proposal = get_proposal(view, p.proposal_id)
    if proposal is None:
        raise GovRefused(f"no proposal {p.proposal_id:d}")
    if proposal.status is not ProposalStatus.VOTING_PERIOD:
        raise GovRefused(f"proposal {p.proposal_id:d} is not in its voting period")
    votes = {e.voter: e.option for e in get_votes(view, p.proposal_id).entries}
    if sender not in votes and not has_voting_power(view, int(ctx.height), sender):
        # Else accounts without stake could fill the voter list and shut the stake out of the vote.
        raise GovRefused("the sender has no stake to vote with (it owns no bonded validator and delegates none)")
    if sender not in votes and len(votes) >= MAX_VOTERS:
        raise GovRefused(f"proposal {p.proposal_id:d} has {MAX_VOTERS} voters already")
    votes[sender] = p.option
    view.put(votes_key(p.proposal_id), VoteList(tuple(VoteEntry(a, votes[a]) for a in sorted(votes))))
    return b""


def min_first_deposit(min_deposit: int) -> int:
    """The least a depositor's first deposit may be: a full list of depositors then always reaches the
    minimum, so filling the list with dust cannot keep a proposal from its vote."""
    return max(1, -(-min_deposit // MAX_DEPOSITORS))


def _check_first_deposit(ctx: BlockContext, amount: int) -> None:
    least = min_first_deposit(ctx.params.gov.min_deposit)
    if amount < least:
        raise GovRefused(f"a depositor's first deposit must be at least {least:d} (gov.min_deposit / "
                         f"{MAX_DEPOSITORS})")


def _check_balance(view: StateView, sender: Address, amount: int) -> None:
    balance = view.account(sender).balance
    if amount > balance:
        raise GovRefused(f"balance {balance:d} is below the deposit {amount:d}")


def _open_vote(view: StateView, ctx: BlockContext, proposal: Proposal) -> Proposal:
    end = Height(ctx.height + ctx.params.gov.voting_blocks)
    enqueue(view, VOTING_END, end, proposal.proposal_id)
    return proposal.replace(status=ProposalStatus.VOTING_PERIOD, voting_start=ctx.height, voting_end=end)
