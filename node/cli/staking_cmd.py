"""Delegation commands, attached to the `tx` and `query` groups (docs/staking.md):
`tx delegate|undelegate|redelegate|withdraw-rewards|edit-validator` and `query delegations|rewards`."""

from __future__ import annotations

from pathlib import Path

import click

from core.address import parse_address
from core.types import Address, Amount
from core.units import AmountText, format_amount
from node.cli.chainctx import chain_context
from node.cli.common import (
    AMOUNT,
    CliError,
    echo_json,
    echo_pairs,
    json_option,
    load_signing_key,
    node_option,
    resolve_amount,
    tx_options,
)
from node.cli.query_cmd import _address_or_key, query
from node.cli.tx_cmd import _send, _token_and_amount, _validator_pubkey, report, submit, tx, validator_options
from node.cli.units import chain_token
from node.client import Client
from vm.txs import Delegate, EditValidator, Redelegate, Undelegate, WithdrawRewards, build_tx

BPS_RANGE = click.IntRange(min=0, max=10_000)


def _validator_address(text: str, what: str = "VALIDATOR") -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise CliError(f"{what}: {exc} (give the validator's address, ic1...)") from None


@tx.command("delegate")
@click.argument("validator")
@click.argument("amount", type=AMOUNT)
@tx_options
def delegate(validator: str, amount: AmountText, from_key: str, keyring: Path, node_url: str,
             fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
             as_json: bool) -> None:
    """Delegate AMOUNT to VALIDATOR (its address): you share its rewards, less its commission, and its slashes."""
    target = _validator_address(validator)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        result = _send(key, Delegate(target, Amount(value)), "gas_delegate", client, fee, gas_limit, nonce, no_wait,
                       timeout)
    report(result, as_json, token, {"amount": value}, delegator=str(key.address), validator=str(target))


@tx.command("undelegate")
@click.argument("validator")
@click.argument("amount", type=AMOUNT)
@tx_options
def undelegate(validator: str, amount: AmountText, from_key: str, keyring: Path, node_url: str,
               fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
               as_json: bool) -> None:
    """Start unbonding AMOUNT of your delegation to VALIDATOR; it returns after the unbonding delay and
    stays slashable for offences committed while it was bonded."""
    target = _validator_address(validator)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        result = _send(key, Undelegate(target, Amount(value)), "gas_undelegate", client, fee, gas_limit, nonce,
                       no_wait, timeout)
    report(result, as_json, token, {"amount": value}, delegator=str(key.address), validator=str(target))


@tx.command("redelegate")
@click.argument("source")
@click.argument("destination")
@click.argument("amount", type=AMOUNT)
@tx_options
def redelegate(source: str, destination: str, amount: AmountText, from_key: str, keyring: Path, node_url: str,
               fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
               as_json: bool) -> None:
    """Move AMOUNT of your delegation from SOURCE to DESTINATION without unbonding; it is locked at the
    destination until the unbonding delay has passed."""
    src, dst = _validator_address(source, "SOURCE"), _validator_address(destination, "DESTINATION")
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        ctx = chain_context(client, key, nonce)
        gas = ctx.gas("gas_redelegate", gas_limit)
        signed = build_tx(key, Redelegate(src, dst, Amount(value)), chain_id=ctx.chain_id, nonce=ctx.nonce,
                          gas_limit=gas, fee=ctx.fee(gas, None if fee is None else resolve_amount(fee, token, "--fee")))
        result = submit(client, signed, no_wait=no_wait, timeout=timeout)
    report(result, as_json, token, {"amount": value}, delegator=str(key.address), source=str(src),
           destination=str(dst))


@tx.command("withdraw-rewards")
@click.option("--validator", default=None, metavar="ADDRESS", help="Only from this validator (default: all).")
@tx_options
def withdraw_rewards(validator: str | None, from_key: str, keyring: Path, node_url: str, fee: AmountText | None,
                     gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Collect the rewards your delegations have earned. From all, the gas is the price per delegation you
    hold (counted by `query delegations`); if you add one before it lands, it fails out of gas: resend it."""
    target = None if validator is None else _validator_address(validator, "--validator")
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token = chain_token(client)
        ctx = chain_context(client, key, nonce)
        times = 1 if target is not None or gas_limit is not None else _delegation_count(client, key.address)
        gas = ctx.gas("gas_withdraw_rewards", gas_limit, extra=0 if ctx.vm is None else
                      (times - 1) * int(ctx.vm["gas_withdraw_rewards"]))
        signed = build_tx(key, WithdrawRewards(target), chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas,
                          fee=ctx.fee(gas, None if fee is None else resolve_amount(fee, token, "--fee")))
        result = submit(client, signed, no_wait=no_wait, timeout=timeout)
    amounts: dict[str, int] = {}
    if result.result is not None and result.result.ok:
        amounts["withdrawn"] = int.from_bytes(result.result.data, "big")
    report(result, as_json, token, amounts, delegator=str(key.address))


def _delegation_count(client: Client, address: Address) -> int:
    """The delegations a withdraw-from-all pays for (docs/staking.md, "Gas"): the account's, at least one."""
    return max(1, len(client.call("delegations", {"address": str(address), "height": None})["delegations"]))


@tx.command("edit-validator")
@click.option("--commission", "commission", type=BPS_RANGE, required=True, help="Commission, basis points.")
@click.option("--max-commission", type=BPS_RANGE, required=True,
              help="Highest commission ever allowed (fixed once others delegate).")
@click.option("--max-change", type=BPS_RANGE, required=True,
              help="Largest change per staking.commission_change_blocks (fixed once others delegate).")
@click.option("--min-self-stake", type=AMOUNT, default=None,
              help="Raise the own stake you promise to keep bonded (never lowered; default: unchanged).")
@validator_options
@tx_options
def edit_validator(commission: int, max_commission: int, max_change: int, min_self_stake: AmountText | None,
                   validator: str | None, validator_key: Path | None, from_key: str, keyring: Path, node_url: str,
                   fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
                   as_json: bool) -> None:
    """Set the commission of a validator you own. Send it right after the first stake: the terms (maximum
    and maximum change) are fixed once another account delegates. --min-self-stake promises delegators a
    floor for your own stake above staking.min_self_stake: below it the validator is jailed."""
    pub = _validator_pubkey(validator, validator_key)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token = chain_token(client)
        floor = 0 if min_self_stake is None else resolve_amount(min_self_stake, token, "--min-self-stake", minimum=1)
        result = _send(key, EditValidator(pub, commission, max_commission, max_change, Amount(floor)),
                       "gas_edit_validator", client, fee, gas_limit, nonce, no_wait, timeout)
    amounts = {"min_self_stake": floor} if floor else {}
    report(result, as_json, token, amounts, owner=str(key.address), validator=pub.hex(), commission_bps=commission,
           max_commission_bps=max_commission, max_change_bps=max_change)


@query.command("delegations")
@click.argument("address")
@click.option("--height", type=click.IntRange(min=0), default=None, help="At this height (default: latest).")
@click.option("--keyring", envvar="INFERCHAIN_KEYRING", default="~/.inferchain/keys", type=click.Path(path_type=Path),
              help="Keyring, to name an account by key name.")
@node_option
@json_option
def delegations(address: str, height: int | None, keyring: Path, node_url: str, as_json: bool) -> None:
    """What ADDRESS (or a key name) delegates: per validator the bonded amount, its rewards due and the
    validator's commission."""
    addr = _address_or_key(address, keyring)
    with Client(node_url) as client:
        o = client.call("delegations", {"address": addr, "height": height})
        token = chain_token(client)
    if as_json:
        echo_json(o)
        return
    click.echo(f"delegations of {o['delegator']} at height {o['height']}:")
    for d in o["delegations"]:
        click.echo(f"  {d['validator']}  bonded={format_amount(d['amount'], token)}  "
                   f"rewards={format_amount(d['rewards'], token)}"
                   f"  commission={d['commission_bps'] / 100:.2f}%")
    if not o["delegations"]:
        click.echo("  none")


@query.command("rewards")
@click.argument("address")
@click.option("--keyring", envvar="INFERCHAIN_KEYRING", default="~/.inferchain/keys", type=click.Path(path_type=Path),
              help="Keyring, to name an account by key name.")
@node_option
@json_option
def rewards(address: str, keyring: Path, node_url: str, as_json: bool) -> None:
    """Rewards ADDRESS (or a key name) may withdraw now, per validator and in total."""
    addr = _address_or_key(address, keyring)
    with Client(node_url) as client:
        o = client.call("rewards", {"address": addr})
        token = chain_token(client)
    if as_json:
        echo_json(o)
        return
    echo_pairs([("delegator", o["delegator"]), ("height", o["height"]), ("total", format_amount(o["total"], token))]
               + [(r["validator"], format_amount(r["amount"], token)) for r in o["rewards"]])
