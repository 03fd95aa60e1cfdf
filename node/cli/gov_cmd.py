"""`inferchain gov propose|deposit|vote|show|list` and `inferchain query proposal` (docs/governance.md).

Proposals, deposits and votes are transactions signed here and sent with `broadcast_tx`; show and list read
the node's `proposal` and `proposals` RPC methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core.keys import PrivateKey
from core.types import Amount, Hash32, Height
from core.units import AmountText, Token
from node.cli.chainctx import chain_context
from node.cli.common import (
    CliError,
    echo_json,
    echo_pairs,
    json_option,
    load_signing_key,
    node_option,
    resolve_amount,
    tx_options,
    u64,
)
from node.cli.query_cmd import query
from node.cli.tx_cmd import report, submit
from node.client import Client
from vm.gov.types import (
    Content,
    Deposit,
    ParamChange,
    ParameterChangeProposal,
    PoiModelsProposal,
    RetireModelsProposal,
    SoftwareUpgradeProposal,
    SubmitProposal,
    TextProposal,
    Vote,
    VoteOption,
)
from vm.txs import build_tx

OPTIONS = {"yes": VoteOption.YES, "no": VoteOption.NO, "abstain": VoteOption.ABSTAIN,
           "no-with-veto": VoteOption.NO_WITH_VETO}


@click.group()
def gov() -> None:
    """Governance: propose parameter, PoI-model and software-upgrade changes; deposit; vote; read proposals."""


def _send_gov(key: PrivateKey, payload: Any, gas_name: str, node_url: str, fee: AmountText | None,
              gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float) -> tuple[Any, Token]:
    """Sign and broadcast a governance transaction; the result and the chain's token (for amounts shown).
    Chain id, nonce, gas price and token come from the one chain context every tx command uses; the gas
    limit from governance's own prices (`gov.gas_*`)."""
    with Client(node_url) as client:
        ctx = chain_context(client, key, nonce)
        gas = gas_limit if gas_limit is not None else int(client.call("params")["gov"][gas_name])
        fee_value = ctx.fee(gas, None if fee is None else resolve_amount(fee, ctx.token, "--fee"))
        signed = build_tx(key, payload, chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas, fee=fee_value)
        return submit(client, signed, no_wait=no_wait, timeout=timeout), ctx.token


def _min_deposit(node_url: str) -> int:
    with Client(node_url) as client:
        return int(client.call("params")["gov"]["min_deposit"])


# ------------------------------------------------------------------------------------------------ propose


def proposal_options(fn: Any) -> Any:
    for decorator in reversed([
        click.option("--title", required=True, help="One line saying what the proposal does."),
        click.option("--summary", default="", help="Why (shown to voters)."),
        click.option("--deposit", type=u64(1), default=None,
                     help="Initial deposit (default: the chain's gov.min_deposit, which opens the vote at once)."),
        tx_options,
    ]):
        fn = decorator(fn)
    return fn


def _propose(content: Content, title: str, summary: str, deposit: int | None, from_key: str, keyring: Path,
             node_url: str, fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool,
             timeout: float, as_json: bool) -> None:
    key = load_signing_key(from_key, keyring)
    amount = deposit if deposit is not None else _min_deposit(node_url)
    try:
        payload = SubmitProposal(title, summary, content, Amount(amount))
        payload = SubmitProposal.decode(payload.encode())  # within the wire limits, before anything is signed
    except ValueError as exc:
        raise CliError(f"proposal: {exc}") from None
    result, token = _send_gov(key, payload, "gas_submit_proposal", node_url, fee, gas_limit, nonce, no_wait,
                              timeout)
    extra: dict[str, Any] = {}
    if result.result is not None and len(result.result.data) == 8:
        extra["proposal_id"] = int.from_bytes(result.result.data, "big")
    report(result, as_json, token, {"deposit": amount}, **extra)


@gov.group("propose")
def propose() -> None:
    """Submit a proposal with a deposit."""


@propose.command("param-change")
@click.option("--set", "changes", multiple=True, required=True, metavar="PATH=VALUE",
              help="A parameter as genesis.json names it (consensus.max_block_gas, vm.gas_schedule.per_node, "
                   "gov.burn_vote_quorum=1); repeat for several.")
@proposal_options
def param_change(changes: tuple[str, ...], **kw: Any) -> None:
    """Change chain parameters (checked as genesis checks them; refused at submission if invalid)."""
    parsed = []
    for item in changes:
        path, sep, value = item.partition("=")
        try:
            parsed.append(ParamChange(path.strip(), int(value)))
        except ValueError:
            raise CliError(f"--set {item!r}: expected PATH=INTEGER") from None
        if not sep:
            raise CliError(f"--set {item!r}: expected PATH=INTEGER")
    _propose(ParameterChangeProposal(tuple(parsed)), **kw)


def _model_ids(values: tuple[str, ...], option: str) -> tuple[Hash32, ...]:
    try:
        return tuple(Hash32.from_hex(v) for v in values)
    except ValueError:
        raise CliError(f"{option}: a model id is 64 hex digits") from None


@propose.command("poi-models")
@click.option("--add", "add", multiple=True, metavar="MODEL_ID", help="A registered model to add to the PoI set.")
@click.option("--retire", "retire", multiple=True, metavar="MODEL_ID", help="A PoI model to retire.")
@proposal_options
def poi_models(add: tuple[str, ...], retire: tuple[str, ...], **kw: Any) -> None:
    """Add registered models to the PoI set (exact class, high-entropy integer output) or retire some."""
    _propose(PoiModelsProposal(_model_ids(add, "--add"), _model_ids(retire, "--retire")), **kw)


@propose.command("retire-models")
@click.argument("model_ids", nargs=-1, required=True, metavar="MODEL_ID...")
@click.option("--burn-deposits", is_flag=True, help="Burn the models' resident deposits instead of refunding "
                                                       "them (for models the vote judges abusive).")
@proposal_options
def retire_models(model_ids: tuple[str, ...], burn_deposits: bool, **kw: Any) -> None:
    """Retire models whoever owns them (none in the PoI set): their resident room, blobs and names are
    released and their deposits refunded to their owners, or burned (docs/governance.md)."""
    _propose(RetireModelsProposal(_model_ids(model_ids, "MODEL_ID"), burn_deposits), **kw)


@propose.command("upgrade")
@click.argument("name")
@click.option("--height", type=u64(1), required=True, help="Nodes stop before applying this block.")
@click.option("--info", default="", help="Which version operators must run (shown when nodes stop).")
@proposal_options
def upgrade(name: str, height: int, info: str, **kw: Any) -> None:
    """Schedule software upgrade NAME at a height: every node lacking it stops there with one line."""
    _propose(SoftwareUpgradeProposal(name, Height(height), info), **kw)


@propose.command("text")
@proposal_options
def text(**kw: Any) -> None:
    """A proposal with nothing to execute: its title and summary."""
    _propose(TextProposal(), **kw)


# ------------------------------------------------------------------------------------------------ deposit, vote


@gov.command("deposit")
@click.argument("proposal_id", type=u64(1))
@click.argument("amount", type=u64(1))
@tx_options
def deposit(proposal_id: int, amount: int, from_key: str, keyring: Path, node_url: str, fee: AmountText | None,
            gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Add AMOUNT to the deposit of PROPOSAL_ID (reaching gov.min_deposit opens its vote)."""
    key = load_signing_key(from_key, keyring)
    result, token = _send_gov(key, Deposit(proposal_id, Amount(amount)), "gas_deposit", node_url, fee, gas_limit,
                              nonce, no_wait, timeout)
    report(result, as_json, token, {"amount": amount}, proposal_id=proposal_id)


@gov.command("vote")
@click.argument("proposal_id", type=u64(1))
@click.argument("option", type=click.Choice(list(OPTIONS)))
@tx_options
def vote(proposal_id: int, option: str, from_key: str, keyring: Path, node_url: str, fee: AmountText | None,
         gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Vote on PROPOSAL_ID; a validator's owner votes with its stake, a later vote replaces an earlier one."""
    key = load_signing_key(from_key, keyring)
    result, token = _send_gov(key, Vote(proposal_id, OPTIONS[option]), "gas_vote", node_url, fee, gas_limit,
                              nonce, no_wait, timeout)
    report(result, as_json, token, proposal_id=proposal_id, option=option)


# ------------------------------------------------------------------------------------------------ read


def _show(node_url: str, proposal_id: int, as_json: bool) -> None:
    with Client(node_url) as client:
        doc = client.call("proposal", {"id": proposal_id})
    if as_json:
        echo_json(doc)
        return
    tally = doc["tally"]
    echo_pairs([("id", doc["id"]), ("kind", doc["kind"]), ("title", doc["title"]), ("summary", doc["summary"]),
                ("status", doc["status"]), ("result", doc["result"]), ("proposer", doc["proposer"]),
                ("content", doc["content"]), ("deposit", doc["total_deposit"]),
                ("deposit end", doc["deposit_end"]), ("voting", f"{doc['voting_start']} .. {doc['voting_end']}"),
                ("votes", len(doc["votes"])),
                ("tally", "-" if tally is None else
                 f"yes {tally['yes']}, no {tally['no']}, veto {tally['no_with_veto']}, "
                 f"abstain {tally['abstain']} of {tally['bonded']} bonded")])


@gov.command("show")
@click.argument("proposal_id", type=u64(1))
@node_option
@json_option
def show(proposal_id: int, node_url: str, as_json: bool) -> None:
    """A proposal: content, status, deposits, votes and tally."""
    _show(node_url, proposal_id, as_json)


@gov.command("list")
@click.option("--status", type=click.Choice(["deposit_period", "voting_period", "passed", "rejected", "failed"]),
              default=None, help="Only proposals in this status.")
@node_option
@json_option
def list_(status: str | None, node_url: str, as_json: bool) -> None:
    """Proposals in id order (the first 100 after --status filtering)."""
    params: dict[str, Any] = {} if status is None else {"status": status}
    with Client(node_url) as client:
        docs = client.call("proposals", params)
    if as_json:
        echo_json(docs)
        return
    for d in docs:
        click.echo(f"{d['id']:>4}  {d['status']:<14} {d['kind']:<17} {d['title']}")


@query.command("proposal")
@click.argument("proposal_id", type=u64(1))
@node_option
@json_option
def query_proposal(proposal_id: int, node_url: str, as_json: bool) -> None:
    """A governance proposal (as `inferchain gov show`)."""
    _show(node_url, proposal_id, as_json)
