"""The stake-weighted tally of a proposal's votes, Cosmos x/gov v1 style, and the verdict it gives.

Each bonded validator (in the set of the next height) votes with its owner's vote and its whole bonded
stake; an account that voted itself takes its delegated amounts out of its validators' votes and counts
them with its own (`vm.delegation.delegations_of`). Validators whose owner did not vote count nowhere.
"""

from __future__ import annotations

import enum

from core.types import Address, Amount
from vm import delegation
from vm.gov.types import TallyResult, VoteList, VoteOption
from vm.params import BPS, GovParams
from vm.state import StateView, ValidatorRecord


class Verdict(enum.Enum):
    PASSED = "passed"
    NO_QUORUM = "rejected: no quorum"
    ALL_ABSTAINED = "rejected: every vote abstained"
    VETOED = "rejected: vetoed"
    REJECTED = "rejected: threshold not reached"


def bonded_validators(view: StateView, height: int) -> dict[Address, ValidatorRecord]:
    """The validators whose stake counts after block `height`: the next height's set, less jailed and
    tombstoned ones."""
    bonded: dict[Address, ValidatorRecord] = {}
    for entry in view.validator_list(height + 1):
        record = view.validator(entry.address)
        if record is not None and not record.jailed and not record.tombstoned:
            bonded[entry.address] = record
    return bonded


def has_voting_power(view: StateView, height: int, account: Address) -> bool:
    """Whether a vote of `account` could weigh anything: it owns a bonded validator or delegates."""
    if any(r.owner == account for r in bonded_validators(view, height).values()):
        return True
    return bool(delegation.delegations_of(view, account))


def compute_tally(view: StateView, height: int, votes: VoteList) -> TallyResult:
    """Stake per option for the votes of a proposal whose vote ends at block `height`."""
    bonded = bonded_validators(view, height)
    by_voter = {e.voter: e.option for e in votes.entries}
    totals = dict.fromkeys(VoteOption, 0)
    deducted = dict.fromkeys(bonded, 0)
    for voter, option in by_voter.items():
        for validator, amount in delegation.delegations_of(view, voter):
            if validator in bonded:
                deducted[validator] += amount
                totals[option] += amount
    for address, record in bonded.items():
        owner_vote = by_voter.get(record.owner)
        if owner_vote is not None:
            totals[owner_vote] += max(0, record.stake - deducted[address])
    return TallyResult(Amount(totals[VoteOption.YES]), Amount(totals[VoteOption.ABSTAIN]),
                       Amount(totals[VoteOption.NO]), Amount(totals[VoteOption.NO_WITH_VETO]),
                       Amount(sum(r.stake for r in bonded.values())))


def compute_verdict(tally: TallyResult, gov: GovParams) -> Verdict:
    """Quorum of the bonded stake, then all-abstain, then veto of all votes, then the threshold of the
    non-abstaining votes (strictly more than); integer arithmetic in basis points."""
    voted = tally.yes + tally.abstain + tally.no + tally.no_with_veto
    if tally.bonded == 0 or voted * BPS < gov.quorum_bps * tally.bonded:
        return Verdict.NO_QUORUM
    if voted == tally.abstain:
        return Verdict.ALL_ABSTAINED
    if tally.no_with_veto * BPS > gov.veto_threshold_bps * voted:
        return Verdict.VETOED
    if tally.yes * BPS > gov.threshold_bps * (voted - tally.abstain):
        return Verdict.PASSED
    return Verdict.REJECTED


def burns_deposit(verdict: Verdict, gov: GovParams) -> bool:
    if verdict is Verdict.VETOED:
        return gov.burn_vote_veto
    if verdict is Verdict.NO_QUORUM:
        return gov.burn_vote_quorum
    return False
