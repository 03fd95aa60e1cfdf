"""What a transaction command needs from the chain: chain id, next nonce, gas schedule, minimum gas price."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.keys import PrivateKey
from core.units import Token
from node.cli.common import CliError, default_genesis
from node.cli.units import chain_params, token_from_params
from node.client import Client


@dataclass(frozen=True, slots=True)
class ChainContext:
    chain_id: str
    nonce: int
    vm: dict[str, Any] | None  # the VM params (gas schedule, min gas price), None if the node hides them
    token: Token               # the chain's units, for reading and showing amounts

    def gas_price(self) -> int:
        return int(self.vm["min_gas_price"]) if self.vm else 1

    def gas(self, name: str, explicit: int | None, extra: int = 0) -> int:
        """The gas limit: explicit, else the schedule's price for this kind of transaction."""
        if explicit is not None:
            return explicit
        if self.vm is None:
            raise CliError("the node does not publish its gas schedule; pass --gas-limit and --fee")
        return int(self.vm[name]) + extra

    def fee(self, gas_limit: int, explicit: int | None) -> int:
        return explicit if explicit is not None else gas_limit * self.gas_price()


def chain_context(client: Client, key: PrivateKey, nonce: int | None) -> ChainContext:
    status = client.status()
    if nonce is None:
        nonce = client.account(key.address).nonce
    params = chain_params(client) or _genesis_params(status.chain_id)
    vm = params.get("vm") if params else None
    return ChainContext(status.chain_id, nonce, vm if isinstance(vm, dict) else None, token_from_params(params))


def _genesis_params(chain_id: str) -> dict[str, Any] | None:
    """The repository's genesis params (vm, token), when the node runs that chain and does not publish its own."""
    try:
        doc = json.loads(default_genesis().read_text())
    except (OSError, ValueError):
        return None
    if doc.get("chain_id") != chain_id or not isinstance(doc.get("vm"), dict):
        return None
    return {"vm": dict(doc["vm"]), "token": doc.get("token")}
