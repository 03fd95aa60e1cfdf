"""A typed Python client of the node's JSON-RPC API (sync, httpx); the CLI uses nothing else.

Results are frozen dataclasses; values a client checks bit for bit (blocks, transactions, results, commits,
proofs) are decoded from their canonical bytes, so `AccountInfo.verify()` and `InferenceInfo.verify()` check
the node's answer without trusting it. Every failure is an `RpcError` with the server's one-line message;
a node that cannot be reached is `NodeUnreachable`.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from core.address import parse_address
from core.types import Address, Hash32
from node.rpc.errors import NOT_FOUND, RpcError
from node.rpc.paging import MAX_MODELS_PAGE as MODELS_PAGE

if TYPE_CHECKING:
    # Decoded where a method needs them: the block, proof and tensor types (numpy with them) cost ~0.15 s of
    # CPU to import, which `status`, `devnet status` and `devnet up`'s status loop never use.
    from core.block import Block
    from core.header import Header, TxResult
    from core.merkle import MerkleProof
    from core.state import StateProof
    from core.tensor import Tensor
    from core.tx import Transaction
    from core.validators import ValidatorSet
    from core.votes import Commit

__all__ = [
    "AccountInfo", "BlockHashes", "BlockInfo", "BroadcastResult", "Client", "InferenceInfo", "ModelInfo", "NodeUnreachable",
    "PoiScore", "ResultInfo", "RpcError", "Status", "TxInfo", "ValidatorInfo", "ValidatorsInfo",
]

UNREACHABLE = -32099
DEFAULT_URL = "http://127.0.0.1:26657"


class NodeUnreachable(RpcError):
    """No answer from the node at all (refused, timed out, not an RPC server)."""

    def __init__(self, message: str) -> None:
        super().__init__(UNREACHABLE, message)


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Status:
    chain_id: str
    node_id: str
    moniker: str
    validator: str | None
    is_validator: bool
    height: int
    block_id: str
    block_time: int
    state_root: str
    round: int
    peers: int
    mempool_size: int
    mempool_bytes: int
    catching_up: bool
    listen_addrs: tuple[str, ...]

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> Status:
        return cls(o["chain_id"], o["node_id"], o["moniker"], o["validator"], o["is_validator"], o["height"],
                   o["block_id"], o["block_time"], o["state_root"], o["round"], o["peers"], o["mempool_size"],
                   o["mempool_bytes"], o["catching_up"], tuple(o.get("listen_addrs", ())))


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """A transaction's result as JSON carries it: status name, gas, outputs (tensors), data, log."""

    status: str
    gas_used: int
    outputs: tuple[Tensor, ...]
    data: bytes
    log: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> ResultInfo:
        from node.rpc.jsonenc import tensor_from_json

        return cls(o["status"], o["gas_used"], tuple(tensor_from_json(t) for t in o["outputs"]),
                   bytes.fromhex(o["data"]), o["log"])


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """The mempool's verdict and, in commit mode, where the transaction landed and its result."""

    hash: Hash32
    accepted: bool
    error: str | None = None
    height: int | None = None
    index: int | None = None
    result: ResultInfo | None = None

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> BroadcastResult:
        return cls(Hash32.from_hex(o["hash"]), o["accepted"], o.get("error"), o.get("height"), o.get("index"),
                   ResultInfo.from_json(o["result"]) if o.get("result") is not None else None)


@dataclass(frozen=True, slots=True)
class BlockHashes:
    """What `block` with `hashes: true` answers: a committed block's transaction hashes and a few header and
    last-commit figures, for a client that follows commits (no transaction decoded, none trusted: these are
    the node's word, unlike `BlockInfo`)."""

    height: int
    id: bytes
    time_ms: int  # the header's time
    tx_hashes: tuple[bytes, ...]
    tx_bytes: int  # the transactions' encoded size, all together
    last_round: int  # the round the previous height was decided in (0 in block 1)
    last_precommits: int  # precommits in the block's last commit (0 in block 1)

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> BlockHashes:
        joined = bytes.fromhex(o["tx_hashes"])
        if len(joined) % 32:
            raise ValueError("tx_hashes is not a whole number of 32-byte hashes")
        last = o.get("last_commit") or {}
        return cls(int(o["height"]), bytes.fromhex(o["id"]), int(o["time"]),
                   tuple([joined[i:i + 32] for i in range(0, len(joined), 32)]), int(o["tx_bytes"]),
                   int(last.get("round", 0)), int(last.get("precommits", 0)))


@dataclass(frozen=True, slots=True)
class BlockInfo:
    block: Block
    commit: Commit | None

    @property
    def height(self) -> int:
        return int(self.block.height)

    @property
    def header(self) -> Header:
        return self.block.header


@dataclass(frozen=True, slots=True)
class TxInfo:
    tx: Transaction
    result: TxResult
    height: int
    index: int
    block_time: int


@dataclass(frozen=True, slots=True)
class AccountInfo:
    address: Address
    height: int
    state_root: Hash32
    exists: bool
    balance: int
    nonce: int
    key: bytes
    value: bytes | None
    proof: StateProof

    def verify(self, state_root: bytes | None = None) -> bool:
        """True when the proof shows this value (or absence) under `state_root` (default: the one sent).

        Pass a state root taken from a header you trust (a committed block's) to trust nothing else."""
        from core.state import verify_proof

        root = Hash32(state_root) if state_root is not None else self.state_root
        return verify_proof(root, self.key, self.value, self.proof)


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    address: str
    public_key: bytes
    power: int
    owner: str | None
    stake: int
    jailed: bool
    jailed_until: int
    tombstoned: bool
    in_set: bool
    slashed: int
    rewards: int
    poi_correct: int
    poi_wrong: int
    poi_missed: int
    poi_score: float
    self_stake: int = 0
    min_self_stake: int = 0  # the owner's floor (docs/staking.md, "Minimum self-stake")


@dataclass(frozen=True, slots=True)
class ValidatorsInfo:
    height: int
    total_power: int
    validators: tuple[ValidatorInfo, ...]

    def validator_set(self) -> ValidatorSet:
        """The signing set (validators in the set with power), for checking commits."""
        from core.types import PublicKeyBytes
        from core.validators import ValidatorEntry, ValidatorSet

        return ValidatorSet([ValidatorEntry(PublicKeyBytes(v.public_key), v.power)
                             for v in self.validators if v.in_set and v.power > 0])


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: Hash32
    name: str
    model_class: str
    owner: str
    fee_per_call: int
    gas_per_call: int
    registered_at: int
    total_bytes: int
    inputs: tuple[dict[str, Any], ...]
    raw: bytes
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PoiScore:
    address: str
    power: int
    jailed: bool
    tombstoned: bool
    correct: int
    wrong: int
    missed: int
    score: float


@dataclass(frozen=True, slots=True)
class InferenceInfo:
    """An inference result with its proof: result ∈ header.results_root, and a commit of that header."""

    tx: Transaction
    result: TxResult
    height: int
    index: int
    header: Header
    tx_proof: MerkleProof
    result_proof: MerkleProof
    commit: Commit

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return self.result.outputs

    def verify(self, validators: ValidatorSet | None = None) -> bool:
        """Check the Merkle proofs against the header and that the commit is for this header; with the
        validator set of that height, also that precommits of more than 2/3 of its power sign it."""
        from core.merkle import verify_merkle_proof
        from core.votes import VoteType

        h = self.header
        if not verify_merkle_proof(h.results_root, self.result.encode(), self.result_proof):
            return False
        if not verify_merkle_proof(h.txs_root, self.tx.hash, self.tx_proof):
            return False
        if self.result_proof.index != self.index or self.tx_proof.index != self.index:
            return False
        if self.commit.block_id != h.block_id or self.commit.height != h.height:
            return False
        if validators is None:
            return True
        power = 0
        for vote in self.commit.precommits:
            entry = validators.get_by_key(vote.validator)
            if entry is None or vote.type != VoteType.PRECOMMIT or vote.block_id != h.block_id:
                continue
            if vote.verify_signature(h.chain_id):
                power += entry.power
        return power >= validators.quorum()


# ------------------------------------------------------------------------------------------------ client


# How long this client reuses an idle connection: well below the node's own keep-alive timeout
# (node.rpc.server.KEEP_ALIVE_S, 5 s). With both at 5 s a call could reuse a connection just as the node closed
# it and get "connection reset by peer" for a request the node never read (seen once in CI, on a `tx` call to a
# devnet node idle for ~5 s).
KEEPALIVE_S = 2.0

class Client:
    """`Client(url)`; every method is one JSON-RPC call (or one batch) and returns a typed value."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 10.0, token: str | None = None) -> None:
        """`token`: the node's rpc.auth_token (default: $INFERCHAIN_RPC_TOKEN), sent as a bearer token."""
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("INFERCHAIN_RPC_TOKEN", "")
        # TLS settings only for an https URL: building the verifying context loads the CA bundle (~0.1 s of
        # CPU per client), which a plain-HTTP client never uses (every local CLI command pays it otherwise).
        self._http = httpx.Client(timeout=timeout, verify=self.url.startswith("https://"),
                                  headers={"authorization": f"Bearer {token}"} if token else None,
                                  limits=httpx.Limits(max_connections=100, max_keepalive_connections=20,
                                                     keepalive_expiry=KEEPALIVE_S))
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport

    def _post(self, payload: Any, timeout: float | None = None) -> Any:
        try:
            response = self._http.post(self.url + "/", content=json.dumps(payload).encode(),
                                       headers={"content-type": "application/json"},
                                       timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.TimeoutException:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise NodeUnreachable(f"cannot reach the node at {self.url}: {reason}") from None
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise NodeUnreachable(f"{self.url} answered HTTP {response.status_code} without JSON; "
                                  "is it an Inferchain RPC address?") from None

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """One raw JSON-RPC call; returns the `result` or raises RpcError with the server's message."""
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                             "params": params or {}}, timeout)
        return unwrap_answer(answer)

    def call_batch(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Several calls in one request; results in order, an RpcError instance in place of a failed one."""
        ids = [next(self._ids) for _ in calls]
        answer = self._post([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                             for i, (m, p) in zip(ids, calls, strict=True)])
        if not isinstance(answer, list):
            unwrap_answer(answer)  # a whole-batch error
            raise RpcError(-32603, "batch answered with a single response")
        by_id = {r.get("id"): r for r in answer if isinstance(r, dict)}
        out: list[Any] = []
        for i in ids:
            try:
                out.append(unwrap_answer(by_id.get(i)))
            except RpcError as err:
                out.append(err)
        return out

    # -- reads

    def status(self) -> Status:
        return Status.from_json(self.call("status"))

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("health")
        return result

    def block(self, height: int | None = None) -> BlockInfo:
        from core.block import Block
        from core.votes import Commit

        o = self.call("block", {"height": height, "summaries": False})  # decoded from `raw` here
        commit = Commit.decode(bytes.fromhex(o["commit"])) if o.get("commit") else None
        return BlockInfo(Block.decode(bytes.fromhex(o["raw"])), commit)

    def block_hashes(self, height: int | None = None) -> BlockHashes:
        """A committed block's transaction hashes, time and last-commit figures (`block` with `hashes: true`):
        no transaction is sent or decoded."""
        return BlockHashes.from_json(self.call("block", {"height": height, "hashes": True}))

    def tx(self, tx_hash: bytes | str) -> TxInfo:
        from core.header import TxResult
        from core.tx import Transaction

        o = self.call("tx", {"hash": _hex(tx_hash)})
        return TxInfo(Transaction.decode(bytes.fromhex(o["raw_tx"])), TxResult.decode(bytes.fromhex(o["raw_result"])),
                      o["height"], o["index"], o["block_time"])

    def account(self, address: Address | str, height: int | None = None) -> AccountInfo:
        from core.state import StateProof

        o = self.call("account", {"address": str(address), "height": height})
        return AccountInfo(parse_address(o["address"]), o["height"], Hash32.from_hex(o["state_root"]),
                           o["exists"], o["balance"], o["nonce"], bytes.fromhex(o["key"]),
                           bytes.fromhex(o["value"]) if o["value"] is not None else None,
                           StateProof.decode(bytes.fromhex(o["proof"])))

    def validators(self, height: int | None = None) -> ValidatorsInfo:
        o = self.call("validators", {"height": height})
        return ValidatorsInfo(o["height"], o["total_power"], tuple(
            ValidatorInfo(v["address"], bytes.fromhex(v["public_key"]), v["power"], v["owner"], v["stake"],
                          v["jailed"], v["jailed_until"], v["tombstoned"], v["in_set"], v["slashed"],
                          v["rewards"], v["poi"]["correct"], v["poi"]["wrong"], v["poi"]["missed"],
                          v["poi"]["score"], v.get("self_stake", 0), v.get("min_self_stake", 0))
            for v in o["validators"]))

    def model(self, model_id: bytes | str) -> ModelInfo:
        return _model_info(self.call("model", {"model_id": _hex(model_id)}))

    def model_registration(self, model_id: bytes | str) -> dict[str, Any]:
        """Where a model's registration stands: status 'registered', 'pending' (a deferred registration, with
        `activates_at`), 'rejected' (with `log`) or 'retired' (with `retired_at`); RpcError NOT_FOUND if the
        chain never saw it complete."""
        doc: dict[str, Any] = self.call("model_registration", {"model_id": _hex(model_id)})
        return doc

    def model_name(self, name: str) -> dict[str, Any] | None:
        """Which model holds `name`: `model_id` and `status` ('registered', 'pending' with `activates_at`, or
        'uploading'); None when the name is free."""
        try:
            doc: dict[str, Any] = self.call("model_name", {"name": name})
        except RpcError as err:
            if err.code == NOT_FOUND:
                return None
            raise
        return doc

    def models(self) -> list[ModelInfo]:
        """Every registered model, read a page at a time."""
        out: list[ModelInfo] = []
        while True:
            page = self.call("models", {"after": out[-1].model_id.hex()} if out else {})
            out += [_model_info(o) for o in page]
            if not page or len(page) < MODELS_PAGE:
                return out

    def inference(self, tx_hash: bytes | str) -> InferenceInfo:
        from core.header import Header, TxResult
        from core.merkle import MerkleProof
        from core.tx import Transaction
        from core.votes import Commit

        o = self.call("inference", {"hash": _hex(tx_hash)})
        return InferenceInfo(
            Transaction.decode(bytes.fromhex(o["raw_tx"])), TxResult.decode(bytes.fromhex(o["raw_result"])),
            o["height"], o["index"], Header.decode(bytes.fromhex(o["header"])),
            MerkleProof.decode(bytes.fromhex(o["tx_proof"])), MerkleProof.decode(bytes.fromhex(o["result_proof"])),
            Commit.decode(bytes.fromhex(o["commit"])))

    def poi(self, address: str | None = None) -> list[PoiScore]:
        return [PoiScore(o["address"], o["power"], o["jailed"], o["tombstoned"], o["correct"], o["wrong"],
                         o["missed"], o["score"]) for o in self.call("poi", {"address": address})]

    def discover(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("rpc.discover")
        return result

    # -- writes

    def broadcast_tx(self, tx: Transaction, *, mode: str = "sync", timeout: float = 30.0) -> BroadcastResult:
        """Submit one transaction; a refusal raises RpcError (code TX_REJECTED) with the mempool's reason."""
        o = self.call("broadcast_tx", {"tx": tx.encode().hex(), "mode": mode, "timeout": timeout},
                      timeout=timeout + 10 if mode == "commit" else None)
        return BroadcastResult.from_json(o)

    def broadcast_txs(self, txs: Sequence[Transaction], *, mode: str = "sync",
                      timeout: float = 30.0) -> list[BroadcastResult]:
        """Submit a batch; each entry says accepted or why not (a refusal does not raise)."""
        o = self.call("broadcast_txs", {"txs": [t.encode().hex() for t in txs], "mode": mode,
                                        "timeout": timeout},
                      timeout=timeout + 10 if mode == "commit" else None)
        return [BroadcastResult.from_json(x) for x in o]

    # -- helpers

    def wait_for_height(self, height: int, *, timeout: float = 30.0, poll: float = 0.1) -> Status:
        """Poll until the node has committed `height`; raises RpcError(TIMEOUT) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.height >= height:
                return status
            if time.monotonic() >= deadline:
                raise RpcError(-32003, f"node at {self.url} still at height {status.height} after {timeout:g} s "
                                       f"(waiting for {height})")
            time.sleep(poll)


def unwrap_answer(answer: Any) -> Any:
    """A JSON-RPC response's `result`, or RpcError with the server's code and message."""
    if not isinstance(answer, dict):
        raise RpcError(-32603, "malformed JSON-RPC response")
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {}
        raise RpcError(int(err.get("code", -32603)), str(err.get("message", "unknown error")), err.get("data"))
    if "result" not in answer:
        raise RpcError(-32603, "JSON-RPC response without a result")
    return answer["result"]


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _model_info(o: dict[str, Any]) -> ModelInfo:
    return ModelInfo(Hash32.from_hex(o["model_id"]), o.get("name", ""), o.get("model_class", ""),
                     o.get("owner", ""), o.get("fee_per_call", 0), o.get("gas_per_call", 0),
                     o.get("registered_at", 0), o.get("total_bytes", 0), tuple(o.get("inputs", ())),
                     bytes.fromhex(o["raw"]), o)
