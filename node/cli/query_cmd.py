"""`inferchain query ...`: read the chain through the typed client; human output or --json."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from core.address import encode_address, parse_address
from core.units import format_amount
from node.cli.common import (
    CliError,
    echo_json,
    echo_pairs,
    emit,
    json_option,
    key_file_for,
    keyring_option,
    node_option,
    tx_kind_name,
)
from node.cli.units import chain_token
from node.client import Client
from node.rpc.jsonenc import to_json


@click.group()
def query() -> None:
    """Read accounts, blocks, transactions, validators and PoI scores."""


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


@query.command("status")
@node_option
@json_option
def status(node_url: str, as_json: bool) -> None:
    """The node's chain id, height, round, peers and mempool."""
    with Client(node_url) as client:
        s = client.status()
    if as_json:
        echo_json({f: getattr(s, f) for f in s.__slots__})
        return
    echo_pairs([("chain id", s.chain_id), ("height", s.height), ("block id", s.block_id),
                ("block time", _time(s.block_time)), ("round", s.round), ("peers", s.peers),
                ("mempool", f"{s.mempool_size} txs"), ("catching up", s.catching_up),
                ("validator", f"{s.validator} ({'in the set' if s.is_validator else 'not in the set'})"
                 if s.validator else "none"), ("node id", s.node_id)])


@query.command("account")
@click.argument("address")
@click.option("--height", type=click.IntRange(min=0), default=None, help="At this height (default: latest).")
@keyring_option
@node_option
@json_option
def account(address: str, height: int | None, keyring: Path, node_url: str, as_json: bool) -> None:
    """Balance and nonce of ADDRESS (or of a key name), with its state proof checked against the header."""
    addr = _address_or_key(address, keyring)
    with Client(node_url) as client:
        acc = client.account(addr, height)
        header = client.block(acc.height).header if acc.height > 0 else None
        token = chain_token(client)
    root = header.state_root if header is not None else acc.state_root
    verified = acc.verify(root)
    if as_json:
        echo_json({"address": encode_address(acc.address), "height": acc.height, "balance": acc.balance,
                   "denom": token.base, "nonce": acc.nonce, "exists": acc.exists, "state_root": root.hex(),
                   "proof_verified": verified})
    else:
        echo_pairs([("address", encode_address(acc.address)), ("balance", format_amount(acc.balance, token)),
                    ("nonce", acc.nonce), ("height", acc.height),
                    ("proof", "verified against the block's state root" if verified else "DOES NOT VERIFY")])
    if not verified:
        raise CliError("the node's state proof does not verify against the committed state root")


def _address_or_key(text: str, keyring: Path) -> str:
    try:
        return encode_address(parse_address(text))
    except ValueError:
        pass
    path = key_file_for(text, keyring)
    if path.exists():
        import json
        try:
            return str(json.loads(path.read_text())["address"])
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"{path}: not a key file ({exc})") from None
    raise CliError(f"{text!r} is neither an address nor a key in the keyring")


@query.command("block")
@click.argument("height", type=click.IntRange(min=1), required=False)
@node_option
@json_option
def block(height: int | None, node_url: str, as_json: bool) -> None:
    """Block HEIGHT (default: the latest): header, transactions and results."""
    with Client(node_url) as client:
        info = client.block(height)
    b, h = info.block, info.header
    if as_json:
        echo_json({"id": b.id.hex(), "header": to_json(h),
                   "txs": [{"hash": t.hash.hex(), "kind": tx_kind_name(t.kind), "sender": str(t.sender_address),
                            "status": r.status.name.lower(), "gas_used": int(r.gas_used), "log": r.log}
                           for t, r in zip(b.txs, b.results, strict=False)],
                   "commit_signatures": len(info.commit.precommits) if info.commit else None})
        return
    echo_pairs([("height", int(h.height)), ("id", b.id.hex()), ("time", _time(int(h.time))),
                ("proposer", encode_address(h.proposer)), ("state root", h.state_root.hex()),
                ("results root", h.results_root.hex()), ("txs", len(b.txs)),
                ("poi reveal", "yes" if h.poi_reveal is not None else "no"),
                ("commit", f"{len(info.commit.precommits)} precommits" if info.commit else "not yet")])
    for t, r in zip(b.txs, b.results, strict=False):
        click.echo(f"  {t.hash.hex()}  {tx_kind_name(t.kind)}  {r.status.name.lower()}  gas={int(r.gas_used)}"
                   + (f"  {r.log}" if r.log else ""))


@query.command("tx")
@click.argument("tx_hash")
@node_option
@json_option
def tx(tx_hash: str, node_url: str, as_json: bool) -> None:
    """A committed transaction and its result."""
    with Client(node_url) as client:
        info = client.tx(_hash_arg(tx_hash))
        token = chain_token(client)
    t, r = info.tx, info.result
    doc = {"hash": t.hash.hex(), "height": info.height, "index": info.index, "sender": str(t.sender_address),
           "nonce": int(t.nonce), "kind": tx_kind_name(t.kind), "fee": int(t.fee), "gas_limit": int(t.gas_limit),
           "status": r.status.name.lower(), "gas_used": int(r.gas_used), "log": r.log,
           "outputs": [to_json(o) for o in r.outputs]}
    if as_json:
        echo_json(doc)
    else:
        doc.pop("outputs")
        emit(doc, False, shown={"fee": format_amount(int(t.fee), token)})
        for i, out in enumerate(r.outputs):
            click.echo(f"output {i}: {out.to_numpy().tolist()}")


def _hash_arg(text: str) -> str:
    clean = text.strip().removeprefix("0x").lower()
    if len(clean) != 64 or any(c not in "0123456789abcdef" for c in clean):
        raise CliError(f"{text!r} is not a hash (64 hex digits)")
    return clean


@query.command("validators")
@click.option("--height", type=click.IntRange(min=1), default=None, help="The set signing this height.")
@node_option
@json_option
def validators(height: int | None, node_url: str, as_json: bool) -> None:
    """The validator set with stake, the owner's own stake and its floor, power, jail state and PoI counts."""
    with Client(node_url) as client:
        info = client.validators(height)
        token = chain_token(client)
    if as_json:
        echo_json({"height": info.height, "total_power": info.total_power,
                   "validators": [{f: (getattr(v, f).hex() if isinstance(getattr(v, f), bytes) else getattr(v, f))
                                   for f in v.__slots__} for v in info.validators]})
        return
    click.echo(f"validators signing height {info.height} (total power {info.total_power}):")
    for v in info.validators:
        state = "tombstoned" if v.tombstoned else "jailed" if v.jailed else "active"
        click.echo(f"  {v.address}  power={v.power}  stake={format_amount(v.stake, token).replace(' ', '')}  "
                   f"own={format_amount(v.self_stake, token).replace(' ', '')}"
                   f"/floor={format_amount(v.min_self_stake, token).replace(' ', '')}  {state}  "
                   f"poi={v.poi_correct}/{v.poi_wrong}/{v.poi_missed} (correct/wrong/missed)")


@query.command("poi")
@click.argument("address", required=False)
@node_option
@json_option
def poi(address: str | None, node_url: str, as_json: bool) -> None:
    """Proof-of-inference scores: per validator, challenges answered correctly, wrongly, or missed."""
    with Client(node_url) as client:
        scores = client.poi(address)
    if as_json:
        echo_json([{f: getattr(s, f) for f in s.__slots__} for s in scores])
        return
    for s in scores:
        state = " jailed" if s.jailed else ""
        click.echo(f"{s.address}  score={s.score:.3f}  correct={s.correct} wrong={s.wrong} missed={s.missed}"
                   f"  power={s.power}{state}")


from node.cli import staking_cmd as _staking_cmd  # noqa: E402,F401  (adds delegations, rewards)
