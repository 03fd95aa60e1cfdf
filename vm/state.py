"""State records, their key layout in the authenticated map, and `StateView`: a change-collecting overlay.

Every record is a `@wire` value (one canonical encoding, so the state root is well defined). Keys are a
one-byte table tag followed by the record's id; the map hashes keys, so the layout only needs to be unique.
Inference outputs are not state: they live in blocks, in each transaction's result (docs/design.md §6).
Model bytes are not state either: records hold their hashes, the bytes are node-local blobs (core.blobs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypeVar

from core.blobs import BlobReader, blob_digest
from core.codec import U16, U32, U64, MaxLen, Wire, wire
from core.errors import StorageError
from core.limits import MAX_BLOCK_TXS, MAX_VALIDATORS
from core.state import AuthenticatedMap, StateUpdate
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, PublicKeyBytes, Timestamp
from core.validators import ValidatorEntry, ValidatorList
from vm.params import Params
from vm.txs import ModelMeta, UploadHeader

# Validator sets are kept in a ring of `vset_ring(params)` slots (slot = height mod ring): every height that
# evidence may still name (max_evidence_age back) up to last+2, plus this margin. Slashing reads the offence
# height's set from it (membership and power at the offence), so a validator that left stays punishable.
VSET_MARGIN = 8
# An upload's record lists its chunks' hashes and is rewritten by every chunk, so the count is bounded: 1024
# full chunks is 256 MiB, twice the model cap.
MAX_UPLOAD_CHUNKS = 1024
CHUNK_LIST_BYTES = 32 * MAX_UPLOAD_CHUNKS
NO_CHUNK = bytes(32)

W = TypeVar("W", bound=Wire)


# ------------------------------------------------------------------------------------------------ records


@wire(max_bytes=64)
class Account(Wire):
    balance: Amount
    nonce: Nonce


EMPTY_ACCOUNT = Account(Amount(0), Nonce(0))


@wire(max_bytes=256)
class ValidatorRecord(Wire):
    """A validator: its consensus key, the account that owns its stake, and its PoI score.

    `miss_bits` holds the outcomes of the last `miss_window` scored heights (bit 0 the newest; 1 = miss).
    """

    public_key: PublicKeyBytes
    owner: Address
    stake: Amount
    jailed: bool
    jailed_until: Height
    tombstoned: bool
    poi_correct: U64
    poi_wrong: U64
    poi_missed: U64
    miss_bits: U64
    slashed: Amount
    rewards: Amount


@wire(max_bytes=64)
class UnbondingEntry(Wire):
    owner: Address
    validator: Address
    amount: Amount


@wire(max_bytes=64 * MAX_BLOCK_TXS + 64)
class UnbondingQueue(Wire):
    """Everything that finishes unbonding at one height, released by that height's block."""

    entries: Annotated[tuple[UnbondingEntry, ...], MaxLen(MAX_BLOCK_TXS)]


@wire(max_bytes=UploadHeader.MAX_BYTES + CHUNK_LIST_BYTES + 256)
class Upload(Wire):
    """An upload in progress; `chunks` holds the SHA-256 of each chunk that landed, 32 bytes per index in
    order (zeros: not yet). The chunks' bytes are blobs."""

    owner: Address
    header: UploadHeader
    chunks: Annotated[bytes, MaxLen(CHUNK_LIST_BYTES)]
    expires_at: Height

    def validate_wire(self) -> None:
        if len(self.chunks) != 32 * self.header.n_chunks:
            raise ValueError("an upload lists exactly one hash per chunk")

    @classmethod
    def open(cls, owner: Address, header: UploadHeader, expires_at: Height) -> Upload:
        return cls(owner, header, NO_CHUNK * header.n_chunks, expires_at)

    def chunk_hash(self, index: int) -> Hash32 | None:
        digest = self.chunks[32 * index:32 * index + 32]
        return None if digest == NO_CHUNK else Hash32(digest)

    def landed(self) -> list[Hash32]:
        """Hashes of the chunks that landed, in index order."""
        return [h for h in (self.chunk_hash(i) for i in range(self.header.n_chunks)) if h is not None]

    @property
    def received_count(self) -> int:
        return len(self.landed())

    def has_chunk(self, index: int) -> bool:
        return self.chunk_hash(index) is not None

    def with_chunk(self, index: int, digest: Hash32) -> Upload:
        return self.replace(chunks=self.chunks[:32 * index] + bytes(digest) + self.chunks[32 * index + 32:])


@wire(max_bytes=ModelMeta.MAX_BYTES + 256)
class ModelRecord(Wire):
    """A registered model: metadata, its bytes' hash (the blob that holds them) and its static price."""

    owner: Address
    meta: ModelMeta
    bytes_hash: Hash32
    total_bytes: U32
    n_chunks: U16
    gas_per_call: Gas
    registered_at: Height
    # Charged to the first inference on the model in a block (meter.load_gas): loading it into a cold worker.
    gas_load: Gas


@wire(max_bytes=34 * MAX_BLOCK_TXS + 16)
class ExpiryList(Wire):
    """Uploads that expire at one height unless completed before it."""

    model_ids: Annotated[tuple[Hash32, ...], MaxLen(MAX_BLOCK_TXS)]


@wire(max_bytes=160)
class ChainRecord(Wire):
    """Where the chain stands after the last applied block; PoI seeds need the ids of earlier blocks."""

    height: Height
    time: Timestamp
    last_block_id: Hash32  # id of block height-1 (the one this block extends)
    prev_block_id: Hash32  # id of block height-2


@wire(max_bytes=64)
class Supply(Wire):
    """Conservation: genesis + issued - burned = balances + stakes + unbonding + reward pools, always."""

    genesis: Amount
    issued: Amount
    burned: Amount


@wire(max_bytes=80)
class PoiEntry(Wire):
    validator: Address
    power: U64
    present: bool  # a precommit of this validator was included
    commitment: Hash32 | None


@wire(max_bytes=80 * MAX_VALIDATORS + 64)
class PendingPoi(Wire):
    """The commitments to challenge `height`, fixed by the last commit of block height+1, scored by block
    height+2 against its reveal."""

    height: Height
    entries: Annotated[tuple[PoiEntry, ...], MaxLen(MAX_VALIDATORS)]


@wire(max_bytes=80)
class RegistrationData(Wire):
    """`TxResult.data` of a chunk transaction whose landing registered a model."""

    model_id: Hash32
    gas_per_call: Gas
    gas_load: Gas


@wire(max_bytes=22 * 4096 + 16)
class CandidateList(Wire):
    """Addresses of validators whose stake reaches the minimum (jailed ones included), sorted."""

    addresses: Annotated[tuple[Address, ...], MaxLen(4096)]


# Delegation (vm/delegation.py). A validator's `stake` is all its bonded tokens, its owner's and its
# delegators'; shares say who owns which part, so a slash or a reward touches one record, not one per holder.

MAX_DELEGATIONS_PER_ACCOUNT = 16  # validators one account may delegate to at once
ACC_BYTES = 32  # reward-per-share accumulators: unsigned big-endian integers, scaled by delegation.ACC_SCALE


@wire(max_bytes=192)
class ValidatorPool(Wire):
    """The shares of a validator's stake and its delegators' reward pool. Absent until another account
    delegates or the owner sets a commission: then the owner holds all the stake, one share per token.

    `reward_pool` holds the delegators' rewards not yet withdrawn (and rounding dust); `reward_acc` is the
    running reward per delegator share, scaled (lazy F1-style accounting: a delegator's due is its shares x
    the accumulator's growth since it last settled). `min_self_stake`: the floor the owner promised its
    delegators for its own stake (0: only the chain-wide `staking.min_self_stake`); it only ever rises."""

    total_shares: U64
    owner_shares: U64
    commission_bps: U16
    max_commission_bps: U16
    max_change_bps: U16
    commission_changed_at: Height
    reward_pool: Amount
    reward_acc: Annotated[bytes, MaxLen(ACC_BYTES)]
    min_self_stake: Amount = Amount(0)


@wire(max_bytes=96)
class Delegation(Wire):
    """One account's delegation to one validator. `locked_until`: stake redelegated in cannot leave before
    that height (when the redelegation matures), so a slash of its source still reaches it."""

    shares: U64
    reward_base: Annotated[bytes, MaxLen(ACC_BYTES)]
    locked_until: Height


@wire(max_bytes=22 * MAX_DELEGATIONS_PER_ACCOUNT + 16)
class DelegatorIndex(Wire):
    """The validators an account delegates to, sorted."""

    validators: Annotated[tuple[Address, ...], MaxLen(MAX_DELEGATIONS_PER_ACCOUNT)]


@wire(max_bytes=96)
class RedelegationEntry(Wire):
    """`amount` moved from `source` to `destination`: slashable for the source's offences until it matures."""

    delegator: Address
    source: Address
    destination: Address
    amount: Amount


@wire(max_bytes=96 * MAX_BLOCK_TXS + 64)
class RedelegationQueue(Wire):
    """The redelegations that mature at one height (begun unbonding_blocks before)."""

    entries: Annotated[tuple[RedelegationEntry, ...], MaxLen(MAX_BLOCK_TXS)]


# ------------------------------------------------------------------------------------------------ keys

KEY_CHAIN = b"\x00chain"
KEY_SUPPLY = b"\x00supply"
KEY_PARAMS = b"\x00params"
KEY_POI = b"\x00poi"
KEY_CANDIDATES = b"\x00candidates"
MAX_CANDIDATES = 4096


_ACCOUNT_PREFIX = b"A"


def account_key(address: Address) -> bytes:
    return b"A" + address


def validator_key(address: Address) -> bytes:
    return b"V" + address


def unbonding_key(height: int) -> bytes:
    return b"Q" + height.to_bytes(8, "big")


def upload_key(model_id: Hash32) -> bytes:
    return b"U" + model_id


def model_key(model_id: Hash32) -> bytes:
    return b"M" + model_id


def model_name_key(name: str) -> bytes:
    """The name index: a model's name -> the id (32 raw bytes) of the model that holds it, from the start of
    its upload (first come per chain) until the upload is dropped; names are exact strings."""
    return b"N" + name.encode()


def expiry_key(height: int) -> bytes:
    return b"X" + height.to_bytes(8, "big")


def pool_key(validator: Address) -> bytes:
    return b"P" + validator


def delegation_key(validator: Address, delegator: Address) -> bytes:
    return b"D" + validator + delegator


def delegator_index_key(delegator: Address) -> bytes:
    return b"I" + delegator


def redelegation_key(height: int) -> bytes:
    return b"R" + height.to_bytes(8, "big")


def vset_ring(params: Params) -> int:
    return int(params.slashing.max_evidence_age) + VSET_MARGIN


def vset_key(height: int, ring: int) -> bytes:
    return b"S" + (height % ring).to_bytes(4, "big")


def evidence_key(digest: Hash32) -> bytes:
    return b"E" + digest


# ------------------------------------------------------------------------------------------------ view


class StateReader(Protocol):
    """Versioned reads; `core.state.AuthenticatedMap` is one."""

    def get(self, key: bytes, version: int) -> bytes | None: ...


_ABSENT: Any = object()

# Accounts decoded, by their stored bytes: each node reads the same accounts through many fresh views (the
# mempool's per height, each block's), and a decode is a few microseconds, a dict lookup a tenth of one. Wire
# values are immutable, so one decoded account can serve every view. Bounded: emptied when full.
_ACCOUNTS: dict[bytes, Account] = {}
_ACCOUNTS_MAX = 1 << 16


def _decoded_account(raw: bytes) -> Account:
    account = _ACCOUNTS.get(raw)
    if account is None:
        account = Account.decode(raw)
        if len(_ACCOUNTS) >= _ACCOUNTS_MAX:
            _ACCOUNTS.clear()
        _ACCOUNTS[raw] = account
    return account


@dataclass(frozen=True, slots=True)
class BlobChanges:
    """What a view did to blobs: bytes to store (by digest), and reference-count changes by digest (a chunk
    listed by an upload, or a model's bytes named by its record, is one reference)."""

    new: dict[bytes, bytes]
    refs: dict[bytes, int]
    # Blobs named by the chunks they are made of (digest -> (the parts' digests in order, total size)): a model
    # whose upload the node prepared ahead (vm/assembly.py); stored at commit unless the node holds it already.
    composed: dict[bytes, tuple[tuple[bytes, ...], int]] = field(default_factory=dict)


class StateView:
    """The state at `version` (None: empty) plus the changes made on top; nothing is written anywhere.

    Reads go through to the reader once per key; records are kept decoded, and encoded only when the
    changes are collected. Blobs named by the state are read from `blobs`; new ones are kept in the view
    until the node stores them with the block (`blob_changes`).
    """

    __slots__ = ("_accounts", "_blob_refs", "_blobs", "_cache", "_composed", "_dirty", "_new_blobs", "_reader",
                 "version")

    def __init__(self, reader: StateReader | None, version: int | None, blobs: BlobReader | None = None) -> None:
        self._reader = reader
        self.version = version
        self._cache: dict[bytes, Any] = {}  # key -> decoded record, raw bytes, or None (absent)
        self._dirty: set[bytes] = set()
        # Accounts written through `set_account`, apart from the other keys written (`_dirty`): a block of
        # transfers writes thousands of them, and the block rules that look for the keys written under another
        # prefix (`touched`) then need not pass over them.
        self._accounts: set[bytes] = set()
        self._blobs = blobs
        self._new_blobs: dict[bytes, bytes] = {}
        self._composed: dict[bytes, tuple[tuple[bytes, ...], int]] = {}
        self._blob_refs: dict[bytes, int] = {}

    # blobs -----------------------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> Hash32:
        """Keep `data` as a blob and count one reference to it; its digest."""
        digest = blob_digest(data)
        self.put_hashed_blob(data, digest)
        return digest

    def put_hashed_blob(self, data: bytes, digest: Hash32) -> None:
        """`put_blob` for bytes the caller has just checked against `digest` (a registration's assembled
        model against its upload header's hash): the model is hashed once, not twice."""
        self._new_blobs.setdefault(bytes(digest), bytes(data))
        self._blob_refs[bytes(digest)] = self._blob_refs.get(bytes(digest), 0) + 1

    def put_composed_blob(self, digest: Hash32, parts: Sequence[Hash32], size: int) -> None:
        """`put_hashed_blob` for a blob the caller knows is the concatenation of the blobs `parts` (`size` bytes,
        hashing to `digest`: a prepared upload, vm/assembly.py), kept as that recipe instead of its bytes."""
        if bytes(digest) not in self._new_blobs:
            self._composed.setdefault(bytes(digest), (tuple(bytes(d) for d in parts), size))
        self._blob_refs[bytes(digest)] = self._blob_refs.get(bytes(digest), 0) + 1

    def release_blob(self, digest: Hash32) -> None:
        """Drop one reference to a blob (its upload closed); unreferenced blobs are collected later."""
        self._blob_refs[bytes(digest)] = self._blob_refs.get(bytes(digest), 0) - 1

    def get_blob(self, digest: Hash32) -> bytes:
        """A blob the state names. Missing is this node's fault (its blob store lost what its state names),
        never the transaction's: StorageError."""
        data = self._new_blobs.get(bytes(digest))
        recipe = self._composed.get(bytes(digest))
        if data is None and recipe is not None:
            data = b"".join(self.get_blob(Hash32(part)) for part in recipe[0])
        if data is None and self._blobs is not None:
            data = self._blobs.get_blob(digest)
        if data is None:
            raise StorageError(f"blob {digest.hex()[:16]} named by the state is missing from this node")
        return data

    def blob_changes(self) -> BlobChanges:
        return BlobChanges(dict(self._new_blobs), {d: n for d, n in self._blob_refs.items() if n},
                           {d: r for d, r in self._composed.items() if d not in self._new_blobs})

    # raw access ------------------------------------------------------------------------------------

    def _load(self, key: bytes) -> bytes | None:
        if self._reader is None or self.version is None:
            return None
        return self._reader.get(key, self.version)

    def get_raw(self, key: bytes) -> bytes | None:
        value = self._cache.get(key, _ABSENT)
        if value is _ABSENT:
            value = self._load(key)
            self._cache[key] = value
        if value is None or isinstance(value, bytes):
            return value
        return value.encode()  # type: ignore[no-any-return]

    def get(self, key: bytes, cls: type[W]) -> W | None:
        value = self._cache.get(key, _ABSENT)
        if value is _ABSENT:
            raw = self._load(key)
            value = None if raw is None else cls.decode(raw)
            self._cache[key] = value
        elif isinstance(value, bytes):
            value = cls.decode(value)
            self._cache[key] = value
        return value  # type: ignore[no-any-return]

    def put(self, key: bytes, record: Wire) -> None:
        self._cache[key] = record
        self._dirty.add(key)

    def put_raw(self, key: bytes, value: bytes) -> None:
        self._cache[key] = bytes(value)
        self._dirty.add(key)

    def delete(self, key: bytes) -> None:
        self._cache[key] = None
        self._dirty.add(key)

    def changes(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for key in sorted(self._dirty | self._accounts):
            value = self._cache[key]
            out[key] = value if value is None or isinstance(value, bytes) else value.encode()
        return out

    def compute_update(self, state_map: AuthenticatedMap, new_version: int) -> StateUpdate:
        """The authenticated map's update for these changes on top of `version` (pure)."""
        return state_map.compute_update(self.version, new_version, self.changes())

    def touched(self, prefix: bytes = b"") -> Iterator[bytes]:
        """The keys written in this view that start with `prefix`, in key order (deterministic). Filtered
        before sorting: a block of transfers touches thousands of keys and the block rules want a few."""
        if prefix[:1] == _ACCOUNT_PREFIX or not prefix:
            return iter(sorted(k for k in self._dirty | self._accounts if k.startswith(prefix)))
        return iter(sorted(k for k in self._dirty if k.startswith(prefix)))

    # typed access ----------------------------------------------------------------------------------

    def account(self, address: Address) -> Account:
        # `get` inlined for the commonest read of block execution: an account this view already holds; a first
        # read decodes through the shared memo (`_decoded_account`).
        key = b"A" + address  # = account_key(address)
        cache = self._cache
        value = cache.get(key, _ABSENT)
        if type(value) is Account:
            return value
        if value is _ABSENT:
            raw = self._load(key)
            if raw is None:
                cache[key] = None
                return EMPTY_ACCOUNT
            value = cache[key] = _decoded_account(raw)
            return value
        return self.get(key, Account) or EMPTY_ACCOUNT

    def set_account(self, address: Address, account: Account) -> None:
        key = b"A" + address  # = account_key(address); `put` inlined
        self._cache[key] = account
        self._accounts.add(key)

    def validator(self, address: Address) -> ValidatorRecord | None:
        return self.get(validator_key(address), ValidatorRecord)

    def set_validator(self, address: Address, record: ValidatorRecord) -> None:
        self.put(validator_key(address), record)

    def model(self, model_id: Hash32) -> ModelRecord | None:
        return self.get(model_key(model_id), ModelRecord)

    def params(self) -> Params:
        params = self.get(KEY_PARAMS, Params)
        if params is None:
            raise LookupError("state has no parameters (not initialised from genesis)")
        return params

    def chain(self) -> ChainRecord:
        record = self.get(KEY_CHAIN, ChainRecord)
        if record is None:
            raise LookupError("state has no chain record (not initialised from genesis)")
        return record

    def supply(self) -> Supply:
        record = self.get(KEY_SUPPLY, Supply)
        if record is None:
            raise LookupError("state has no supply record (not initialised from genesis)")
        return record

    def validator_list(self, height: int) -> tuple[ValidatorEntry, ...]:
        """The set signing `height`, from the ring: valid for heights last+2-ring+1 .. last+2 of this view,
        which covers every height evidence may name (`vset_ring`)."""
        record = self.get(vset_key(height, vset_ring(self.params())), ValidatorList)
        if record is None:
            raise LookupError(f"no validator set stored for height {height}")
        return record.validators

    def model_bytes(self, record: ModelRecord) -> bytes:
        """A registered model's bytes, from its blob."""
        return self.get_blob(record.bytes_hash)

