"""Transaction payloads, one wire type per kind; the envelope's `kind` field names which one it carries.

The CLI builds payloads with these types and signs them with `core.tx.Transaction.create(kind=TxKind.X,
payload=Payload(...).encode())`; the `build_*` helpers below do both steps.
"""

from __future__ import annotations

import enum
from typing import Annotated

from core.codec import U8, U16, U32, MaxLen, Wire, wire
from core.errors import DecodeError
from core.hashing import sha256, sha256_concat
from core.keys import PrivateKey
from core.limits import KIB, MAX_TENSOR_BYTES, MAX_TENSOR_DIMS, MAX_TX_PAYLOAD_BYTES
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Address, Amount, Hash32, PublicKeyBytes
from vm.gov.types import Deposit, SubmitProposal, Vote

MAX_CHUNK_BYTES = 256 * KIB
MAX_MODEL_NAME_BYTES = 64
MAX_MODEL_IO = 16
MAX_GOLDEN_VECTORS = 4
# Golden vectors sit in the metadata, so it holds an input at the largest genesis cap (vm.max_infer_input_bytes,
# at most core.limits.MAX_TENSOR_BYTES, 1 MiB) and 48 KiB of outputs and specs. Bound by the transaction: chunk
# 0 carries the metadata (alone when it is large) in its payload (core.limits.MAX_TX_PAYLOAD_BYTES), with 16 KiB
# left for the chunk's and the upload header's own fields; a transaction at the cap is gossiped alone
# (core.limits.MAX_GOSSIP_TX_BYTES).
MAX_META_BYTES = MAX_TX_PAYLOAD_BYTES - 16 * KIB
# A header up to this size rides in chunk 0 with a full chunk of data; a larger one (big golden vectors)
# rides alone, so that chunk 0 stays within a transaction's payload.
HEADER_INLINE_BYTES = 32 * KIB


class TxKind(enum.IntEnum):
    TRANSFER = 1
    STAKE = 2
    UNSTAKE = 3
    UNJAIL = 4
    MODEL_CHUNK = 5
    INFER = 6
    DELEGATE = 7
    UNDELEGATE = 8
    REDELEGATE = 9
    WITHDRAW_REWARDS = 10
    EDIT_VALIDATOR = 11
    RETIRE_MODEL = 12
    # Governance (vm/gov): 20-29.
    SUBMIT_PROPOSAL = 20
    DEPOSIT = 21
    VOTE = 22


class ModelClass(enum.IntEnum):
    """How validators compare a model's outputs: bit for bit, or within the declared tolerance."""

    EXACT = 1
    TOLERANT = 2


@wire(max_bytes=128)
class Transfer(Wire):
    to: Address
    amount: Amount


@wire(max_bytes=128)
class Stake(Wire):
    """Bond `amount` from the sender's balance to the validator with consensus key `validator`.

    The first stake names the sending account as the validator's owner; only the owner may stake more,
    unstake or unjail it.
    """

    validator: PublicKeyBytes
    amount: Amount


@wire(max_bytes=128)
class Unstake(Wire):
    """Start unbonding `amount`; it returns to the owner's balance after the unbonding delay."""

    validator: PublicKeyBytes
    amount: Amount


@wire(max_bytes=64)
class Unjail(Wire):
    validator: PublicKeyBytes


@wire(max_bytes=128)
class Delegate(Wire):
    """Bond `amount` from the sender's balance to validator `validator` (its address); the sender earns a
    share of its rewards and bears a share of its slashes (docs/staking.md)."""

    validator: Address
    amount: Amount


@wire(max_bytes=128)
class Undelegate(Wire):
    """Start unbonding `amount` of the sender's delegation to `validator`; it returns after the unbonding
    delay, and stays slashable for offences committed while it was bonded."""

    validator: Address
    amount: Amount


@wire(max_bytes=128)
class Redelegate(Wire):
    """Move `amount` of the sender's delegation from `source` to `destination` without unbonding."""

    source: Address
    destination: Address
    amount: Amount


@wire(max_bytes=64)
class WithdrawRewards(Wire):
    """Pay the sender's accumulated rewards from `validator`, or from every validator it delegates to (gas:
    `vm.gas_withdraw_rewards` per delegation the sender holds when the block runs it, at least one)."""

    validator: Address | None


@wire(max_bytes=96)
class EditValidator(Wire):
    """Set the commission of a validator the sender owns, in basis points. `max_commission_bps` and
    `max_change_bps` (per `staking.commission_change_blocks`) are the terms: settable only while no other
    account delegates to the validator, fixed afterwards. `min_self_stake`: raise the floor the owner
    promises for its own stake (0 keeps the current one; it can never be lowered). docs/staking.md."""

    validator: PublicKeyBytes
    commission_bps: U16
    max_commission_bps: U16
    max_change_bps: U16
    min_self_stake: Amount = Amount(0)


@wire(max_bytes=256)
class TensorSpec(Wire):
    """A model input: its graph name, dtype and pinned static shape."""

    name: Annotated[str, MaxLen(MAX_MODEL_NAME_BYTES)]
    dtype: DType
    shape: Annotated[tuple[U32, ...], MaxLen(MAX_TENSOR_DIMS)]


@wire(max_bytes=MAX_META_BYTES)
class GoldenVector(Wire):
    """Inputs (in declared order) and the canonical outputs they must give (declared order; float outputs
    as int64 on the model's grid)."""

    inputs: Annotated[tuple[Tensor, ...], MaxLen(MAX_MODEL_IO)]
    outputs: Annotated[tuple[Tensor, ...], MaxLen(MAX_MODEL_IO)]


@wire(max_bytes=MAX_META_BYTES)
class ModelMeta(Wire):
    """Registration metadata; together with the model bytes' hash it fixes the model id.

    `inputs` pin the input shapes; `outputs` declare the graph's outputs (native dtype), which the chain
    checks against the graph and uses to read golden and committed outputs (float ones on the grid).

    `grid_k`: float outputs are committed as round(y · 2^k); `tol_abs` (grid units) and `tol_rel_ppm`
    (parts per million of |q|) bound honest disagreement for `tolerant` models (both must reach the
    protocol minimums; ignored for `exact`). `fee_per_call` is the royalty paid to the owner per run.
    """

    name: Annotated[str, MaxLen(MAX_MODEL_NAME_BYTES)]
    inputs: Annotated[tuple[TensorSpec, ...], MaxLen(MAX_MODEL_IO)]
    outputs: Annotated[tuple[TensorSpec, ...], MaxLen(MAX_MODEL_IO)]
    model_class: ModelClass
    grid_k: U8
    tol_abs: U32
    tol_rel_ppm: U32
    fee_per_call: Amount
    golden: Annotated[tuple[GoldenVector, ...], MaxLen(MAX_GOLDEN_VECTORS)]

    def validate_wire(self) -> None:
        # One cap for what is written and what is read: metadata arrives nested in a chunk (whose own limit
        # is larger), and is stored in the upload and model records, whose limits are this cap plus their
        # other fields. Without this a chunk could carry metadata that no later read of a record decodes.
        size = len(self.encode())
        if size > MAX_META_BYTES:
            raise ValueError(f"metadata takes {size} bytes, over the cap of {MAX_META_BYTES}")


@wire(max_bytes=MAX_META_BYTES + 128)
class UploadHeader(Wire):
    """Carried by chunk 0 only: what the whole upload will be."""

    meta: ModelMeta
    total_bytes: U32
    n_chunks: U16
    bytes_hash: Hash32


@wire(max_bytes=MAX_CHUNK_BYTES + MAX_META_BYTES + 256)
class ModelChunk(Wire):
    """One chunk of a model upload. Chunk 0 opens the upload and carries its header; the model is
    checked and registered when the last missing chunk lands."""

    model_id: Hash32
    index: U16
    data: Annotated[bytes, MaxLen(MAX_CHUNK_BYTES)]
    header: UploadHeader | None

    def validate_wire(self) -> None:
        if (self.index == 0) != (self.header is not None):
            raise ValueError("exactly chunk 0 carries the upload header")


@wire(max_bytes=MAX_TX_PAYLOAD_BYTES)
class Infer(Wire):
    """Run `model_id` on `inputs`. `max_model_fee` caps the royalty the sender accepts to pay the owner;
    gas and the fee for it are the envelope's."""

    model_id: Hash32
    inputs: Annotated[tuple[Tensor, ...], MaxLen(MAX_MODEL_IO)]
    max_model_fee: Amount


@wire(max_bytes=64)
class RetireModel(Wire):
    """Retire a model the sender owns, registered or pending activation (vm/retire.py): it takes no inference
    after this transaction, its bytes and resident slot are released and its deposit comes back."""

    model_id: Hash32


Payload = (Transfer | Stake | Unstake | Unjail | ModelChunk | Infer | Delegate | Undelegate | Redelegate
           | WithdrawRewards | EditValidator | RetireModel | SubmitProposal | Deposit | Vote)

PAYLOAD_TYPES: dict[TxKind, type[Wire]] = {
    TxKind.TRANSFER: Transfer,
    TxKind.STAKE: Stake,
    TxKind.UNSTAKE: Unstake,
    TxKind.UNJAIL: Unjail,
    TxKind.MODEL_CHUNK: ModelChunk,
    TxKind.INFER: Infer,
    TxKind.DELEGATE: Delegate,
    TxKind.UNDELEGATE: Undelegate,
    TxKind.REDELEGATE: Redelegate,
    TxKind.WITHDRAW_REWARDS: WithdrawRewards,
    TxKind.EDIT_VALIDATOR: EditValidator,
    TxKind.RETIRE_MODEL: RetireModel,
    TxKind.SUBMIT_PROPOSAL: SubmitProposal,
    TxKind.DEPOSIT: Deposit,
    TxKind.VOTE: Vote,
}
KIND_OF: dict[type[Wire], TxKind] = {cls: kind for kind, cls in PAYLOAD_TYPES.items()}


# Payloads up to this size keep their decoded value on the transaction (transfers, tiny inferences: ~30-150 bytes);
# the most a full mempool keeps so is then its transaction count times about this size.
MEMO_PAYLOAD_BYTES = 1024


def _decode_payload(tx: Transaction) -> Wire | str:
    payload_type = PAYLOAD_TYPES.get(tx.kind)  # type: ignore[call-overload]
    if payload_type is None:
        return f"unknown transaction kind {tx.kind}"
    try:
        payload: Wire = payload_type.decode(tx.payload)
    except DecodeError as exc:
        return f"malformed payload: {exc}"
    return payload


def decoded_payload(tx: Transaction) -> Wire | str:
    """The transaction's payload as its kind's wire type, or why it has none ("unknown transaction kind ...",
    "malformed payload: ..."). A payload up to `MEMO_PAYLOAD_BYTES` is decoded once per transaction object and
    kept on it (`CachedWire.derived`): the mempool's entry check, the builder's bounds, execution and the model
    pre-filter all ask for it. A larger one is decoded on each use: its decoded copy (a model chunk, large
    inference inputs) would double what a full mempool holds, for a decode that is a small part of its cost."""
    if len(tx.payload) > MEMO_PAYLOAD_BYTES:
        return _decode_payload(tx)
    return tx.derived("payload", _decode_payload)


def infer_payload(tx: Transaction) -> Infer | None:
    """The `Infer` payload of an inference transaction (`decoded_payload`); None for another kind or a payload
    that does not decode."""
    payload = decoded_payload(tx) if tx.kind == TxKind.INFER else None
    return payload if isinstance(payload, Infer) else None


def compute_model_id(bytes_hash: bytes, meta: ModelMeta) -> Hash32:
    """The model id: H("model" ‖ H(canonical bytes) ‖ metadata); identical content gives an identical id."""
    return sha256_concat(b"inferchain/model\x00", bytes_hash, meta.encode())


def split_model(model_bytes: bytes, meta: ModelMeta, chunk_bytes: int = MAX_CHUNK_BYTES) -> list[ModelChunk]:
    """The chunk payloads that upload `model_bytes` with `meta`, in order (chunk 0 carries the header, and
    no data when the header is over HEADER_INLINE_BYTES)."""
    if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk size must be in (0, {MAX_CHUNK_BYTES}]")
    pieces = [model_bytes[i:i + chunk_bytes] for i in range(0, len(model_bytes), chunk_bytes)] or [b""]
    digest = sha256(model_bytes)
    if len(UploadHeader(meta, len(model_bytes), len(pieces), digest).encode()) > HEADER_INLINE_BYTES:
        pieces.insert(0, b"")
    header = UploadHeader(meta, len(model_bytes), len(pieces), digest)
    model_id = compute_model_id(digest, meta)
    return [ModelChunk(model_id, i, piece, header if i == 0 else None) for i, piece in enumerate(pieces)]


# ------------------------------------------------------------------------------------------------ builders


def build_tx(key: PrivateKey, payload: Wire, *, chain_id: str, nonce: int, gas_limit: int,
             fee: int) -> Transaction:
    """Sign `payload` in an envelope; `kind` follows from the payload's type."""
    return Transaction.create(key, chain_id=chain_id, nonce=nonce, gas_limit=gas_limit, fee=fee,
                              kind=KIND_OF[type(payload)], payload=payload.encode())


def build_model_upload(key: PrivateKey, model_bytes: bytes, meta: ModelMeta, *, chain_id: str,
                       first_nonce: int, gas_limits: list[int] | int, gas_price: int,
                       chunk_bytes: int = MAX_CHUNK_BYTES) -> list[Transaction]:
    """Chunk transactions for one upload, with consecutive nonces; fee = gas_limit x gas_price each."""
    return sign_upload(key, split_model(model_bytes, meta, chunk_bytes), chain_id=chain_id,
                       first_nonce=first_nonce, gas_limits=gas_limits, gas_price=gas_price)


def sign_upload(key: PrivateKey, chunks: list[ModelChunk], *, chain_id: str, first_nonce: int,
                gas_limits: list[int] | int, gas_price: int) -> list[Transaction]:
    """`build_model_upload` for chunks already split (`split_model` hashes the whole model: a client that
    split them to learn the model id signs them without hashing again)."""
    limits = gas_limits if isinstance(gas_limits, list) else [gas_limits] * len(chunks)
    return [build_tx(key, chunk, chain_id=chain_id, nonce=first_nonce + i, gas_limit=limit,
                     fee=limit * gas_price) for i, (chunk, limit) in enumerate(zip(chunks, limits, strict=True))]


assert MAX_META_BYTES >= MAX_TENSOR_BYTES + 32 * KIB, "a golden input at the tensor cap must fit the metadata"
