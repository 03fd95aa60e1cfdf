"""The JSON-RPC methods: parameters, result shapes and handlers, declared once (see `dispatch`).

Handlers receive the node (`api`) and their parsed parameters. Results are
plain JSON; values a client checks bit for bit also come as `raw` hex of their canonical encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from core.address import encode_address, parse_address
from core.block import Block
from core.errors import DecodeError
from core.header import TxResult
from core.tx import Transaction
from core.types import Address, Hash32, Height
from core.votes import Commit
from node.events import TxOutcome, TxState
from node.rpc import errors as E
from node.rpc.api import NodeApi
from node.rpc.dispatch import Param, Registry
from node.rpc.errors import RpcError
from node.rpc.jsonenc import raw, to_json
from node.rpc.paging import MAX_MODELS_PAGE
from node.views import (
    TX_COMMITTED,
    TX_PENDING,
    TX_REJECTED,
    TX_UNKNOWN,
    AccountView,
    InferenceView,
    ModelView,
    StatusView,
    TxStatusView,
    TxView,
    ValidatorsView,
)
from vm.txs import MAX_MODEL_NAME_BYTES

MAX_BROADCAST_BATCH = 64
MAX_STATUS_HASHES = 256  # hashes per tx_status call: index and dict lookups, no block is read
DEFAULT_COMMIT_TIMEOUT_S = 30.0
MAX_COMMIT_TIMEOUT_S = 120.0
MAX_RESIDENT_QUERY_BYTES = 1 << 40  # `resident_models`' size: any model size (the chain caps models far lower)

T = TypeVar("T")

# ------------------------------------------------------------------------------------------------ parsers


def parse_height(value: Any) -> Height:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("a height is a non-negative integer")
    return Height(value)


def parse_hash(value: Any) -> Hash32:
    if not isinstance(value, str):
        raise ValueError("a hash is 64 hex digits")
    return Hash32.from_hex(value)


def parse_address_param(value: Any) -> Address:
    if not isinstance(value, str):
        raise ValueError("an address is bech32m text (ic1...)")
    return parse_address(value)


def _parse_batch(value: Any, name: str, what: str, unit: str, limit: int, parse_item: Callable[[Any], T]) -> list[T]:
    """A non-empty JSON array of at most `limit` items, each parsed by `parse_item`; an error names the item."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name} is a non-empty array of {what}")
    if len(value) > limit:
        raise ValueError(f"at most {limit} {unit} per call, got {len(value)}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(parse_item(item))
        except ValueError as exc:
            raise ValueError(f"{name}[{i}]: {exc}") from None
    return out


def parse_hashes(value: Any) -> list[Hash32]:
    return _parse_batch(value, "hashes", "transaction hashes", "hashes", MAX_STATUS_HASHES, parse_hash)


def parse_tx(value: Any) -> Transaction:
    if not isinstance(value, str):
        raise ValueError("a transaction is hex of its canonical encoding")
    try:
        data = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ValueError("transaction is not hex") from None
    try:
        return Transaction.decode(data)
    except DecodeError as exc:
        raise ValueError(f"not a canonical transaction ({exc})") from None


def parse_txs(value: Any) -> list[Transaction]:
    return _parse_batch(value, "txs", "hex transactions", "transactions", MAX_BROADCAST_BATCH, parse_tx)


def parse_mode(value: Any) -> str:
    if value not in ("sync", "commit"):
        raise ValueError('mode is "sync" (mempool verdict) or "commit" (wait for the block)')
    return str(value)


def parse_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_COMMIT_TIMEOUT_S:
        raise ValueError(f"timeout is seconds in (0, {MAX_COMMIT_TIMEOUT_S:g}]")
    return float(value)


# ------------------------------------------------------------------------------------------------ shapes

HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
HASH = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}
ADDRESS = {"type": "string", "description": "bech32m address (ic1...)"}
HEIGHT = {"type": "integer", "minimum": 0}
OBJ = {"type": "object"}


def status_json(s: StatusView) -> dict[str, Any]:
    return {
        "chain_id": s.chain_id, "node_id": s.node_id, "moniker": s.moniker,
        "validator": encode_address(s.validator) if s.validator is not None else None,
        "is_validator": s.is_validator, "height": int(s.height), "block_id": s.block_id.hex(),
        "block_time": int(s.block_time), "state_root": s.state_root.hex(), "round": s.round,
        "peers": s.peers, "mempool_size": s.mempool_size, "mempool_bytes": s.mempool_bytes,
        "catching_up": s.catching_up, "listen_addrs": list(s.listen_addrs),
    }


def tx_summary(tx: Transaction) -> dict[str, Any]:
    return {"hash": tx.hash.hex(), "sender": encode_address(tx.sender_address), "nonce": int(tx.nonce),
            "kind": tx.kind, "fee": int(tx.fee), "gas_limit": int(tx.gas_limit), "bytes": len(tx.encode())}


def result_json(result: TxResult) -> dict[str, Any]:
    return {"status": result.status.name.lower(), "gas_used": int(result.gas_used),
            "outputs": to_json(result.outputs), "data": result.data.hex(), "log": result.log}


def block_json(block: Block, commit: Commit | None, *, summaries: bool = True) -> dict[str, Any]:
    """The `block` answer. `summaries=False`: only the height, the id and the raw block and commit, for a
    client that decodes `raw` itself (the JSON summaries cost the node more than the raw block per
    transaction: an address written, a dozen JSON values)."""
    if not summaries:
        return {"height": int(block.height), "id": block.id.hex(), "raw": raw(block),
                "commit": raw(commit) if commit is not None else None}
    return {
        "height": int(block.height), "id": block.id.hex(), "header": to_json(block.header),
        "txs": [tx_summary(tx) for tx in block.txs],
        "results": [result_json(r) for r in block.results],
        "evidence": len(block.evidence),
        "raw": raw(block), "commit": raw(commit) if commit is not None else None,
    }


def block_hashes_json(block: Block) -> dict[str, Any]:
    """The `block` answer with `hashes: true`: what a client that follows commits needs of each block (its
    transactions' hashes, their encoded size, the header's time and the last commit's round and precommit
    count), without a transaction's JSON or the raw block. A block the node holds (its recent ones are
    cached decoded) already knows each transaction's hash and encoding: nothing is encoded again."""
    txs = block.txs
    last = block.last_commit
    return {"height": int(block.height), "id": block.id.hex(), "time": int(block.header.time),
            "tx_hashes": b"".join([tx.hash for tx in txs]).hex(),
            "tx_bytes": sum([len(tx.encode()) for tx in txs]),
            "last_commit": None if last is None else {"round": int(last.round), "precommits": len(last.precommits)}}


def parse_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def tx_json(view: TxView) -> dict[str, Any]:
    return {"hash": view.tx.hash.hex(), "height": int(view.height), "index": view.index,
            "block_time": int(view.block_time), "tx": tx_summary(view.tx), "result": result_json(view.result),
            "raw_tx": raw(view.tx), "raw_result": raw(view.result)}


def tx_status_json(v: TxStatusView) -> dict[str, Any]:
    out: dict[str, Any] = {"hash": v.tx_hash.hex(), "status": v.state}
    if v.state == TX_COMMITTED:
        out.update(height=int(v.height or 0), index=v.index)
    elif v.state == TX_PENDING:
        out["gapped"] = v.gapped
    elif v.state == TX_REJECTED:
        out["reason"] = v.reason
    return out


def account_json(a: AccountView) -> dict[str, Any]:
    return {"address": encode_address(a.address), "height": int(a.height), "state_root": a.state_root.hex(),
            "exists": a.value is not None, "balance": a.balance, "nonce": a.nonce, "key": a.key.hex(),
            "value": a.value.hex() if a.value is not None else None, "proof": raw(a.proof)}


def validators_json(v: ValidatorsView) -> dict[str, Any]:
    return {"height": int(v.height), "total_power": v.total_power, "validators": [
        {"address": encode_address(x.address), "public_key": bytes(x.public_key).hex(), "power": x.power,
         "owner": encode_address(x.owner) if x.owner is not None else None, "stake": x.stake,
         "self_stake": x.self_stake, "delegated": x.stake - x.self_stake, "commission_bps": x.commission_bps,
         "min_self_stake": x.min_self_stake, "jailed": x.jailed, "jailed_until": x.jailed_until, "tombstoned": x.tombstoned,
         "in_set": x.in_set, "slashed": x.slashed, "rewards": x.rewards,
         "poi": poi_counts(x.poi_correct, x.poi_wrong, x.poi_missed)}
        for x in v.validators]}


def poi_counts(correct: int, wrong: int, missed: int) -> dict[str, Any]:
    total = correct + wrong + missed
    return {"correct": correct, "wrong": wrong, "missed": missed,
            "score": 1.0 if total == 0 else round(correct / total, 6)}


def model_json(m: ModelView) -> dict[str, Any]:
    body = to_json(m.record)
    meta = body.pop("meta", {}) if isinstance(body, dict) else {}
    if isinstance(meta, dict):
        meta.pop("golden", None)
    return {"model_id": m.model_id.hex(), **meta, **body, "raw": m.raw.hex()}


def inference_json(v: InferenceView) -> dict[str, Any]:
    return {
        "tx_hash": v.tx.hash.hex(), "height": int(v.height), "index": v.index,
        "result": result_json(v.result), "results_root": v.header.results_root.hex(),
        "block_id": v.header.block_id.hex(),
        "raw_tx": raw(v.tx), "raw_result": raw(v.result), "header": raw(v.header),
        "tx_proof": raw(v.tx_proof), "result_proof": raw(v.result_proof), "commit": raw(v.commit),
    }


def landed_json(tx_hash: Hash32, height: Height, index: int, result: TxResult) -> dict[str, Any]:
    return {"hash": tx_hash.hex(), "height": int(height), "index": index, "result": result_json(result)}


# ------------------------------------------------------------------------------------------------ methods

registry = Registry()


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise E.not_found(what)
    return value


@registry.method("status", "The node's chain position, consensus round, peers and mempool.",
                 result="Status", result_schema=OBJ)
async def status(api: NodeApi) -> dict[str, Any]:
    return status_json(api.status())


@registry.method("health", "Liveness: ok while the node's services run; says whether it is catching up.",
                 result="Health", result_schema=OBJ)
async def health(api: NodeApi) -> dict[str, Any]:
    s = api.status()
    return {"ok": True, "height": int(s.height), "catching_up": s.catching_up, "peers": s.peers}


BROADCAST_PARAMS_MODE = (
    Param("mode", {"type": "string", "enum": ["sync", "commit"]},
          "sync: answer with the mempool's verdict; commit: wait until the transaction is in a block",
          required=False, parse=parse_mode, default="sync"),
    Param("timeout", {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_COMMIT_TIMEOUT_S},
          "commit mode: seconds to wait for the block", required=False, parse=parse_timeout,
          default=DEFAULT_COMMIT_TIMEOUT_S),
)


async def _broadcast(api: NodeApi, txs: Sequence[Transaction], mode: str, wait_s: float) -> list[dict[str, Any]]:
    verdicts = await api.submit_txs(txs)
    out: list[dict[str, Any]] = []
    for tx, verdict in zip(txs, verdicts, strict=True):
        if not verdict.accepted:
            out.append({"hash": tx.hash.hex(), "accepted": False, "error": verdict.reason})
            continue
        entry: dict[str, Any] = {"hash": tx.hash.hex(), "accepted": True}
        if mode == "commit":
            entry.update(await _wait_landed(api, tx.hash, wait_s))
        out.append(entry)
    return out


async def _wait_landed(api: NodeApi, tx_hash: Hash32, wait_s: float) -> dict[str, Any]:
    """Wait on the node's event hub (which checks the block store first): no polling, nothing to unregister."""
    outcome: TxOutcome | None = None
    with trio.move_on_after(wait_s):
        outcome = await api.wait_for_tx(tx_hash)
    if outcome is not None and outcome.state is TxState.REJECTED:
        raise RpcError(E.TX_REJECTED, f"transaction {tx_hash.hex()[:16]} left the mempool: {outcome.reason}",
                       data={"hash": tx_hash.hex()})
    if outcome is not None and outcome.height is not None and outcome.index is not None \
            and outcome.result is not None:
        return landed_json(tx_hash, outcome.height, outcome.index, outcome.result)
    view = api.tx(tx_hash)
    if view is not None:
        return landed_json(tx_hash, view.height, view.index, view.result)
    raise RpcError(E.TIMEOUT, f"transaction {tx_hash.hex()[:16]} not in a block after {wait_s:g} s "
                              "(it may still land; query it with `tx`)")


@registry.method(
    "broadcast_tx", "Submit one signed transaction; sync returns the mempool verdict, commit waits for its block.",
    params=(Param("tx", HEX, "hex of the transaction's canonical encoding", parse=parse_tx),
            *BROADCAST_PARAMS_MODE),
    result="BroadcastResult", result_schema=OBJ, errors=(E.TX_REJECTED, E.TIMEOUT))
async def broadcast_tx(api: NodeApi, tx: Transaction, mode: str,
                       timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 - the API's parameter
    (entry,) = await _broadcast(api, [tx], mode, timeout)
    if not entry["accepted"]:
        raise RpcError(E.TX_REJECTED, f"transaction rejected: {entry['error']}", data={"hash": entry["hash"]})
    return entry


@registry.method(
    "broadcast_txs", "Submit a batch of signed transactions; one verdict (and in commit mode one result) each.",
    params=(Param("txs", {"type": "array", "items": HEX, "maxItems": MAX_BROADCAST_BATCH},
                  "hex transactions", parse=parse_txs),
            *BROADCAST_PARAMS_MODE),
    result="BroadcastResults", result_schema={"type": "array", "items": OBJ}, errors=(E.TIMEOUT,))
async def broadcast_txs(api: NodeApi, txs: list[Transaction], mode: str,
                        timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109 - the API's parameter
    return await _broadcast(api, txs, mode, timeout)


@registry.method("block", "A block with its results and the commit that finalizes it (latest by default).",
                 params=(Param("height", HEIGHT, "block height; omit for the latest", required=False,
                               parse=parse_height),
                         Param("summaries", {"type": "boolean"}, "false: only the raw block and commit (for a "
                               "client that decodes them); default true", required=False, parse=parse_flag,
                               default=True),
                         Param("hashes", {"type": "boolean"}, "true: only the height, id, time, the transactions' "
                               "hashes (one hex string, 32 bytes each) and total encoded size, and the last "
                               "commit's round and precommit count (for a client that follows commits); "
                               "`summaries` is then ignored; default false", required=False, parse=parse_flag,
                               default=False)),
                 result="Block", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def block(api: NodeApi, height: Height | None, summaries: bool = True, hashes: bool = False) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        found = _need(api.block(height), f"no block at height {height}" if height is not None else "no block yet")
        return block_hashes_json(found[0]) if hashes else block_json(*found, summaries=summaries)

    # Decoding and converting a full block takes a few hundred ms: never on the node's event loop.
    return await trio.to_thread.run_sync(read)


@registry.method("tx", "A committed transaction with its result, height and index.",
                 params=(Param("hash", HASH, "transaction hash", parse=parse_hash),),
                 result="Tx", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def tx(api: NodeApi, hash: Hash32) -> dict[str, Any]:
    # Reading it may decode a whole block (tens of ms): off the event loop.
    return await trio.to_thread.run_sync(
        lambda: tx_json(_need(api.tx(hash), f"no committed transaction {hash.hex()}")))


@registry.method(
    "tx_status", "Each transaction's fate on this node: committed (height, index), pending in its mempool (gapped: "
                 "behind a nonce gap), rejected after it was accepted (reason: evicted, expired, replaced...), "
                 "or unknown.",
    params=(Param("hashes", {"type": "array", "items": HASH, "minItems": 1, "maxItems": MAX_STATUS_HASHES},
                  f"transaction hashes (at most {MAX_STATUS_HASHES})", parse=parse_hashes),),
    result="TxStatuses", result_schema={"type": "array", "items": {
        "type": "object", "properties": {
            "hash": HASH, "status": {"type": "string", "enum": [TX_COMMITTED, TX_PENDING, TX_REJECTED, TX_UNKNOWN]},
            "height": HEIGHT, "index": {"type": "integer"}, "gapped": {"type": "boolean"},
            "reason": {"type": "string"}}}})
async def tx_status(api: NodeApi, hashes: list[Hash32]) -> list[dict[str, Any]]:
    # Index lookups only (a LevelDB get per hash, no block decoded): on the loop, like `status`.
    return [tx_status_json(api.tx_status(h)) for h in hashes]


@registry.method("account", "Balance and nonce with a state proof against the state root at that height.",
                 params=(Param("address", ADDRESS, "account address", parse=parse_address_param),
                         Param("height", HEIGHT, "height; omit for the latest", required=False,
                               parse=parse_height)),
                 result="Account", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def account(api: NodeApi, address: Address, height: Height | None) -> dict[str, Any]:
    return account_json(api.account(address, height))


@registry.method("validators", "The validator set signing a height, with stakes, jail state and PoI counts.",
                 params=(Param("height", HEIGHT, "height; omit for the next block", required=False,
                               parse=parse_height),),
                 result="Validators", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def validators(api: NodeApi, height: Height | None) -> dict[str, Any]:
    try:
        view = api.validators(height)
    except LookupError:  # NodeApi: a height whose set is not known (0, or beyond the next two)
        raise E.not_found(f"no validator set known for height {height}") from None
    return validators_json(view)


@registry.method("delegations", "An account's delegations: per validator the bonded amount, the rewards it may "
                                "withdraw and the validator's commission (at most 16 validators).",
                 params=(Param("address", ADDRESS, "delegator address", parse=parse_address_param),
                         Param("height", HEIGHT, "height; omit for the latest", required=False,
                               parse=parse_height)),
                 result="Delegations", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def delegations(api: NodeApi, address: Address, height: Height | None) -> dict[str, Any]:
    at, rows = api.delegations(address, height)
    return {"delegator": encode_address(address), "height": int(at), "delegations": [
        {"validator": encode_address(v), "amount": amount, "rewards": due, "commission_bps": bps}
        for v, amount, due, bps in rows]}


@registry.method("rewards", "The rewards an account may withdraw now, per validator and in total.",
                 params=(Param("address", ADDRESS, "delegator address", parse=parse_address_param),),
                 result="Rewards", result_schema=OBJ)
async def rewards(api: NodeApi, address: Address) -> dict[str, Any]:
    at, rows = api.delegations(address, None)
    return {"delegator": encode_address(address), "height": int(at), "total": sum(r[2] for r in rows),
            "rewards": [{"validator": encode_address(v), "amount": due} for v, _, due, _ in rows]}


@registry.method("model", "A registered model's metadata, owner, price and registration height.",
                 params=(Param("model_id", HASH, "model id", parse=parse_hash),),
                 result="Model", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def model(api: NodeApi, model_id: Hash32) -> dict[str, Any]:
    return model_json(_need(api.model(model_id), f"no registered model {model_id.hex()}"))


@registry.method("model_registration",
                 "Where a model's registration stands: 'registered' (with its height), or for a deferred "
                 "registration (docs/sandbox.md, 'Deferred activation') 'pending' with the height it activates "
                 "at, or 'rejected' with the reason; 'retired' (docs/sandbox.md, 'Retiring a model') with the "
                 "height and whether governance retired it.",
                 params=(Param("model_id", HASH, "model id", parse=parse_hash),),
                 result="ModelRegistration", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def model_registration(api: NodeApi, model_id: Hash32) -> dict[str, Any]:
    registered = api.model(model_id)
    deferred = api.deferred_model(model_id)
    if registered is None and deferred is None:
        retired = api.retired_model(model_id)
        if retired is None:
            raise E.not_found(f"no registration of model {model_id.hex()}")
        tomb: Any = retired.record  # vm.retire.RetiredModel
        return {"model_id": model_id.hex(), "status": "retired", "retired_at": int(tomb.retired_at),
                "by_governance": bool(tomb.by_governance), "owner": encode_address(tomb.owner)}
    doc: dict[str, Any] = {"model_id": model_id.hex(), "status": "registered", "deferred": deferred is not None}
    if deferred is not None:
        record: Any = deferred.record  # vm.deferred.DeferredModel (views keep records opaque)
        doc.update(status=record.status_name, queued_at=int(record.queued_at),
                   activates_at=int(record.activates_at), check_gas=int(record.check_gas), log=record.log,
                   postponed=int(record.postponed))
        current: Any = api.params()  # vm.params.Params: the bound in force now (governance may change it)
        if current is not None:
            doc["max_postponements"] = int(current.vm.max_postponements)
    if registered is not None:
        model: Any = registered.record  # vm.state.ModelRecord
        doc["registered_at"] = int(model.registered_at)
    return doc


def parse_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MODELS_PAGE:
        raise ValueError(f"limit is an integer from 1 to {MAX_MODELS_PAGE}")
    return value


def parse_model_name(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value.encode()) <= MAX_MODEL_NAME_BYTES:
        raise ValueError(f"a model name is a string of 1 to {MAX_MODEL_NAME_BYTES} bytes")
    return value


@registry.method("model_name",
                 "Which model holds a name (names are first come per chain): its id and 'registered', 'pending' "
                 "(a deferred registration awaiting its activation), or 'uploading' (an upload in progress).",
                 params=(Param("name", {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_NAME_BYTES},
                               "model name", parse=parse_model_name),),
                 result="ModelName", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def model_name(api: NodeApi, name: str) -> dict[str, Any]:
    model_id = _need(api.model_name(name), f"no model holds the name {name!r}")
    doc: dict[str, Any] = {"name": name, "model_id": model_id.hex(), "status": "uploading"}
    deferred = api.deferred_model(model_id)
    if api.model(model_id) is not None:
        doc["status"] = "registered"
    elif deferred is not None:
        record: Any = deferred.record  # vm.deferred.DeferredModel
        doc.update(status=record.status_name, activates_at=int(record.activates_at))
    return doc


@registry.method("models", "Registered models in model-id order, a page at a time (metadata without golden "
                           "vectors); the next page starts after the last id of this one.",
                 params=(Param("after", HASH, "list ids after this one; omit for the first page", required=False,
                               parse=parse_hash),
                         Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_MODELS_PAGE},
                               f"models per page (at most {MAX_MODELS_PAGE})", required=False, parse=parse_limit,
                               default=MAX_MODELS_PAGE)),
                 result="Models", result_schema={"type": "array", "items": OBJ, "maxItems": MAX_MODELS_PAGE})
async def models(api: NodeApi, after: Hash32 | None, limit: int) -> list[dict[str, Any]]:
    # A page reads and decodes up to MAX_MODELS_PAGE records (and the first call builds the node's index):
    # off the event loop.
    def page() -> list[dict[str, Any]]:
        return [{**model_json(m), **deferral_json(api.deferred_model(m.model_id))} for m in api.models(after, limit)]

    return await trio.to_thread.run_sync(page)


def deferral_json(deferred: ModelView | None) -> dict[str, Any]:
    """Whether a registered model came through deferred activation, and how many times its activation's
    proposer could not check it (postponed to the queue's tail, docs/sandbox.md "Deferred activation")."""
    record: Any = None if deferred is None else deferred.record  # vm.deferred.DeferredModel
    return {"deferred": record is not None, "postponed": 0 if record is None else int(record.postponed)}


def parse_model_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESIDENT_QUERY_BYTES:
        raise ValueError(f"a model size in bytes is an integer from 1 to {MAX_RESIDENT_QUERY_BYTES}")
    return value


@registry.method("resident_models",
                 "The resident-model budget (docs/sandbox.md, 'Resident models'): the bytes and count that resident "
                 "models hold, pending activations included, against vm.max_resident_bytes and the count bound; "
                 "given a model's size in bytes, whether a resident model that size fits, and if not the reason "
                 "the chain's completing chunk would give.",
                 params=(Param("size", {"type": "integer", "minimum": 1, "maximum": MAX_RESIDENT_QUERY_BYTES},
                               "a resident model's canonical size, to ask whether it fits", required=False,
                               parse=parse_model_bytes),),
                 result="ResidentModels", result_schema=OBJ)
async def resident_models(api: NodeApi, size: int | None) -> dict[str, Any]:
    view = api.resident_models(size)
    doc: dict[str, Any] = {"height": int(view.height), "held_bytes": view.held_bytes, "count": len(view.model_ids),
                           "max_bytes": view.max_bytes, "max_models": view.max_models,
                           "models": [m.hex() for m in view.model_ids]}
    if size is not None:
        doc.update(size=size, fits=view.refusal is None, refusal=view.refusal)
    return doc


@registry.method("inference", "An inference's outputs with their proof against the block's results root "
                              "and the commit that finalizes the block.",
                 params=(Param("hash", HASH, "hash of the infer transaction", parse=parse_hash),),
                 result="Inference", result_schema=OBJ, errors=(E.NOT_FOUND,))
async def inference(api: NodeApi, hash: Hash32) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        view = _need(api.inference(hash), f"no committed inference {hash.hex()} (or not final yet)")
        return inference_json(view)

    # Merkle proofs over a full block's transactions and results: off the event loop.
    return await trio.to_thread.run_sync(read)


@registry.method("poi", "Proof-of-inference scores: correct, wrong and missed challenges per validator.",
                 params=(Param("address", ADDRESS, "one validator; omit for all", required=False,
                               parse=parse_address_param),),
                 result="PoiScores", result_schema={"type": "array", "items": OBJ}, errors=(E.NOT_FOUND,))
async def poi(api: NodeApi, address: Address | None) -> list[dict[str, Any]]:
    vals = api.validators(None).validators
    if address is not None:
        vals = tuple(v for v in vals if v.address == address)
        if not vals:
            raise E.not_found(f"{encode_address(address)} is not a validator")
    return [{"address": encode_address(v.address), "power": v.power, "jailed": v.jailed,
             "tombstoned": v.tombstoned, **poi_counts(v.poi_correct, v.poi_wrong, v.poi_missed)}
            for v in vals]


@registry.method("params", "The chain parameters in force: gas prices and schedule, staking, rewards, slashing, "
                           "consensus timeouts, PoI models.",
                 result="Params", result_schema=OBJ, errors=(E.NOT_READY,))
async def params(api: NodeApi) -> dict[str, Any]:
    current = api.params()
    if current is None:
        raise RpcError(E.NOT_READY, "this node does not expose its chain parameters")
    return dict(to_json(current))


from node.rpc import gov_methods as _gov_methods  # noqa: E402 - registers the governance methods on `registry`

__all__ = ["_gov_methods", "registry"]
