"""Governance RPC methods: proposals with their deposits, votes and tally, and the upgrade plan.

Proposals, deposits and votes are transactions (kinds 20-22): clients sign them and send them with
`broadcast_tx`, as every other transaction (the node holds no user keys).
"""

from __future__ import annotations

from typing import Any

from core.address import encode_address
from node.rpc import errors as E
from node.rpc.api import NodeApi
from node.rpc.dispatch import Param
from node.rpc.jsonenc import raw, to_json
from node.rpc.methods import OBJ, registry
from vm.gov.reader import MAX_PAGE, GovReader
from vm.gov.types import Proposal, ProposalStatus

CONTENT_KINDS = {"ParameterChangeProposal": "parameter_change", "PoiModelsProposal": "poi_models",
                 "SoftwareUpgradeProposal": "software_upgrade", "TextProposal": "text",
                 "RetireModelsProposal": "retire_models"}
STATUSES = [s.name.lower() for s in ProposalStatus]


def parse_proposal_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 1 << 64:
        raise ValueError("a proposal id is a positive integer")
    return value


def parse_after(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError("after is a proposal id (0 for the first page)")
    return value


def parse_page(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise ValueError(f"limit is an integer in [1, {MAX_PAGE}]")
    return value


def parse_status(value: Any) -> ProposalStatus:
    if value not in STATUSES:
        raise ValueError(f"status is one of {', '.join(STATUSES)}")
    return ProposalStatus[str(value).upper()]


def proposal_json(reader: GovReader, p: Proposal, *, detail: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": int(p.proposal_id), "kind": CONTENT_KINDS[type(p.content).__name__], "title": p.title,
        "summary": p.summary, "content": to_json(p.content), "status": p.status.name.lower(),
        "proposer": encode_address(p.proposer), "submit_height": int(p.submit_height),
        "deposit_end": int(p.deposit_end), "voting_start": int(p.voting_start), "voting_end": int(p.voting_end),
        "total_deposit": int(p.total_deposit), "result": p.result_log,
    }
    tally = reader.current_tally(p)
    doc["tally"] = None if tally is None else to_json(tally)
    if detail:
        doc["deposits"] = to_json(reader.deposits(int(p.proposal_id)).entries)
        doc["votes"] = to_json(reader.votes(int(p.proposal_id)).entries)
        doc["raw"] = raw(p)
    return doc


@registry.method("proposal", "A governance proposal: content, status, deposits, votes and its tally (the tally "
                             "so far while the vote runs).",
                 params=(Param("id", {"type": "integer", "minimum": 1}, "the proposal id", parse=parse_proposal_id),),
                 result="Proposal", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def proposal(api: NodeApi, id: int) -> dict[str, Any]:
    reader = api.gov()
    found = reader.proposal(id)
    if found is None:
        raise E.not_found(f"no proposal {id}")
    return proposal_json(reader, found, detail=True)


@registry.method("proposals", "Governance proposals in id order, a page at a time, optionally of one status.",
                 params=(Param("after", {"type": "integer", "minimum": 0}, "list ids above this one", required=False,
                               parse=parse_after, default=0),
                         Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "page size",
                               required=False, parse=parse_page, default=MAX_PAGE),
                         Param("status", {"type": "string", "enum": STATUSES}, "only proposals in this status",
                               required=False, parse=parse_status)),
                 result="Proposals", result_schema={"type": "array", "items": OBJ})
async def proposals(api: NodeApi, after: int, limit: int, status: ProposalStatus | None) -> list[dict[str, Any]]:
    reader = api.gov()
    return [proposal_json(reader, p, detail=False) for p in reader.proposals(after, limit, status)]


@registry.method("upgrade", "The scheduled software upgrade (name, height, which version to run) and the "
                            "upgrades the chain has run.",
                 result="Upgrade", result_schema=OBJ)
async def upgrade(api: NodeApi) -> dict[str, Any]:
    reader = api.gov()
    plan = reader.upgrade_plan()
    return {"plan": None if plan is None else to_json(plan), "applied": to_json(reader.applied_upgrades().entries)}


@registry.method("gov_events", "The governance events of a block: each proposal that closed in it, with its new "
                               "status and why (passed and executed, rejected, vetoed, failed at execution).",
                 params=(Param("height", {"type": "integer", "minimum": 1}, "the block height",
                               parse=parse_proposal_id),),
                 result="GovEvents", result_schema={"type": "array", "items": OBJ})
async def gov_events(api: NodeApi, height: int) -> list[dict[str, Any]]:
    return gov_events_json(api, height)


def gov_events_json(api: NodeApi, height: int) -> list[dict[str, Any]]:
    """Each proposal that closed in block `height` (at most MAX_QUEUED per kind): the `gov_events` method's
    result and the `gov_events` subscription's notifications."""
    return [{"proposal_id": int(e.proposal_id), "status": e.status.name.lower(), "log": e.log, "height": height}
            for e in api.gov().events(height).events]
