"""Where governance keeps its records in state, and the escrow account that holds deposits.

Keys: `Gp`/`Gd`/`Gv` + proposal id (proposal, deposits, votes); `Gq` + `d`/`v` + height (proposals whose
deposit or voting period ends there); `Ge` + height (the events of that block); the next id, the upgrade plan and the applied upgrades under `\\x00`.
"""

from __future__ import annotations

from core.hashing import sha256
from core.types import Address, Amount, Height
from vm.gov.types import (
    MAX_QUEUED,
    AppliedUpgrades,
    DepositList,
    GovEvents,
    Proposal,
    ProposalQueue,
    UpgradePlan,
    VoteList,
)
from vm.state import StateView

KEY_NEXT_PROPOSAL = b"\x00gov_next"
KEY_UPGRADE_PLAN = b"\x00upgrade_plan"
KEY_APPLIED_UPGRADES = b"\x00upgrades_applied"

# Deposits wait here: an ordinary account no key controls, so balances still add up to the supply.
ESCROW = Address(sha256(b"inferchain/gov-escrow")[:20])

DEPOSIT_END = b"d"
VOTING_END = b"v"


def proposal_key(proposal_id: int) -> bytes:
    return b"Gp" + proposal_id.to_bytes(8, "big")


def deposits_key(proposal_id: int) -> bytes:
    return b"Gd" + proposal_id.to_bytes(8, "big")


def votes_key(proposal_id: int) -> bytes:
    return b"Gv" + proposal_id.to_bytes(8, "big")


def events_key(height: int) -> bytes:
    return b"Ge" + height.to_bytes(8, "big")


def get_events(view: StateView, height: int) -> GovEvents:
    return view.get(events_key(height), GovEvents) or GovEvents(())


def queue_key(kind: bytes, height: int) -> bytes:
    return b"Gq" + kind + height.to_bytes(8, "big")


def get_proposal(view: StateView, proposal_id: int) -> Proposal | None:
    return view.get(proposal_key(proposal_id), Proposal)


def get_deposits(view: StateView, proposal_id: int) -> DepositList:
    return view.get(deposits_key(proposal_id), DepositList) or DepositList(())


def get_votes(view: StateView, proposal_id: int) -> VoteList:
    return view.get(votes_key(proposal_id), VoteList) or VoteList(())


def get_queue(view: StateView, kind: bytes, height: int) -> ProposalQueue:
    return view.get(queue_key(kind, height), ProposalQueue) or ProposalQueue(())


def is_queue_full(view: StateView, kind: bytes, height: int) -> bool:
    return len(get_queue(view, kind, height).proposal_ids) >= MAX_QUEUED


def enqueue(view: StateView, kind: bytes, height: int, proposal_id: int) -> None:
    queue = get_queue(view, kind, height)
    view.put(queue_key(kind, height), ProposalQueue((*queue.proposal_ids, proposal_id)))


def get_next_proposal_id(view: StateView) -> int:
    raw = view.get_raw(KEY_NEXT_PROPOSAL)
    return 1 if raw is None else int.from_bytes(raw, "big")


def set_next_proposal_id(view: StateView, proposal_id: int) -> None:
    view.put_raw(KEY_NEXT_PROPOSAL, proposal_id.to_bytes(8, "big"))


def get_upgrade_plan(view: StateView) -> UpgradePlan | None:
    return view.get(KEY_UPGRADE_PLAN, UpgradePlan)


def get_applied_upgrades(view: StateView) -> AppliedUpgrades:
    return view.get(KEY_APPLIED_UPGRADES, AppliedUpgrades) or AppliedUpgrades(())


def move_balance(view: StateView, src: Address, dst: Address, amount: int) -> None:
    """Move `amount` between two accounts; the caller has checked that `src` holds it."""
    a = view.account(src)
    assert a.balance >= amount
    view.set_account(src, a.replace(balance=Amount(a.balance - amount)))
    b = view.account(dst)
    view.set_account(dst, b.replace(balance=Amount(b.balance + amount)))


def voting_end_height(height: int, voting_blocks: int) -> Height:
    return Height(height + voting_blocks)
