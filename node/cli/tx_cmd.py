"""`inferchain tx send|stake|unstake|unjail`: build, sign, broadcast and (by default) wait for the block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core.address import parse_address
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Amount, PublicKeyBytes
from core.units import AmountText, Token, format_amount
from node.cli.chainctx import chain_context
from node.cli.common import AMOUNT, CliError, emit, load_signing_key, resolve_amount, tx_options
from node.cli.units import chain_token
from node.client import BroadcastResult, Client
from vm.txs import Stake, Transfer, Unjail, Unstake, build_tx


@click.group()
def tx() -> None:
    """Send transactions: transfers and staking."""


def submit(client: Client, transaction: Transaction, *, no_wait: bool, timeout: float) -> BroadcastResult:
    """Broadcast; in wait mode a failed result is an error (one line, non-zero exit)."""
    result = client.broadcast_tx(transaction, mode="sync" if no_wait else "commit", timeout=timeout)
    if result.result is not None and not result.result.ok:
        log = f": {result.result.log}" if result.result.log else ""
        raise CliError(f"transaction {result.hash.hex()} failed in block {result.height} "
                       f"({result.result.status}{log})")
    return result


def report(result: BroadcastResult, as_json: bool, token: Token, amounts: dict[str, int] | None = None,
           **extra: Any) -> None:
    """The transaction's hash, sender and amounts, then its block and result (or that the mempool took it).

    JSON amounts are integers of the base unit; people read them in the display unit."""
    doc: dict[str, Any] = {"hash": result.hash.hex(), **extra, **(amounts or {})}
    if result.height is not None:
        doc["height"] = result.height
        doc["status"] = result.result.status if result.result else None
        doc["gas_used"] = result.result.gas_used if result.result else None
    else:
        doc["status"] = "accepted into the mempool"
    emit(doc, as_json, shown={k: format_amount(v, token) for k, v in (amounts or {}).items()})


def _send(key: PrivateKey, payload: Any, gas_name: str, client: Client, fee: AmountText | None,
          gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float) -> BroadcastResult:
    ctx = chain_context(client, key, nonce)
    gas = ctx.gas(gas_name, gas_limit)
    fee_value = ctx.fee(gas, None if fee is None else resolve_amount(fee, ctx.token, "--fee"))
    signed = build_tx(key, payload, chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas, fee=fee_value)
    return submit(client, signed, no_wait=no_wait, timeout=timeout)


def _token_and_amount(client: Client, amount: AmountText) -> tuple[Token, int]:
    token = chain_token(client)
    return token, resolve_amount(amount, token, minimum=1)


@tx.command("send")
@click.argument("to")
@click.argument("amount", type=AMOUNT)
@tx_options
def send(to: str, amount: AmountText, from_key: str, keyring: Path, node_url: str, fee: AmountText | None,
         gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Transfer AMOUNT to the address TO (10ifc, 2.5ifc, 1500uifc; a bare integer counts base units)."""
    try:
        recipient = parse_address(to)
    except ValueError as exc:
        raise CliError(f"TO: {exc}") from None
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        result = _send(key, Transfer(recipient, Amount(value)), "gas_transfer", client, fee, gas_limit, nonce,
                       no_wait, timeout)
    report(result, as_json, token, {"amount": value}, sender=str(key.address), to=str(recipient))


def _validator_pubkey(validator: str | None, validator_key: Path | None) -> PublicKeyBytes:
    if (validator is None) == (validator_key is None):
        raise CliError("name the validator with exactly one of --validator PUBKEY or --validator-key FILE")
    if validator_key is not None:
        import json
        try:
            return PublicKeyBytes.from_hex(json.loads(validator_key.read_text())["public_key"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CliError(f"{validator_key}: not a key file ({exc})") from None
    try:
        return PublicKeyBytes.from_hex(str(validator))
    except ValueError as exc:
        raise CliError(f"--validator: {exc} (give the consensus public key, 64 hex digits)") from None


_validator_opts = [
    click.option("--validator", default=None, metavar="PUBKEY", help="The validator's consensus public key (hex)."),
    click.option("--validator-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
                 help="Read the public key from a validator key file (e.g. <home>/validator_key.json)."),
]


def validator_options(fn: Any) -> Any:
    for decorator in reversed(_validator_opts):
        fn = decorator(fn)
    return fn


@tx.command("stake")
@click.argument("amount", type=AMOUNT)
@validator_options
@tx_options
def stake(amount: AmountText, validator: str | None, validator_key: Path | None, from_key: str, keyring: Path,
          node_url: str, fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool,
          timeout: float, as_json: bool) -> None:
    """Bond AMOUNT to a validator; the first stake makes the sender its owner (a new validator joins
    the set two heights after its stake reaches the minimum)."""
    pub = _validator_pubkey(validator, validator_key)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        result = _send(key, Stake(pub, Amount(value)), "gas_stake", client, fee, gas_limit, nonce, no_wait, timeout)
    report(result, as_json, token, {"amount": value}, owner=str(key.address), validator=pub.hex())


@tx.command("unstake")
@click.argument("amount", type=AMOUNT)
@validator_options
@tx_options
def unstake(amount: AmountText, validator: str | None, validator_key: Path | None, from_key: str, keyring: Path,
            node_url: str, fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool,
            timeout: float, as_json: bool) -> None:
    """Start unbonding AMOUNT from a validator you own; it returns after the unbonding delay."""
    pub = _validator_pubkey(validator, validator_key)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        token, value = _token_and_amount(client, amount)
        result = _send(key, Unstake(pub, Amount(value)), "gas_unstake", client, fee, gas_limit, nonce, no_wait,
                       timeout)
    report(result, as_json, token, {"amount": value}, owner=str(key.address), validator=pub.hex())


@tx.command("unjail")
@validator_options
@tx_options
def unjail(validator: str | None, validator_key: Path | None, from_key: str, keyring: Path, node_url: str,
           fee: AmountText | None, gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float,
           as_json: bool) -> None:
    """Release a validator you own from jail once its jail time is over."""
    pub = _validator_pubkey(validator, validator_key)
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        result = _send(key, Unjail(pub), "gas_unjail", client, fee, gas_limit, nonce, no_wait, timeout)
        token = chain_token(client)
    report(result, as_json, token, owner=str(key.address), validator=pub.hex())


from node.cli import staking_cmd as _staking_cmd  # noqa: E402,F401  (adds delegate, undelegate, redelegate, ...)
