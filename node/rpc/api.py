"""What the RPC server needs from a node: a read side, a way to submit, and a stream of committed blocks.

The server depends on this Protocol only, so it runs the same in front of a full node (`node.queries`,
adapted in `node.rpc.adapter`) and in tests. Values are core wire types wherever one exists, so the JSON
form follows mechanically (`node.rpc.jsonenc`) and the typed client decodes the same bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from core.block import Block
from core.header import Header, TxResult
from core.merkle import MerkleProof
from core.state import StateProof
from core.tx import Transaction
from core.types import Address, Hash32, Height, Timestamp
from core.votes import Commit


@dataclass(frozen=True, slots=True)
class StatusView:
    chain_id: str
    node_id: str  # libp2p peer id
    moniker: str
    validator: Address | None  # this node's validator address, if it has a validator key
    height: Height  # last committed block (0: none yet)
    block_id: Hash32
    block_time: Timestamp
    state_root: Hash32
    round: int  # round of the height being decided
    peers: int
    mempool_size: int
    mempool_bytes: int
    catching_up: bool
    is_validator: bool  # the key is in the current validator set
    listen_addrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TxView:
    tx: Transaction
    result: TxResult
    height: Height
    index: int
    block_time: Timestamp


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account at `height` with the proof of its value (or of its absence) against `state_root`."""

    address: Address
    height: Height
    state_root: Hash32
    key: bytes  # the state key the proof is for
    value: bytes | None  # canonical encoding of the account record; None: no such account
    balance: int
    nonce: int
    proof: StateProof


@dataclass(frozen=True, slots=True)
class ValidatorView:
    address: Address
    public_key: bytes
    power: int
    owner: Address | None
    stake: int
    jailed: bool
    jailed_until: int
    tombstoned: bool
    poi_correct: int
    poi_wrong: int
    poi_missed: int
    slashed: int
    rewards: int
    in_set: bool  # signs the height asked for


@dataclass(frozen=True, slots=True)
class ValidatorsView:
    height: Height
    total_power: int
    validators: tuple[ValidatorView, ...]


@dataclass(frozen=True, slots=True)
class ModelView:
    model_id: Hash32
    raw: bytes  # canonical encoding of the state's model record
    record: object  # vm.state.ModelRecord (kept opaque here: the RPC layer does not import the VM)


@dataclass(frozen=True, slots=True)
class InferenceView:
    """An inference's result with everything a light client needs to check it without trusting the node:
    the result's Merkle proof against the header's results root, and the commit that finalizes the header."""

    tx: Transaction
    result: TxResult
    height: Height
    index: int
    header: Header
    tx_proof: MerkleProof
    result_proof: MerkleProof
    commit: Commit


@dataclass(frozen=True, slots=True)
class SubmitVerdict:
    tx_hash: Hash32
    accepted: bool
    reason: str = ""  # one line, when refused


class NodeApi(Protocol):
    def status(self) -> StatusView: ...

    def block(self, height: Height | None) -> tuple[Block, Commit | None] | None:
        """The block at `height` (None: the latest) and the commit that finalizes it, if known."""
        ...

    def tx(self, tx_hash: Hash32) -> TxView | None: ...

    def account(self, address: Address, height: Height | None) -> AccountView: ...

    def validators(self, height: Height | None) -> ValidatorsView: ...

    def model(self, model_id: Hash32) -> ModelView | None: ...

    def models(self, after: Hash32 | None = None, limit: int = 100) -> Sequence[ModelView]:
        """Up to `limit` registered models with ids after `after`, in id order (blocking: run in a thread)."""
        ...

    def inference(self, tx_hash: Hash32) -> InferenceView | None: ...

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[SubmitVerdict]: ...

    def committed_blocks(self) -> AbstractAsyncContextManager[AsyncIterator[Block]]:
        """A stream of every block committed from now on, in height order."""
        ...

    # Optional (looked up with getattr, so older backends still serve the rest of the API):
    #   def params(self) -> vm.params.Params             -- the chain parameters at the latest height
    #   def tx_outcome(self, tx_hash) -> TxOutcome | None -- a rejection after mempool entry (commit mode
    #                                                        reports "rejected: validators disagreed")
