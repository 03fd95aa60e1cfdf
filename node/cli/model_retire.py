"""`inferchain model retire MODEL`: the owner gives a model's room back (vm/retire.py).

The model takes no inference after the block that retires it; its resident bytes and slot, its blob and its
name are released and its deposit comes back to the owner (docs/sandbox.md, "Retiring a model"). A model in
the PoI set is refused by the chain: governance removes it from the set first.
"""

from __future__ import annotations

from pathlib import Path

import click

from core.types import Hash32
from core.units import AmountText
from node.cli.chainctx import chain_context
from node.cli.common import CliError, load_signing_key, resolve_amount, tx_options
from node.cli.tx_cmd import report, submit
from node.client import Client
from vm.txs import RetireModel, build_tx


def resolve_retirable(client: Client, text: str) -> Hash32:
    """A model id (64 hex digits), or the name a registered or pending model holds."""
    clean = text.strip().removeprefix("0x").lower()
    if len(clean) == 64 and all(c in "0123456789abcdef" for c in clean):
        return Hash32.from_hex(clean)
    holder = client.model_name(text)
    if holder is None or holder["status"] not in ("registered", "pending"):
        raise CliError(f"no registered or pending model named {text!r} (give its id, or see "
                       "`inferchain model list`)")
    return Hash32.from_hex(str(holder["model_id"]))


@click.command("retire")
@click.argument("model_ref", metavar="MODEL")
@tx_options
def retire(model_ref: str, from_key: str, keyring: Path, node_url: str, fee: AmountText | None,
           gas_limit: int | None, nonce: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Retire MODEL (id or name), which the --from key owns: it takes no new inference, its resident room and
    bytes are released and its deposit is refunded."""
    key = load_signing_key(from_key, keyring)
    with Client(node_url) as client:
        model_id = resolve_retirable(client, model_ref)
        ctx = chain_context(client, key, nonce)
        gas = ctx.gas("gas_retire_model", gas_limit)
        fee_value = ctx.fee(gas, None if fee is None else resolve_amount(fee, ctx.token, "--fee"))
        signed = build_tx(key, RetireModel(model_id), chain_id=ctx.chain_id, nonce=ctx.nonce, gas_limit=gas,
                          fee=fee_value)
        result = submit(client, signed, no_wait=no_wait, timeout=timeout)
    extra: dict[str, object] = {"model_id": model_id.hex()}
    refunded = None
    if result.result is not None and len(result.result.data) == 8:
        refunded = int.from_bytes(result.result.data, "big")
    report(result, as_json, ctx.token, None if refunded is None else {"deposit_refunded": refunded}, **extra)
