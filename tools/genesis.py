"""Generate a devnet genesis.json, deterministically: `python -m tools.genesis --validators N --out FILE`.

Validator i's consensus key is `PrivateKey.derive(seed_phrase, "validator", i)`; account j's key is
`PrivateKey.derive(seed_phrase, "account", j)`, and validator i is owned by account i. These keys are
PUBLICLY KNOWN: the file says so, and such a chain must never hold value. The committed models of
vm/models (manifest.json) are registered at genesis, the PoI model among them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from core.address import encode_address
from core.errors import ConfigError
from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Amount
from vm.genesis import REPO_ROOT, parse_genesis
from vm.sandbox.limits import GasSchedule, SandboxLimits
from vm.txs import GoldenVector, ModelClass, ModelMeta, compute_model_id

DEFAULT_CHAIN_ID = "inferchain-devnet-1"
DEFAULT_SEED_PHRASE = "inferchain devnet publicly known seed - never use these keys for anything of value"
DEFAULT_GENESIS_TIME = "2026-01-01T00:00:00Z"
VALIDATOR_PURPOSE = "validator"
ACCOUNT_PURPOSE = "account"
PUBLIC_KEYS_NOTE = (
    "PUBLICLY KNOWN KEYS: every validator and account key of this chain derives from the seed phrase in "
    "'keys' with core.keys.PrivateKey.derive(seed_phrase, purpose, index). Anyone can sign with them. "
    "Local development only; never hold value on this chain."
)
TOKEN = 1_000_000  # smallest units per token (token.decimals = 6)

DEFAULT_PARAMS: dict[str, Any] = {
    "token": {"display": "ifc", "base": "uifc", "decimals": 6},
    "consensus": {
        "timeout_propose_ms": 3000, "timeout_propose_delta_ms": 500,
        "timeout_prevote_ms": 1000, "timeout_prevote_delta_ms": 500,
        "timeout_precommit_ms": 1000, "timeout_precommit_delta_ms": 500,
        "timeout_commit_ms": 1000,
        # A round size that holds an inference with inputs at the cap (1 MiB) and up to ~100 KiB of outputs,
        # other transactions and the last commit (~10 KiB for 100 validators). A block of transfers (~164 B each with its
        # result) then holds ~7,100: 2,000 transfers/s needs ~500 KB at blocks 1.5 s apart; a larger block
        # only adds work per round (bench/worst_block.py: 10,000 transfers take 0.88 of the budget).
        "max_block_bytes": 1152 * 1024,
        "max_block_gas": 200_000_000,
    },
    "vm": {
        "min_gas_price": 1,
        "max_tx_gas": 200_000_000,
        "gas_transfer": 1_000,
        "gas_stake": 5_000,
        "gas_unstake": 5_000,
        "gas_unjail": 5_000,
        # The delegation kinds: 1,000 gas per state record read or written on the kind's longest path, as
        # bench/delegation_gas.py counts them (docs/staking.md, "Gas"); withdraw-rewards per validator.
        "gas_delegate": 11_000,
        "gas_undelegate": 12_000,
        "gas_redelegate": 19_000,
        "gas_withdraw_rewards": 7_000,
        "gas_edit_validator": 5_000,
        "gas_chunk_base": 10_000,
        "gas_chunk_per_byte": 1,
        "gas_register_base": 1_000_000,
        "gas_register_per_byte": 4,
        "gas_register_per_node": 40_000,
        "gas_register_per_propagated_element": 140,
        "gas_infer_base": 20_000,
        "gas_infer_per_io_byte": 1,
        "upload_expiry_blocks": 100,
        "upload_expiry_blocks_per_mib": 25,
        # The tensor cap (core.limits.MAX_TENSOR_BYTES): an ImageNet image (602,112 B) with room to spare. The
        # transaction (~1 MiB + 300 B) is gossiped alone, and evidence of a wrong output carries it with its
        # outputs and proofs, both under the 2 MiB gossip frame (core.limits.P2P_FRAME_BYTES).
        "max_infer_input_bytes": 1024 * 1024,
        "max_block_models": 32,
        # Deferred activation: a check over 150M gas (a ~35 MB model) runs at a later height, paid in tokens;
        # the whole registration (check and golden runs) up to 1.2G gas (a 128 MiB model is ~0.55G of check);
        # the queue spaces activations by 200M gas of background work per block.
        "defer_check_gas_over": 150_000_000,
        "gas_register_deferred": 1_000_000,
        "max_deferred_registration_gas": 1_200_000_000,
        "background_gas_per_block": 200_000_000,
        # A check no proposer could run is postponed at most 3 times, then rejected "could not be checked";
        # validators that can run it refuse both in blocks built before round 4 (the liveness escape).
        "max_postponements": 3,
        "unchecked_verdict_round": 4,
        "max_resident_bytes": 512 * 1024 * 1024,
        # 0.1 token per KiB locked while a model is resident (docs/sandbox.md, "Retiring a model"): filling the
        # 512 MiB budget locks 52,429 tokens, a 100 MB model ~10,000; refunded when the model is retired.
        "resident_deposit_per_kib": TOKEN // 10,
        "gas_retire_model": 20_000,
    },
    "staking": {
        "min_validator_stake": 1_000 * TOKEN,
        "power_unit": TOKEN,
        "unbonding_blocks": 100,
        "max_validators": 100,
        "commission_change_blocks": 86_400,  # a day of 1 s blocks
        "min_self_stake": 100 * TOKEN,  # the owner's own stake, below which its validator is jailed
    },
    "rewards": {
        "poi_reward_per_block": 10 * TOKEN,
        "proposer_bonus_per_signature": TOKEN // 10,
        "fee_burn_bps": 5_000,
    },
    "slashing": {
        "poi_wrong_slash_bps": 100,
        "double_sign_slash_bps": 500,
        "wrong_inference_slash_bps": 1_000,
        "miss_window": 32,
        "max_misses": 16,
        "jail_blocks": 100,
        "max_evidence_age": 100,  # at most unbonding_blocks (vm.params.validate_params)
    },
    "gov": {  # Cosmos x/gov v1 defaults; periods in blocks, short for a devnet (docs/governance.md)
        "min_deposit": 10 * TOKEN,
        "max_deposit_blocks": 120,
        "voting_blocks": 60,
        "quorum_bps": 3_340,
        "threshold_bps": 5_000,
        "veto_threshold_bps": 3_340,
        "burn_deposit_prevote": True,
        "burn_vote_quorum": False,
        "burn_vote_veto": True,
        "gas_submit_proposal": 50_000,
        "gas_deposit": 10_000,
        "gas_vote": 10_000,
    },
}


def sandbox_params(max_model_bytes: int = 128 << 20) -> dict[str, dict[str, int]]:
    limits = {f.name: getattr(SandboxLimits(), f.name) for f in dataclasses.fields(SandboxLimits) if f.name != "gas"}
    limits["max_model_bytes"] = max_model_bytes
    gas = {f.name: getattr(GasSchedule(), f.name) for f in dataclasses.fields(GasSchedule)}
    return {"sandbox_limits": limits, "gas_schedule": gas}


def validator_key(seed_phrase: str, index: int) -> PrivateKey:
    return PrivateKey.derive(seed_phrase, VALIDATOR_PURPOSE, index)


def account_key(seed_phrase: str, index: int) -> PrivateKey:
    return PrivateKey.derive(seed_phrase, ACCOUNT_PURPOSE, index)


def model_entries(owner: str, include: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Genesis entries for the committed models of vm/models (all of them unless `include` names some)."""
    from vm.genesis import _golden, _tensor_specs
    from vm.models import MODELS_DIR, POI_MODEL, manifest

    entries = []
    for m in manifest()["models"]:
        if include is not None and m["name"] not in include and m["name"] != POI_MODEL:
            continue
        model_file = MODELS_DIR / m["file"]
        golden_file = MODELS_DIR / m["golden"]
        inputs = _tensor_specs(m["inputs"], m["name"])
        outputs = _tensor_specs(m["outputs"], m["name"])
        golden: tuple[GoldenVector, ...] = _golden(golden_file, inputs, outputs, m["name"])
        meta = ModelMeta(m["name"], inputs, outputs,
                         ModelClass.EXACT if m["class"] == "exact" else ModelClass.TOLERANT,
                         m["grid_k"], m["t_abs"], m["t_rel_ppm"], Amount(0), golden)
        model_id = compute_model_id(sha256(model_file.read_bytes()), meta)
        entries.append({
            "name": m["name"],
            "id": model_id.hex(),
            "poi": m["name"] == POI_MODEL,
            "owner": owner,
            "file": str(model_file.relative_to(REPO_ROOT)),
            "golden": str(golden_file.relative_to(REPO_ROOT)),
            "class": m["class"],
            "grid_k": m["grid_k"],
            "t_abs": m["t_abs"],
            "t_rel_ppm": m["t_rel_ppm"],
            "fee_per_call": 0,
            "inputs": m["inputs"],
            "outputs": m["outputs"],
            "about": m.get("about", ""),
        })
    return entries


# Genesis validators' commission terms (basis points): 5 %, at most 20 %, moving at most 1 point per edit.
DEVNET_COMMISSION = {"rate_bps": 500, "max_bps": 2_000, "max_change_bps": 100}


def make_genesis(validators: int = 4, *, accounts: int | None = None, chain_id: str = DEFAULT_CHAIN_ID,
                 seed_phrase: str = DEFAULT_SEED_PHRASE, genesis_time: str = DEFAULT_GENESIS_TIME,
                 stake: int = 10_000 * TOKEN, balance: int = 1_000_000 * TOKEN,
                 overrides: dict[str, dict[str, Any]] | None = None,
                 models: tuple[str, ...] | None = None,
                 commission: dict[str, int] | None = DEVNET_COMMISSION) -> dict[str, Any]:
    """The genesis document (a dict ready for json.dump); same arguments, same document. `commission`: the
    terms every validator publishes at genesis (None: none, so no one may delegate before edit-validator)."""
    if validators < 1:
        raise ValueError("at least one validator")
    n_accounts = validators + 4 if accounts is None else accounts
    if n_accounts < validators:
        raise ValueError("every validator needs its owner account: accounts >= validators")
    owners = [encode_address(account_key(seed_phrase, i).address) for i in range(n_accounts)]
    params = json.loads(json.dumps(DEFAULT_PARAMS))
    params["vm"].update(sandbox_params())
    for section, values in (overrides or {}).items():
        params[section].update(values)
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "genesis_time": genesis_time,
        "note": PUBLIC_KEYS_NOTE,
        "keys": {"seed_phrase": seed_phrase, "validator_purpose": VALIDATOR_PURPOSE,
                 "account_purpose": ACCOUNT_PURPOSE, "owner_of_validator_i": "account i"},
        **params,
        "validators": [
            {"name": f"validator-{i}", "public_key": validator_key(seed_phrase, i).public_key.hex(),
             "owner": owners[i], "stake": stake, **({"commission": commission} if commission else {})}
            for i in range(validators)
        ],
        "accounts": [{"name": f"account-{i}", "address": owners[i], "balance": balance} for i in range(n_accounts)],
        "models": model_entries(owners[0], models),
    }
    return doc


def write_genesis(doc: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(doc, indent=2) + "\n")


def parse_overrides(text: str | None) -> dict[str, dict[str, Any]]:
    """`--overrides`: a JSON object of parameter sections, each an object of values, e.g.
    `{"slashing": {"jail_blocks": 5}}`; the sections are those of DEFAULT_PARAMS."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--overrides") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise click.BadParameter("expected an object of sections, each an object of values",
                                 param_hint="--overrides")
    unknown = sorted(set(value) - set(DEFAULT_PARAMS))
    if unknown:
        raise click.BadParameter(f"unknown sections {unknown}; known: {sorted(DEFAULT_PARAMS)}",
                                 param_hint="--overrides")
    return value


@click.command()
@click.option("--validators", "-n", type=click.IntRange(1, 100), default=4, show_default=True)
@click.option("--accounts", type=click.IntRange(1, 10_000), default=None,
              help="funded accounts (default: validators + 4)")
@click.option("--chain-id", default=DEFAULT_CHAIN_ID, show_default=True)
@click.option("--seed-phrase", default=DEFAULT_SEED_PHRASE, show_default=True)
@click.option("--genesis-time", default=DEFAULT_GENESIS_TIME, show_default=True)
@click.option("--overrides", default=None, metavar="JSON",
              help='parameter overrides, e.g. \'{"slashing": {"jail_blocks": 5}}\'')
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(validators: int, accounts: int | None, chain_id: str, seed_phrase: str, genesis_time: str,
         overrides: str | None, out: Path) -> None:
    """Write a devnet genesis file whose keys derive from a PUBLIC seed phrase."""
    try:
        doc = make_genesis(validators, accounts=accounts, chain_id=chain_id, seed_phrase=seed_phrase,
                           genesis_time=genesis_time, overrides=parse_overrides(overrides))
        parse_genesis(json.loads(json.dumps(doc)))  # refuse to write a file the node would refuse
    except (ValueError, ConfigError) as exc:
        raise click.ClickException(f"genesis refused: {exc}") from None
    write_genesis(doc, out)
    click.echo(f"wrote {out}: {validators} validators, {len(doc['accounts'])} accounts, "
               f"{len(doc['models'])} models (PUBLICLY KNOWN KEYS)")


if __name__ == "__main__":
    sys.exit(main())
