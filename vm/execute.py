"""Per-transaction execution against a `StateView`: checks first, then writes, so a failure writes nothing
but the fee and the nonce.

A transaction's effect on state never depends on a model's output: an inference pays gas and royalty
whether its run succeeds or fails numerically, and a registration's verdict only decides the model's own
records, which are written after the block's transactions. So execution runs in one pass and hands the
model work out (`InferWork`, `RegisterWork`) to be resolved in one batch: by running it (build, validate)
or by reading the committed results (apply).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.address import address_from_public_key
from core.blobs import blob_digest
from core.codec import Wire
from core.errors import InvalidModel
from core.header import TxResult, TxStatus
from core.records import record
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, PublicKeyBytes, Timestamp
from vm import delegation
from vm.assembly import Assembly, AssemblyMemo, assemble_upload
from vm.deferred import is_deferred, is_pending, process_enqueue
from vm.gov.handlers import GovRefused, process_deposit, process_submit_proposal, process_vote
from vm.gov.types import Deposit, SubmitProposal, Vote
from vm.params import Params, VMParams
from vm.resident import is_resident, process_reserve, resident_load_gas_static, resident_room_error
from vm.retire import (
    RetireRefused,
    compute_resident_deposit,
    process_lock_deposit,
    process_retire_tx,
    retired_error,
)
from vm.state import (
    KEY_CANDIDATES,
    MAX_CANDIDATES,
    MAX_UPLOAD_CHUNKS,
    Account,
    CandidateList,
    ExpiryList,
    ModelRecord,
    StateView,
    UnbondingEntry,
    UnbondingQueue,
    Upload,
    ValidatorRecord,
    expiry_key,
    model_key,
    model_name_key,
    unbonding_key,
    upload_key,
)
from vm.txs import (
    MAX_CHUNK_BYTES,
    Infer,
    ModelChunk,
    ModelMeta,
    RetireModel,
    Stake,
    Transfer,
    TxKind,
    Unjail,
    Unstake,
    compute_model_id,
    decoded_payload,
    infer_payload,
)


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What execution knows about the block being executed."""

    chain_id: str
    height: Height
    time: Timestamp
    proposer: Address
    params: Params
    # The VM application's memo of completed uploads (vm/assembly.py); None: computed each time, nothing kept.
    assembly: AssemblyMemo | None = None


# Built per transaction (an inference's work, every transaction's execution): `record`, frozen to mypy but not at
# run time (a frozen dataclass's __init__ costs an object.__setattr__ per field, ~1 us a record under load). None
# is hashed or kept as a dict key or set member; `_transfer` shares one `TxExecution` per (gas used, fee) across
# transactions, safe because no code assigns to a field (the lint refuses it).
@record
class InferWork:
    index: int  # the transaction's position in the block
    model_id: Hash32
    model: ModelRecord
    inputs: tuple[Tensor, ...]
    resident: bool = False  # vm/resident.py: its session stays pinned in the workers


@dataclass(frozen=True, slots=True)
class RegisterWork:
    index: int
    model_id: Hash32
    owner: Address
    meta: ModelMeta
    model_bytes: bytes
    n_chunks: int
    # Gas the completing chunk has left after its charges: it must cover the model's load (a session and
    # the golden runs), which only the graph check can price (docs/vm.md, "Gas of a model").
    gas_left: int = 0
    # SHA-256 of `model_bytes` when the VM already checked it (the upload header's): the check memo's key
    # uses it instead of hashing the model again.
    bytes_hash: Hash32 | None = None


Work = InferWork | RegisterWork


@record  # built per transaction (see `InferWork`)
class TxExecution:
    """The part of a result that execution decides; for work items `result` is provisional (status OK,
    no outputs) until the work is resolved."""

    result: TxResult
    work: Work | None = None
    fee: int = 0


class _Failed(Exception):
    """A stateful rule refused the transaction; raised before any write of its handler."""

    def __init__(self, log: str, status: TxStatus = TxStatus.FAILED) -> None:
        super().__init__(log)
        self.log = log
        self.status = status


class _OutOfGas(Exception):
    pass


def inclusion_error(view: StateView, ctx: BlockContext, tx: Transaction, sender: Address | None = None) -> str | None:
    """Why `tx` cannot be in this block at all (None: it can). A block holding such a transaction is
    invalid; anything else a transaction gets wrong fails it inside the block, fee paid."""
    account = view.account(tx.sender_address if sender is None else sender)
    return account_inclusion_error(tx, ctx.chain_id, ctx.params.vm, account)


def account_inclusion_error(tx: Transaction, chain_id: str, vm: VMParams, account: Account) -> str | None:
    """`inclusion_error` with the sender's account given: the one statement of the inclusion rules (the
    mempool asks with the account as the sender's pending predecessors would leave it)."""
    if tx.chain_id != chain_id:
        return f"wrong chain id {tx.chain_id!r}"
    if tx.gas_limit > vm.max_tx_gas:
        return f"gas limit {tx.gas_limit:d} exceeds the per-transaction maximum {vm.max_tx_gas:d}"
    if tx.fee < tx.gas_limit * vm.min_gas_price:
        return f"fee {tx.fee:d} is below gas_limit x min_gas_price = {tx.gas_limit * vm.min_gas_price:d}"
    if tx.nonce != account.nonce:
        return f"nonce {tx.nonce:d} is not the account's next nonce {account.nonce:d}"
    if account.balance < tx.fee:
        return f"balance {account.balance:d} cannot pay the fee {tx.fee:d}"
    return None


def decode_payload(tx: Transaction) -> Wire | str:
    """The transaction's payload, or why it has none: such a transaction is includable but fails in any
    block, fee paid."""
    return decoded_payload(tx)  # decoded once per transaction object


def admission_error(tx: Transaction, chain_id: str, vm: VMParams, account: Account) -> str | None:
    """Why a node should not take `tx` for a later block (None: it may): it cannot be included after an
    account in state `account`, or it could only fail. The mempool's entry check; signatures aside."""
    reason = account_inclusion_error(tx, chain_id, vm, account)
    if reason is not None:
        return reason
    payload = decode_payload(tx)
    if isinstance(payload, Infer):
        return _input_cap_error(payload, vm)  # over the cap it could only fail, and may not fit any block
    return payload if isinstance(payload, str) else None


def _input_cap_error(p: Infer, vm: VMParams) -> str | None:
    if sum(len(t.data) for t in p.inputs) > vm.max_infer_input_bytes:
        return f"inputs exceed {vm.max_infer_input_bytes} bytes"
    return None


class _Gas:
    """The transaction's gas meter; `tokens` is what it paid beyond its fee (a deferred registration's check,
    charged from the sender's balance: its gas cannot fit one transaction)."""

    __slots__ = ("limit", "tokens", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.tokens = 0

    def charge(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise _OutOfGas


class BlockModels:
    """The distinct models a block's inferences use, in block order (docs/vm.md, "Gas"): the first
    inference on a model pays the model's load (`ModelRecord.gas_load`), and a block uses at most
    `vm.max_block_models` of them. Validators agree on both from the block alone, whatever their caches."""

    __slots__ = ("_declared", "cap", "used")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used: set[bytes] = set()
        # A model record -> its declared inputs as (dtype, shape) pairs: made once per model and block, not per
        # inference. Keyed by the record object the view holds (kept here, so a rewritten record misses).
        self._declared: dict[int, tuple[ModelRecord, tuple[tuple[object, object], ...]]] = {}

    def inputs_match(self, model: ModelRecord, inputs: tuple[Tensor, ...]) -> bool:
        """Whether `inputs` are the model's declared inputs: their count, and each one's dtype and shape."""
        known = self._declared.get(id(model))
        if known is None or known[0] is not model:
            known = self._declared[id(model)] = (model, tuple((s.dtype, s.shape) for s in model.meta.inputs))
        declared = known[1]
        if len(inputs) == 1 and len(declared) == 1:  # the commonest: one input
            t = inputs[0]
            return t.dtype == declared[0][0] and t.shape == declared[0][1]
        return tuple([(t.dtype, t.shape) for t in inputs]) == declared

    def inclusion_error(self, view: StateView, tx: Transaction) -> str | None:
        """Why `tx` cannot join this block: an inference on one model more than the block may use."""
        if tx.kind != _INFER or len(self.used) < self.cap:
            return None
        payload = infer_payload(tx)
        if payload is None:
            return None  # fails inside the block without loading anything
        model_id = payload.model_id
        if bytes(model_id) in self.used or view.model(model_id) is None:
            return None
        return f"the block already uses {self.cap} distinct models (vm.max_block_models)"


def execute_tx(view: StateView, ctx: BlockContext, index: int, tx: Transaction,
               sender: Address | None = None, *, models: BlockModels) -> TxExecution:
    """Execute one includable transaction (see `inclusion_error`): charge the fee, bump the nonce, run the
    kind's handler. Never raises for anything the transaction contains."""
    sender = tx.sender_address if sender is None else sender
    account = view.account(sender)
    payload = decode_payload(tx)
    if type(payload) is Transfer:  # the commonest transaction: its handler folded in (`_transfer`)
        return _transfer(view, ctx, tx, sender, account, payload)
    view.set_account(sender, Account(Amount(account.balance - tx.fee), Nonce(account.nonce + 1)))
    gas = _Gas(tx.gas_limit)
    if isinstance(payload, str):
        # The committed log keeps the short form (no decoder detail): it is part of the block's results.
        log = "malformed payload" if payload.startswith("malformed payload") else payload
        return TxExecution(_result(TxStatus.FAILED, tx.gas_limit, log), fee=tx.fee)
    try:
        if tx.kind == _INFER:  # the one handler that needs the block's models
            status, data, work = _infer(view, ctx, index, sender, payload, gas, models)
        else:
            status, data, work = _HANDLERS[tx.kind](view, ctx, index, sender, payload, gas)
    except _OutOfGas:
        return TxExecution(_result(TxStatus.OUT_OF_GAS, tx.gas_limit, "out of gas"), fee=tx.fee)
    except _Failed as failure:
        return TxExecution(_result(failure.status, gas.used, failure.log), fee=tx.fee)
    return TxExecution(_result(status, gas.used, "", data), work, fee=tx.fee + gas.tokens)


def _result(status: TxStatus, gas_used: int, log: str, data: bytes = b"") -> TxResult:
    if log or data:
        return TxResult(status, Gas(gas_used), (), data, log)
    # A result with neither log nor data is one of few values (a block of transfers has one): shared, as an
    # immutable value may be, so a block allocates and encodes it once (`vm.build` encodes by identity).
    key = (status, gas_used)
    result = _PLAIN_RESULTS.get(key)
    if result is None:
        if len(_PLAIN_RESULTS) >= 1024:
            _PLAIN_RESULTS.clear()
        result = _PLAIN_RESULTS[key] = TxResult(status, Gas(gas_used), (), b"", "")
    return result


_PLAIN_RESULTS: dict[tuple[int, int], TxResult] = {}


_Handled = tuple[TxStatus, bytes, Work | None]

# Read per transaction: an enum class's attribute costs more than the comparison it feeds (~0.1 us each).
_INFER = int(TxKind.INFER)
_OK = TxStatus.OK


# ------------------------------------------------------------------------------------------------ transfer


def _transfer(view: StateView, ctx: BlockContext, tx: Transaction, sender: Address, account: Account,
              p: Transfer) -> TxExecution:
    """`execute_tx` of a transfer, with the outcome the handler path gives (the fee and the nonce bump first,
    then the gas, then the amount), in one write of the sender's account instead of two."""
    balance = account.balance - tx.fee
    nonce = Nonce(account.nonce + 1)
    gas_used = ctx.params.vm.gas_transfer
    if gas_used > tx.gas_limit:
        view.set_account(sender, Account(Amount(balance), nonce))
        return TxExecution(_result(TxStatus.OUT_OF_GAS, tx.gas_limit, "out of gas"), fee=tx.fee)
    if p.amount > balance:
        view.set_account(sender, Account(Amount(balance), nonce))
        return TxExecution(_result(TxStatus.FAILED, gas_used, f"balance {balance:d} is below the amount {p.amount:d}"),
                           fee=tx.fee)
    if p.to == sender:
        view.set_account(sender, Account(Amount(balance), nonce))
    else:
        view.set_account(sender, Account(Amount(balance - p.amount), nonce))
        dst = view.account(p.to)
        view.set_account(p.to, Account(Amount(dst.balance + p.amount), dst.nonce))
    # The outcome of a transfer that went through is one of few values (gas used and fee: a block of transfers
    # has one or a few): shared, as `_result` shares its result, instead of a frozen dataclass built per transfer.
    key = (gas_used, tx.fee)
    done = _TRANSFERS_DONE.get(key)
    if done is None:
        if len(_TRANSFERS_DONE) >= 1024:
            _TRANSFERS_DONE.clear()
        done = _TRANSFERS_DONE[key] = TxExecution(_result(TxStatus.OK, gas_used, ""), fee=tx.fee)
    return done


_TRANSFERS_DONE: dict[tuple[int, int], TxExecution] = {}


# ------------------------------------------------------------------------------------------------ staking


def new_validator(public_key: bytes, owner: Address) -> ValidatorRecord:
    return ValidatorRecord(PublicKeyBytes(public_key), owner, Amount(0), False, Height(0), False, 0, 0, 0, 0,
                           Amount(0), Amount(0))


def _owned_validator(view: StateView, sender: Address, public_key: bytes) -> tuple[Address, ValidatorRecord]:
    address = address_from_public_key(public_key)
    record = view.validator(address)
    if record is None:
        raise _Failed("no such validator")
    if record.owner != sender:
        raise _Failed("the validator is owned by another account")
    return address, record


def _stake(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas) -> _Handled:
    assert isinstance(p, Stake)
    gas.charge(ctx.params.vm.gas_stake)
    if p.amount == 0:
        raise _Failed("stake amount must be positive")
    address = address_from_public_key(p.validator)
    record = view.validator(address)
    if record is None:
        if p.amount < ctx.params.staking.min_self_stake:
            raise _Failed(f"a new validator's first stake must be at least staking.min_self_stake "
                          f"{ctx.params.staking.min_self_stake:d}")
        record = new_validator(p.validator, sender)
    elif record.owner != sender:
        raise _Failed("the validator is owned by another account")
    if record.tombstoned:
        raise _Failed("the validator is tombstoned")
    src = view.account(sender)
    if p.amount > src.balance:
        raise _Failed(f"balance {src.balance:d} is below the amount {p.amount:d}")
    joins = record.stake < ctx.params.staking.min_validator_stake <= record.stake + p.amount
    if joins:
        listed = view.get(KEY_CANDIDATES, CandidateList)
        if listed is not None and len(listed.addresses) >= MAX_CANDIDATES:
            raise _Failed("the validator candidate list is full")
    try:
        record = delegation.bond_owner(view, address, record, p.amount)
    except delegation.Refused as exc:
        raise _Failed(str(exc)) from None
    view.set_account(sender, src.replace(balance=Amount(src.balance - p.amount)))
    view.set_validator(address, record)
    return TxStatus.OK, b"", None


def _unstake(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas) -> _Handled:
    assert isinstance(p, Unstake)
    gas.charge(ctx.params.vm.gas_unstake)
    address, record = _owned_validator(view, sender, p.validator)
    try:  # the owner's part of the stake: delegators' tokens are theirs to undelegate
        record, removed = delegation.unbond_owner(view, address, record, p.amount)
    except delegation.Refused as exc:
        raise _Failed(str(exc)) from None
    done_at = ctx.height + ctx.params.staking.unbonding_blocks
    key = unbonding_key(done_at)
    queue = view.get(key, UnbondingQueue) or UnbondingQueue(())
    view.set_validator(address, record)
    view.put(key, UnbondingQueue((*queue.entries, UnbondingEntry(sender, address, Amount(removed)))))
    return TxStatus.OK, done_at.to_bytes(8, "big"), None


def _unjail(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas) -> _Handled:
    assert isinstance(p, Unjail)
    gas.charge(ctx.params.vm.gas_unjail)
    address, record = _owned_validator(view, sender, p.validator)
    if record.tombstoned:
        raise _Failed("the validator is tombstoned")
    if not record.jailed:
        raise _Failed("the validator is not jailed")
    if ctx.height < record.jailed_until:
        raise _Failed(f"jailed until height {record.jailed_until:d}")
    if record.stake < ctx.params.staking.min_validator_stake:
        raise _Failed("stake is below the validator minimum")
    if delegation.is_self_stake_short(view, address, record, ctx.params):
        raise _Failed("the owner's own stake is below its floor (staking.min_self_stake or its own)")
    view.set_validator(address, record.replace(jailed=False, miss_bits=0))
    return TxStatus.OK, b"", None


def _delegation(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire,
                gas: _Gas) -> _Handled:
    """delegate, undelegate, redelegate, withdraw-rewards, edit-validator: the rules are vm.delegation's."""
    needed = delegation.tx_gas(view, ctx.params, sender, p)
    if gas.used + needed > gas.limit:  # e.g. a withdraw-all whose account gained delegations since its quote
        gas.used = gas.limit
        raise _Failed(delegation.out_of_gas_log(view, sender, p, needed, gas.limit), TxStatus.OUT_OF_GAS)
    gas.charge(needed)
    try:
        data = delegation.process_tx(view, int(ctx.height), ctx.params, sender, p)
    except delegation.Refused as exc:
        raise _Failed(str(exc)) from None
    return TxStatus.OK, data, None


# ------------------------------------------------------------------------------------------------ models


def _model_chunk(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire,
                 gas: _Gas) -> _Handled:
    assert isinstance(p, ModelChunk)
    vm = ctx.params.vm
    gas.charge(vm.gas_chunk_base + vm.gas_chunk_per_byte * len(p.data))
    mid = p.model_id
    ukey = upload_key(mid)
    upload = view.get(ukey, Upload)
    new_upload = None
    if p.header is not None:
        header = p.header
        if compute_model_id(header.bytes_hash, header.meta) != mid:
            raise _Failed("model id does not match the upload header")
        if view.model(mid) is not None:
            raise _Failed("model already registered")
        retired = retired_error(view, mid)
        if retired is not None:
            raise _Failed(f"{retired}: a retired id cannot register again (change the name or metadata)")
        if is_pending(view, mid):
            raise _Failed("the model's registration is pending activation")
        if upload is not None:
            raise _Failed("an upload of this model is already in progress")
        if view.get_raw(model_name_key(header.meta.name)) is not None:
            raise _Failed(f"the model name {header.meta.name!r} is taken (names are first come per chain)")
        max_bytes = sandbox_limit(ctx.params, "max_model_bytes")
        if not 0 < header.total_bytes <= max_bytes:
            raise _Failed(f"model size must be between 1 and {max_bytes} bytes")
        if not 0 < header.n_chunks <= min(MAX_UPLOAD_CHUNKS, header.total_bytes):
            raise _Failed("invalid chunk count")
        upload = new_upload = Upload.open(sender, header, Height(ctx.height + upload_lifetime(vm, header.total_bytes)))
    elif upload is None:
        raise _Failed("no upload in progress for this model")
    if upload.owner != sender:
        raise _Failed("the upload belongs to another account")
    header = upload.header
    if p.index >= header.n_chunks:
        raise _Failed(f"chunk index {p.index:d} is beyond the upload's {header.n_chunks:d} chunks")
    if upload.has_chunk(p.index):
        raise _Failed(f"chunk {p.index:d} already received")
    if len(p.data) > MAX_CHUNK_BYTES:  # the codec bounds it already; kept as the stated rule
        raise _Failed("chunk too large")
    complete = upload.received_count == header.n_chunks - 1
    chunk_digest = blob_digest(p.data)
    done: Assembly | None = None
    deferred_check = 0  # the check gas of a deferred registration, paid in tokens (vm/deferred.py)
    resident_load = 0  # and its cold load, paid in tokens too (vm/resident.py)
    if complete:  # this chunk completes the upload: the check's gas first
        done = assemble_upload(view, upload, p.index, p.data, chunk_digest, ctx.assembly)  # memoized ahead
        facts = done.facts
        check = registration_check_gas_of_facts(ctx.params, facts.size, facts.nodes, facts.elements)
        if is_deferred(ctx.params, check):
            gas.charge(vm.gas_register_deferred)
            resident_load = resident_load_gas_static(ctx.params, facts.size, facts.nodes)
            _validate_deferred(view, ctx.params, sender, check, resident_load, gas.limit - gas.used, facts.size)
            deferred_check = check
        else:
            gas.charge(check)
    # -- writes
    if new_upload is not None:
        ekey = expiry_key(upload.expires_at)
        expiring = view.get(ekey, ExpiryList) or ExpiryList(())
        view.put(ekey, ExpiryList((*expiring.model_ids, mid)))
        view.put_raw(model_name_key(header.meta.name), mid)
    view.put_hashed_blob(p.data, chunk_digest)  # the bytes become a blob, the record its hash
    upload = upload.with_chunk(p.index, chunk_digest)
    view.put(ukey, upload)
    if done is None:
        return TxStatus.OK, b"", None
    if not done.facts.matches:
        drop_upload(view, mid)
        raise _Failed("model bytes do not match the upload header", TxStatus.MODEL_REJECTED)
    if deferred_check:  # a resident model (vm/resident.py): its check and its cold load paid in tokens
        price = (deferred_check + resident_load) * vm.min_gas_price
        process_reserve(view, mid, done.facts.size)
        src = view.account(sender)
        view.set_account(sender, src.replace(balance=Amount(src.balance - price)))
        gas.tokens += price
        # and its deposit locked until it is rejected or retired (vm/retire.py)
        process_lock_deposit(view, mid, sender, compute_resident_deposit(ctx.params, done.facts.size))
        at = process_enqueue(view, ctx.params, ctx.height, sender, mid, header, done, deferred_check,
                             gas.limit - gas.used)
        drop_upload(view, mid)
        return TxStatus.OK, int(at).to_bytes(8, "big"), None
    return TxStatus.OK, b"", RegisterWork(index, mid, sender, header.meta, done.model_bytes(view), header.n_chunks,
                                          gas.limit - gas.used, header.bytes_hash)


def _validate_deferred(view: StateView, params: Params, sender: Address, check: int, load: int, gas_left: int,
                       model_bytes: int) -> None:
    """That a deferred (so resident) registration fits its bounds, the deferred work's and the resident
    bytes' (vm/resident.py), and its sender can pay its check and its load in tokens."""
    vm = params.vm
    if check + gas_left > vm.max_deferred_registration_gas:
        raise _Failed(f"check gas {check:d} plus the gas left for the golden runs {gas_left:d} exceeds "
                      f"vm.max_deferred_registration_gas {vm.max_deferred_registration_gas:d}")
    full = resident_room_error(view, params, model_bytes)
    if full is not None:
        raise _Failed(full)
    price = (check + load) * vm.min_gas_price
    deposit = compute_resident_deposit(params, model_bytes)
    balance = view.account(sender).balance
    if balance < price + deposit:
        raise _Failed(f"balance {balance:d} cannot pay the deferred check's {check:d} gas and the resident "
                      f"load's {load:d} ({price:d}) and lock the resident deposit {deposit:d}")


def upload_lifetime(vm: VMParams, total_bytes: int) -> int:
    """Blocks an upload of `total_bytes` stays open: a fixed part, plus a part that grows with its size."""
    return vm.upload_expiry_blocks + vm.upload_expiry_blocks_per_mib * -(-total_bytes // (1 << 20))


def drop_upload(view: StateView, model_id: Hash32) -> None:
    """Close an upload (expired, registered, rejected or mismatched): forget its record and release its
    chunks' blobs, which the node collects once no committed record names them. An upload that did not
    register frees its name (a registered model keeps it)."""
    upload = view.get(upload_key(model_id), Upload)
    if upload is None:
        return
    if (view.model(model_id) is None and not is_pending(view, model_id)
            and view.get_raw(model_name_key(upload.header.meta.name)) == model_id):
        view.delete(model_name_key(upload.header.meta.name))
    for digest in upload.landed():
        view.release_blob(digest)
    view.delete(upload_key(model_id))


def register_model(view: StateView, ctx: BlockContext, work: RegisterWork, gas_per_call: int,
                   gas_load: int) -> None:
    """The accepted verdict of a registration: the model becomes callable from the next block. Its bytes
    become one blob named by the model record; the chunks' blobs are released with the upload."""
    upload = view.get(upload_key(work.model_id), Upload)
    assert upload is not None
    header = upload.header
    view.put_hashed_blob(work.model_bytes, header.bytes_hash)  # checked against it when the upload completed
    view.put(model_key(work.model_id), ModelRecord(work.owner, header.meta, header.bytes_hash, header.total_bytes,
                                                   header.n_chunks, Gas(gas_per_call), ctx.height, Gas(gas_load)))
    drop_upload(view, work.model_id)


def sandbox_limit(params: Params, name: str) -> int:
    for item in params.vm.sandbox_limits:
        if item.name == name:
            return item.value
    raise LookupError(f"sandbox limit {name!r} missing from the parameters")


def _infer(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas,
           models: BlockModels) -> _Handled:
    assert isinstance(p, Infer)
    vm = ctx.params.vm
    inputs = p.inputs
    input_bytes = len(inputs[0].data) if len(inputs) == 1 else sum(len(t.data) for t in inputs)
    gas.charge(vm.gas_infer_base + vm.gas_infer_per_io_byte * input_bytes)
    if input_bytes > vm.max_infer_input_bytes:  # = _input_cap_error, its sum not taken twice
        raise _Failed(f"inputs exceed {vm.max_infer_input_bytes} bytes")
    model = view.model(p.model_id)
    if model is None:
        raise _Failed(retired_error(view, p.model_id) or "unknown model")
    gas.charge(model.gas_per_call)
    if not models.inputs_match(model, inputs):
        raise _Failed("inputs do not match the model's declared inputs")
    royalty = model.meta.fee_per_call
    if royalty > p.max_model_fee:
        raise _Failed(f"the model's fee {royalty:d} exceeds max_model_fee {p.max_model_fee:d}")
    src = view.account(sender)
    if royalty > src.balance:
        raise _Failed(f"balance {src.balance:d} cannot pay the model's fee {royalty:d}")
    if p.model_id not in models.used:  # the block's first use loads the model (on a cold worker)
        gas.charge(model.gas_load)
        models.used.add(bytes(p.model_id))
    if royalty:
        view.set_account(sender, src.replace(balance=Amount(src.balance - royalty)))
        owner = view.account(model.owner)
        view.set_account(model.owner, owner.replace(balance=Amount(owner.balance + royalty)))
    return _OK, b"", InferWork(index, p.model_id, model, inputs, is_resident(view, p.model_id))


def _gov(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas) -> _Handled:
    """Governance transactions (vm/gov/handlers.py); a refusal there is a failed transaction here."""
    try:
        if isinstance(p, SubmitProposal):
            data = process_submit_proposal(view, ctx, sender, p, gas.charge)
        elif isinstance(p, Deposit):
            data = process_deposit(view, ctx, sender, p, gas.charge)
        else:
            assert isinstance(p, Vote)
            data = process_vote(view, ctx, sender, p, gas.charge)
    except GovRefused as exc:
        raise _Failed(str(exc)) from None
    return TxStatus.OK, data, None


def _retire(view: StateView, ctx: BlockContext, index: int, sender: Address, p: Wire, gas: _Gas) -> _Handled:
    """A model's owner retires it (vm/retire.py); a refusal there is a failed transaction here."""
    assert isinstance(p, RetireModel)
    try:
        data = process_retire_tx(view, ctx.params, int(ctx.height), sender, p, gas.charge)
    except RetireRefused as exc:
        raise _Failed(str(exc)) from None
    return TxStatus.OK, data, None


_Handler = Callable[[StateView, BlockContext, int, Address, Wire, _Gas], _Handled]
# Keyed by kind; TxKind is an IntEnum, so a transaction's plain int kind indexes it without building the enum.
_HANDLERS: dict[int, _Handler] = {
    TxKind.SUBMIT_PROPOSAL: _gov,
    TxKind.DEPOSIT: _gov,
    TxKind.VOTE: _gov,
    TxKind.STAKE: _stake,
    TxKind.UNSTAKE: _unstake,
    TxKind.UNJAIL: _unjail,
    TxKind.MODEL_CHUNK: _model_chunk,
    TxKind.DELEGATE: _delegation,
    TxKind.UNDELEGATE: _delegation,
    TxKind.REDELEGATE: _delegation,
    TxKind.WITHDRAW_REWARDS: _delegation,
    TxKind.EDIT_VALIDATOR: _delegation,
    TxKind.RETIRE_MODEL: _retire,
}


# ------------------------------------------------------------------------------------------------ gas quotes


def registration_check_gas(params: Params, model_bytes: bytes) -> int:
    """Gas the completing chunk pays for the registration check, from the model's size, node count and
    propagated elements (docs/sandbox.md, "Gas")."""
    return registration_check_gas_and_nodes(params, model_bytes)[0]


def registration_check_gas_and_nodes(params: Params, model_bytes: bytes) -> tuple[int, int]:
    """`registration_check_gas` and the model's node count (a resident model's load price needs it too: the
    bytes are parsed once)."""
    from vm.sandbox.meter import check_facts

    nodes, elements = check_facts(model_bytes)
    return registration_check_gas_of_facts(params, len(model_bytes), nodes, elements), nodes


def registration_check_gas_of_facts(params: Params, size: int, nodes: int, elements: int) -> int:
    """`registration_check_gas` from the model's facts (`vm.assembly.ModelFacts`, memoized ahead)."""
    vm = params.vm
    return check_gas_of_facts(vm.gas_register_base, vm.gas_register_per_byte, vm.gas_register_per_node,
                              vm.gas_register_per_propagated_element, size, nodes, elements)


def check_gas(base: int, per_byte: int, per_node: int, per_propagated_element: int, model_bytes: bytes) -> int:
    """The registration check's price from its four parameters: the one formula (the CLI quotes it from the
    node's published parameters)."""
    # onnx's protobuf: loaded on the first registration, not at start
    from vm.sandbox.meter import check_facts

    nodes, elements = check_facts(model_bytes)
    return check_gas_of_facts(base, per_byte, per_node, per_propagated_element, len(model_bytes), nodes, elements)


def check_gas_of_facts(base: int, per_byte: int, per_node: int, per_propagated_element: int, size: int,
                       nodes: int, elements: int) -> int:
    return base + per_byte * size + per_node * nodes + per_propagated_element * elements


def registration_gas(params: Params, model_bytes: bytes, meta: ModelMeta) -> int:
    """All the gas a registration needs: the check, then its golden runs on the check's session
    (`registration_load_gas`), priced by metering the model as the chain will (client side; the chain refuses
    a registration whose completing chunk has less gas left than the golden runs)."""
    from vm.engine import sandbox_limits
    from vm.sandbox.limits import registration_load_gas
    from vm.sandbox.meter import meter

    limits = sandbox_limits(params)
    try:
        report = meter(model_bytes, limits=limits)
    except InvalidModel:  # the checker refuses it before anything loads
        return registration_check_gas(params, model_bytes)
    return registration_check_gas(params, model_bytes) + registration_load_gas(
        limits.gas, nodes=len(report.nodes), golden_runs=len(meta.golden), gas_per_call=report.gas)


def completing_gas(params: Params, model_bytes: bytes, meta: ModelMeta) -> int:
    """What the completing chunk's gas limit needs beyond the chunk's own gas: the whole registration
    (`registration_gas`), or for a deferred one (vm/deferred.py) the fixed part and the golden runs, its check
    being paid in tokens (`deferred_check_price`)."""
    check = registration_check_gas(params, model_bytes)
    full = registration_gas(params, model_bytes, meta)
    return params.vm.gas_register_deferred + full - check if is_deferred(params, check) else full


def deferred_check_price(params: Params, model_bytes: bytes) -> int:
    """The tokens a deferred registration's completing chunk pays for its check and its resident load
    (vm/resident.py), besides its fee (0: the registration is not deferred)."""
    check, nodes = registration_check_gas_and_nodes(params, model_bytes)
    if not is_deferred(params, check):
        return 0
    return (check + resident_load_gas_static(params, len(model_bytes), nodes)) * params.vm.min_gas_price


def chunk_gas(params: Params, chunk: ModelChunk, total_bytes: int, last: bool, *,
              registration: int = 0) -> int:
    """Gas a chunk transaction uses; the last chunk of an upload adds `registration` (`registration_gas`)."""
    vm = params.vm
    gas = vm.gas_chunk_base + vm.gas_chunk_per_byte * len(chunk.data)
    return gas + registration if last else gas


def infer_gas(params: Params, model: ModelRecord, inputs: tuple[Tensor, ...], *, first_use: bool = True) -> int:
    """Gas an inference on `model` uses: base + per input byte + the model's metered price per call, plus
    the model's load when it is the first inference on the model in its block (`first_use`; a sender cannot
    know where its transaction lands, so the safe quote includes it)."""
    vm = params.vm
    gas = vm.gas_infer_base + vm.gas_infer_per_io_byte * sum(len(t.data) for t in inputs) + model.gas_per_call
    return gas + model.gas_load if first_use else gas


def kind_gas(params: Params, kind: TxKind) -> int:
    """Gas of the fixed-price kinds (transfer, stake, unstake, unjail, retire-model)."""
    vm = params.vm
    return {TxKind.TRANSFER: vm.gas_transfer, TxKind.STAKE: vm.gas_stake, TxKind.UNSTAKE: vm.gas_unstake,
            TxKind.UNJAIL: vm.gas_unjail, TxKind.RETIRE_MODEL: vm.gas_retire_model}[kind]
