"""What the node's read side (`node.queries`) returns and what a submission answers: plain frozen values.

They live below the RPC layer so the node's own code needs nothing from it; the RPC server renders them
(`node.rpc.methods`), and values are core wire types wherever one exists, so the JSON form follows
mechanically (`node.rpc.jsonenc`) and the typed client decodes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    window_misses: int = 0  # PoI misses among the last `miss_window` scored heights (jailed at `max_misses`)
    self_stake: int = 0  # the owner's part of `stake`; the rest is delegated (docs/staking.md)
    commission_bps: int = 0
    min_self_stake: int = 0  # the owner's floor: staking.min_self_stake, or the higher one it promised


@dataclass(frozen=True, slots=True)
class ValidatorsView:
    height: Height
    total_power: int
    validators: tuple[ValidatorView, ...]


@dataclass(frozen=True, slots=True)
class ModelView:
    model_id: Hash32
    raw: bytes  # canonical encoding of the state's model record
    record: object  # vm.state.ModelRecord, kept opaque: readers render it as JSON (node.rpc.jsonenc)


@dataclass(frozen=True, slots=True)
class ResidentView:
    """The resident-model budget at the latest height (vm/resident.py): the bytes and count that resident
    models hold, pending activations included, against the chain's bounds; and, when asked about a model's
    size, why the chain would refuse it (None: it fits)."""

    height: Height
    held_bytes: int
    model_ids: tuple[Hash32, ...]
    max_bytes: int  # vm.max_resident_bytes in force
    max_models: int  # vm.resident.MAX_RESIDENT_MODELS
    refusal: str | None = None


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


# Where a transaction stands on one node (`TxStatusView.state`).
TX_COMMITTED = "committed"  # in a block this node committed
TX_PENDING = "pending"  # in this node's mempool
TX_REJECTED = "rejected"  # left this node's mempool uncommitted (evicted, expired, replaced...): `reason` says why
TX_UNKNOWN = "unknown"  # none of these here (never seen, or its rejection is forgotten)


@dataclass(frozen=True, slots=True)
class TxStatusView:
    """A transaction's fate as one node knows it: committed (at `height`, `index`), pending in its mempool
    (`gapped`: waiting behind a nonce gap, so not proposable yet), rejected after entry (`reason`), or unknown."""

    tx_hash: Hash32
    state: str
    height: Height | None = None
    index: int | None = None
    reason: str = ""
    gapped: bool = False


@dataclass(frozen=True, slots=True)
class SubmitVerdict:
    tx_hash: Hash32
    accepted: bool
    reason: str = ""  # one line, when refused
