"""The explorer's aggregate queries (`ots_*`, after Otterscan's namespace): a few calls that each answer one
page of the explorer, every one bounded by a paging cap and run off the event loop.

    ots_recentBlocks  the newest `count` (<= 100) blocks: time, interval, txs, gas, proposer and who signed
    ots_txDetail      a transaction with its payload decoded (an inference's inputs as tensors)
    ots_accountTxs    an account's transactions, newest first, a page (<= 25) at a time (node.chainindex)
    ots_modelStats    a model's calls (from the index) and its golden vectors
    ots_validators    the signing set as `validators`, with PoI misses in the slashing window and its limits
    ots_search        what a search box string names: a height, a block, a tx, an account, a model or a proposal
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import trio

from core.address import encode_address, parse_address
from core.errors import DecodeError
from core.tx import Transaction
from core.types import U64_MAX, Address, Hash32, Height
from core.votes import Commit, VoteType
from node.rpc import errors as E
from node.rpc.api import NodeApi
from node.rpc.dispatch import Param, Registry
from node.rpc.jsonenc import to_json
from node.rpc.methods import (
    ADDRESS,
    HASH,
    OBJ,
    parse_address_param,
    parse_hash,
    tx_json,
    tx_summary,
    validators_json,
)
from vm.poi import PoiOutcome
from vm.state import ModelRecord
from vm.txs import PAYLOAD_TYPES, TxKind

MAX_RECENT_BLOCKS = 100
MAX_SEARCH_CHARS = 128
MAX_TX_HASHES = 20
"""`ots_recentBlocks` lists at most this many transaction hashes per block (the count is always exact)."""
MAX_ACCOUNT_TXS = 25
"""`ots_accountTxs` page size cap: each entry reads the block holding it."""
MAX_MODEL_NAME_SCAN = 1000
"""`ots_search` by model name reads at most this many models (ten pages of the node's model index)."""

registry = Registry()


def parse_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RECENT_BLOCKS:
        raise ValueError(f"count is an integer from 1 to {MAX_RECENT_BLOCKS}")
    return value


def parse_query(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_SEARCH_CHARS:
        raise ValueError(f"query is a non-empty string of at most {MAX_SEARCH_CHARS} characters")
    return value.strip()


def signers_json(commit: Commit | None, block_id: bytes) -> list[dict[str, Any]]:
    """Per precommit in the commit of a block: who, whether it is for the block, and whether it carries a
    proof-of-inference answer (a precommit without one is a missed challenge)."""
    if commit is None:
        return []
    return [{"validator": encode_address(v.validator_address), "for_block": v.block_id == block_id,
             "poi": v.poi is not None} for v in commit.precommits if v.type == VoteType.PRECOMMIT]


def poi_json(outcomes: Sequence[tuple[Address, PoiOutcome]] | None) -> list[dict[str, str]] | None:
    """How each validator's answer to this height's PoI challenge scored; None until block height+2."""
    if outcomes is None:
        return None
    return [{"validator": encode_address(a), "outcome": o.value} for a, o in outcomes]


def recent_blocks(api: NodeApi, count: int) -> list[dict[str, Any]]:
    newest = api.block(None)
    if newest is None:
        return []
    top = int(newest[0].height)
    out: list[dict[str, Any]] = []
    previous_time: int | None = None
    # One more block than asked, below the oldest, so that the oldest one has an interval too.
    for h in range(max(1, top - count), top + 1):
        found = newest if h == top else api.block(Height(h))
        if found is None:
            previous_time = None
            continue
        block, commit = found
        t = int(block.header.time)
        if h > top - count:
            out.append({"height": h, "id": block.id.hex(), "time": t,
                        "interval": t - previous_time if previous_time is not None else None,
                        "txs": len(block.txs), "tx_hashes": [tx.hash.hex() for tx in block.txs[:MAX_TX_HASHES]],
                        "gas_used": sum(int(r.gas_used) for r in block.results),
                        "fees": sum(int(tx.fee) for tx in block.txs),
                        "proposer": encode_address(block.header.proposer),
                        "signers": signers_json(commit, bytes(block.id)),
                        "poi": poi_json(api.poi_outcomes(h))})
        previous_time = t
    out.reverse()
    return out


@registry.method("ots_recentBlocks", "The newest blocks, newest first: time, interval to the block before, "
                                     "transactions, gas, fees, proposer and the precommits of each commit.",
                 params=(Param("count", {"type": "integer", "minimum": 1, "maximum": MAX_RECENT_BLOCKS},
                               f"how many blocks (at most {MAX_RECENT_BLOCKS})", required=False,
                               parse=parse_count, default=20),),
                 result="RecentBlocks", result_schema={"type": "array", "items": OBJ,
                                                       "maxItems": MAX_RECENT_BLOCKS})
async def ots_recent_blocks(api: NodeApi, count: int) -> list[dict[str, Any]]:
    # Up to 101 block reads and decodes: off the event loop.
    return await trio.to_thread.run_sync(recent_blocks, api, count)


def payload_json(tx: Transaction) -> dict[str, Any]:
    """The payload by its kind's fields; a payload that does not decode says so (it was refused in-block)."""
    try:
        kind = TxKind(tx.kind)
    except ValueError:
        return {"kind": f"unknown ({tx.kind})", "error": "unknown transaction kind"}
    try:
        payload = PAYLOAD_TYPES[kind].decode(tx.payload)
    except DecodeError as exc:
        return {"kind": kind.name.lower(), "error": str(exc)}
    body = to_json(payload)
    if isinstance(body, dict) and isinstance(body.get("header"), dict):
        meta = body["header"].get("meta")
        if isinstance(meta, dict):
            meta.pop("golden", None)
    if kind == TxKind.MODEL_CHUNK and isinstance(body, dict):
        body["data"] = f"{len(tx.payload)} bytes"
    return {"kind": kind.name.lower(), **(body if isinstance(body, dict) else {"value": body})}


@registry.method("ots_txDetail", "A committed transaction with its result and its payload decoded "
                                 "(an inference's inputs as tensors).",
                 params=(Param("hash", HASH, "transaction hash", parse=parse_hash),),
                 result="TxDetail", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def ots_tx_detail(api: NodeApi, hash: Hash32) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        view = api.tx(hash)
        if view is None:
            raise E.not_found(f"no committed transaction {hash.hex()}")
        return {**tx_json(view), "payload": payload_json(view.tx)}

    return await trio.to_thread.run_sync(read)


def parse_cursor(value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in value)):
        raise ValueError("before is [height, index] of the last transaction of the previous page")
    return int(value[0]), int(value[1])


def parse_account_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ACCOUNT_TXS:
        raise ValueError(f"limit is an integer from 1 to {MAX_ACCOUNT_TXS}")
    return value


def account_txs(api: NodeApi, address: Address, limit: int, before: tuple[int, int] | None) -> dict[str, Any]:
    entries = api.account_txs(address, limit, before)
    out = []
    for e in entries:
        view = api.tx(e.tx_hash)
        if view is None:  # indexed but not readable (pruned): say so rather than drop it
            out.append({"hash": e.tx_hash.hex(), "height": e.height, "index": e.index})
            continue
        out.append({"hash": e.tx_hash.hex(), "height": e.height, "index": e.index, **tx_summary(view.tx),
                    "status": view.result.status.name.lower(), "gas_used": int(view.result.gas_used)})
    last = entries[-1] if len(entries) == limit else None
    return {"txs": out, "next": [last.height, last.index] if last is not None else None}


@registry.method("ots_accountTxs", "An account's transactions (sent, or transfers received), newest first, "
                                   "from the node's index; `next` continues with the following page.",
                 params=(Param("address", ADDRESS, "account address", parse=parse_address_param),
                         Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_ACCOUNT_TXS},
                               f"transactions per page (at most {MAX_ACCOUNT_TXS})", required=False,
                               parse=parse_account_limit, default=MAX_ACCOUNT_TXS),
                         Param("before", {"type": "array", "items": {"type": "integer", "minimum": 0},
                                          "minItems": 2, "maxItems": 2},
                               "[height, index] from the previous page's `next`; omit for the newest",
                               required=False, parse=parse_cursor)),
                 result="AccountTxs", result_schema=OBJ)
async def ots_account_txs(api: NodeApi, address: Address, limit: int,
                          before: tuple[int, int] | None) -> dict[str, Any]:
    # Up to MAX_ACCOUNT_TXS index reads and block decodes: off the event loop.
    return await trio.to_thread.run_sync(account_txs, api, address, limit, before)


@registry.method("ots_validators", "The next block's signing set as `validators` returns it, with each "
                                   "validator's PoI misses in the slashing window and the window's size and limit.",
                 result="ValidatorsWindow", result_schema=OBJ)
async def ots_validators(api: NodeApi) -> dict[str, Any]:
    view = api.validators(None)
    body = validators_json(view)
    for entry, v in zip(body["validators"], view.validators, strict=True):
        entry["window_misses"] = v.window_misses
    current = api.params()
    slashing = getattr(current, "slashing", None)
    body["miss_window"] = int(slashing.miss_window) if slashing is not None else None
    body["max_misses"] = int(slashing.max_misses) if slashing is not None else None
    return body


@registry.method("ots_modelStats", "A model's usage and checks: inferences that ran on it (the node's index) "
                                   "and the golden vectors it was checked against at registration.",
                 params=(Param("model_id", HASH, "model id", parse=parse_hash),),
                 result="ModelStats", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def ots_model_stats(api: NodeApi, model_id: Hash32) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        view = api.model(model_id)
        if view is None or not isinstance(view.record, ModelRecord):
            raise E.not_found(f"no registered model {model_id.hex()}")
        golden = len(view.record.meta.golden)
        return {"model_id": model_id.hex(), "calls": api.model_calls(model_id), "golden_vectors": golden,
                "golden_status": f"{golden} golden vector(s) reproduced by the chain at registration"}

    return await trio.to_thread.run_sync(read)


_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_PROPOSAL = re.compile(r"^(?:#|proposal\s+#?)([0-9]{1,20})$", re.IGNORECASE)
"""'#3' or 'proposal 3': a bare number is a height, so a proposal id needs its prefix (a model so named is found
when no such proposal exists)."""


def search(api: NodeApi, query: str) -> dict[str, Any]:
    """What `query` names, checked in a fixed order; {"kind": "none"} when nothing matches."""
    if _DIGITS.match(query):  # ASCII digits only: str.isdigit() also takes '²', which int() refuses
        height = int(query)
        if 1 <= height <= U64_MAX and api.block(Height(height)) is not None:
            return {"kind": "block", "height": height}
        return {"kind": "none"}
    proposal = _PROPOSAL.match(query)
    if proposal and 1 <= int(proposal.group(1)) <= U64_MAX and api.gov().proposal(int(proposal.group(1))):
        return {"kind": "proposal", "id": int(proposal.group(1))}
    if _HEX64.match(query):
        key = Hash32.from_hex(query)
        if api.tx(key) is not None:
            return {"kind": "tx", "hash": key.hex()}
        found = api.block_height(key)
        if found is not None:
            return {"kind": "block", "height": int(found)}
        if api.model(key) is not None:
            return {"kind": "model", "model_id": key.hex()}
        return {"kind": "none"}
    if query.startswith("ic1"):
        try:
            return {"kind": "account", "address": encode_address(parse_address(query))}
        except ValueError:
            return {"kind": "none"}
    after: Hash32 | None = None
    for _ in range(MAX_MODEL_NAME_SCAN // 100):
        page = api.models(after, 100)
        for m in page:
            if isinstance(m.record, ModelRecord) and m.record.meta.name == query:
                return {"kind": "model", "model_id": m.model_id.hex()}
        if len(page) < 100:
            break
        after = page[-1].model_id
    return {"kind": "none"}


@registry.method("ots_search", "What a search string names: a height, a proposal ('#3' or 'proposal 3'), block "
                               "hash, tx hash, address, model id or model name (the first match in that order).",
                 params=(Param("query", {"type": "string", "maxLength": MAX_SEARCH_CHARS},
                               "the text typed into the explorer's search box", parse=parse_query),),
                 result="SearchHit", result_schema=OBJ)
async def ots_search(api: NodeApi, query: str) -> dict[str, Any]:
    # A model-name search reads up to MAX_MODEL_NAME_SCAN model records: off the event loop.
    return await trio.to_thread.run_sync(search, api, query)
