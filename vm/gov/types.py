"""Governance wire types: the three transaction payloads, the proposal contents, and the state records.

Imports nothing from the rest of the VM, so `vm.txs` can list the payloads among its kinds.
"""

from __future__ import annotations

import enum
from typing import Annotated

from core.codec import I64, U64, MaxLen, Wire, wire
from core.types import Address, Amount, Hash32, Height

MAX_TITLE_BYTES = 128
MAX_SUMMARY_BYTES = 1024
MAX_PARAM_CHANGES = 32
MAX_POI_CHANGES = 16
MAX_RETIRE_MODELS = 16
MAX_UPGRADE_NAME_BYTES = 64
MAX_UPGRADE_INFO_BYTES = 256
MAX_DEPOSITORS = 64
MAX_VOTERS = 1024
MAX_QUEUED = 64  # proposals whose deposit or voting period ends at one height
MAX_RESULT_LOG_BYTES = 256


class VoteOption(enum.IntEnum):
    YES = 1
    ABSTAIN = 2
    NO = 3
    NO_WITH_VETO = 4


class ProposalStatus(enum.IntEnum):
    DEPOSIT_PERIOD = 1
    VOTING_PERIOD = 2
    PASSED = 3  # passed and executed
    REJECTED = 4  # the vote failed, or the deposit period ended below the minimum
    FAILED = 5  # passed, but its execution failed: state unchanged, `result_log` says why


# ------------------------------------------------------------------------------------------------ contents


@wire(max_bytes=96)
class ParamChange(Wire):
    """Set one parameter: `path` is `group.field` as in genesis.json (`consensus.max_block_gas`), or
    `vm.sandbox_limits.NAME` / `vm.gas_schedule.NAME` for the named ones; flags take 0 or 1."""

    path: Annotated[str, MaxLen(64)]
    value: I64


@wire(max_bytes=96 * MAX_PARAM_CHANGES + 16, tag=1)
class ParameterChangeProposal(Wire):
    changes: Annotated[tuple[ParamChange, ...], MaxLen(MAX_PARAM_CHANGES)]


@wire(max_bytes=2 * 34 * MAX_POI_CHANGES + 16, tag=2)
class PoiModelsProposal(Wire):
    """Add registered models to the PoI set (each must pass the PoI rules) and retire others from it."""

    add: Annotated[tuple[Hash32, ...], MaxLen(MAX_POI_CHANGES)]
    retire: Annotated[tuple[Hash32, ...], MaxLen(MAX_POI_CHANGES)]


@wire(max_bytes=MAX_UPGRADE_NAME_BYTES + MAX_UPGRADE_INFO_BYTES + 32, tag=3)
class SoftwareUpgradeProposal(Wire):
    """Every node stops before applying block `height` unless it runs upgrade `name` (vm/upgrades.py);
    `info` tells operators which version to run."""

    name: Annotated[str, MaxLen(MAX_UPGRADE_NAME_BYTES)]
    height: Height
    info: Annotated[str, MaxLen(MAX_UPGRADE_INFO_BYTES)]


@wire(max_bytes=16, tag=4)
class TextProposal(Wire):
    """Nothing to execute: the title and summary are the proposal."""


@wire(max_bytes=34 * MAX_RETIRE_MODELS + 16, tag=5)
class RetireModelsProposal(Wire):
    """Retire models, registered or pending activation, whoever owns them (vm/retire.py): their resident
    bytes, slots and blobs are released and their deposits refunded to their owners, or burned with
    `burn_deposits` (models the vote judges abusive). None may be in the PoI set (a PoiModelsProposal
    removes it first)."""

    models: Annotated[tuple[Hash32, ...], MaxLen(MAX_RETIRE_MODELS)]
    burn_deposits: bool


Content = ParameterChangeProposal | PoiModelsProposal | SoftwareUpgradeProposal | TextProposal | RetireModelsProposal
CONTENT_MAX_BYTES = 96 * MAX_PARAM_CHANGES + 64


# ------------------------------------------------------------------------------------------------ payloads


@wire(max_bytes=MAX_TITLE_BYTES + MAX_SUMMARY_BYTES + CONTENT_MAX_BYTES + 64)
class SubmitProposal(Wire):
    title: Annotated[str, MaxLen(MAX_TITLE_BYTES)]
    summary: Annotated[str, MaxLen(MAX_SUMMARY_BYTES)]
    content: Content
    initial_deposit: Amount


@wire(max_bytes=64)
class Deposit(Wire):
    proposal_id: U64
    amount: Amount


@wire(max_bytes=32)
class Vote(Wire):
    proposal_id: U64
    option: VoteOption


# ------------------------------------------------------------------------------------------------ records


@wire(max_bytes=64)
class TallyResult(Wire):
    """Stake per option (token units), and the bonded stake it was counted against."""

    yes: Amount
    abstain: Amount
    no: Amount
    no_with_veto: Amount
    bonded: Amount


@wire(max_bytes=SubmitProposal.MAX_BYTES + 512)
class Proposal(Wire):
    proposal_id: U64
    proposer: Address
    title: Annotated[str, MaxLen(MAX_TITLE_BYTES)]
    summary: Annotated[str, MaxLen(MAX_SUMMARY_BYTES)]
    content: Content
    status: ProposalStatus
    submit_height: Height
    deposit_end: Height
    voting_start: Height  # 0 until the minimum deposit is reached
    voting_end: Height
    total_deposit: Amount
    tally: TallyResult | None
    result_log: Annotated[str, MaxLen(MAX_RESULT_LOG_BYTES)]


@wire(max_bytes=48)
class DepositEntry(Wire):
    depositor: Address
    amount: Amount


@wire(max_bytes=48 * MAX_DEPOSITORS + 16)
class DepositList(Wire):
    """A proposal's deposits, by depositor (sorted); held in the escrow account until refunded or burned."""

    entries: Annotated[tuple[DepositEntry, ...], MaxLen(MAX_DEPOSITORS)]


@wire(max_bytes=32)
class VoteEntry(Wire):
    voter: Address
    option: VoteOption


@wire(max_bytes=32 * MAX_VOTERS + 16)
class VoteList(Wire):
    """A proposal's votes, by voter (sorted); a later vote of the same account replaces its earlier one."""

    entries: Annotated[tuple[VoteEntry, ...], MaxLen(MAX_VOTERS)]


@wire(max_bytes=16 * MAX_QUEUED + 16)
class ProposalQueue(Wire):
    """Proposals whose deposit or voting period ends at one height."""

    proposal_ids: Annotated[tuple[U64, ...], MaxLen(MAX_QUEUED)]


@wire(max_bytes=MAX_RESULT_LOG_BYTES + 32)
class GovEvent(Wire):
    """A proposal that closed in a block: its new status and the one-line why."""

    proposal_id: U64
    status: ProposalStatus
    log: Annotated[str, MaxLen(MAX_RESULT_LOG_BYTES)]


@wire(max_bytes=(MAX_RESULT_LOG_BYTES + 32) * 2 * MAX_QUEUED + 16)
class GovEvents(Wire):
    """The governance events of one block, in the order they happened (deposit periods, then votes)."""

    events: Annotated[tuple[GovEvent, ...], MaxLen(2 * MAX_QUEUED)]


@wire(max_bytes=MAX_UPGRADE_NAME_BYTES + MAX_UPGRADE_INFO_BYTES + 48)
class UpgradePlan(Wire):
    """The one scheduled software upgrade (a later passed upgrade proposal replaces it)."""

    name: Annotated[str, MaxLen(MAX_UPGRADE_NAME_BYTES)]
    height: Height
    info: Annotated[str, MaxLen(MAX_UPGRADE_INFO_BYTES)]
    proposal_id: U64


@wire(max_bytes=MAX_UPGRADE_NAME_BYTES + 32)
class AppliedUpgrade(Wire):
    name: Annotated[str, MaxLen(MAX_UPGRADE_NAME_BYTES)]
    height: Height


@wire(max_bytes=(MAX_UPGRADE_NAME_BYTES + 32) * 64 + 16)
class AppliedUpgrades(Wire):
    """The upgrades this chain has run, in order, with the heights they ran at."""

    entries: Annotated[tuple[AppliedUpgrade, ...], MaxLen(64)]
