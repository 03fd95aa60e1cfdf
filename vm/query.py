"""Read helpers for the RPC and CLI: a record at a committed version with its state proof.

Each answer carries the raw value bytes, the proof and the root it verifies against, so a client can check
it with `core.state.verify_proof(root, key, raw, proof)` (or `Proven.verify()`) without trusting the node;
the root is the header's `state_root` of block `version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from core.codec import Wire
from core.state import AuthenticatedMap, StateProof, verify_proof
from core.types import Address, Hash32
from vm.deferred import DeferredModel, deferred_key
from vm.params import Params
from vm.retire import RetiredModel, retired_key
from vm.state import (
    EMPTY_ACCOUNT,
    KEY_PARAMS,
    KEY_SUPPLY,
    Account,
    ModelRecord,
    Supply,
    ValidatorRecord,
    account_key,
    model_key,
    validator_key,
)

W = TypeVar("W", bound=Wire)


@dataclass(frozen=True, slots=True)
class Proven(Generic[W]):
    version: int
    root: Hash32
    key: bytes
    raw: bytes | None  # None: the key is absent (the proof is an exclusion proof)
    value: W | None
    proof: StateProof

    def verify(self) -> bool:
        return verify_proof(self.root, self.key, self.raw, self.proof)


def _latest(state_map: AuthenticatedMap, version: int | None) -> int:
    if version is not None:
        return version
    latest = state_map.latest_version()
    if latest is None:
        raise LookupError("no committed state")
    return latest


def query(state_map: AuthenticatedMap, key: bytes, cls: type[W], version: int | None = None) -> Proven[W]:
    v = _latest(state_map, version)
    raw = state_map.get(key, v)
    value = None if raw is None else cls.decode(raw)
    return Proven(v, state_map.root(v), key, raw, value, state_map.prove(key, v))


def query_account(state_map: AuthenticatedMap, address: Address, version: int | None = None) -> Proven[Account]:
    """An absent account reads as balance 0, nonce 0 (its proof is an exclusion proof)."""
    return query(state_map, account_key(address), Account, version)


def account_or_empty(proven: Proven[Account]) -> Account:
    return proven.value or EMPTY_ACCOUNT


def query_validator(state_map: AuthenticatedMap, address: Address,
                    version: int | None = None) -> Proven[ValidatorRecord]:
    return query(state_map, validator_key(address), ValidatorRecord, version)


def query_model(state_map: AuthenticatedMap, model_id: Hash32, version: int | None = None) -> Proven[ModelRecord]:
    return query(state_map, model_key(model_id), ModelRecord, version)


def query_deferred(state_map: AuthenticatedMap, model_id: Hash32,
                   version: int | None = None) -> Proven[DeferredModel]:
    """A deferred registration's record (vm/deferred.py): pending with its activation height, or its verdict."""
    return query(state_map, deferred_key(model_id), DeferredModel, version)


def query_retired(state_map: AuthenticatedMap, model_id: Hash32,
                  version: int | None = None) -> Proven[RetiredModel]:
    """A retired model's tombstone (vm/retire.py): its owner, the height it was retired at, and by whom."""
    return query(state_map, retired_key(model_id), RetiredModel, version)


def query_params(state_map: AuthenticatedMap, version: int | None = None) -> Proven[Params]:
    return query(state_map, KEY_PARAMS, Params, version)


def query_supply(state_map: AuthenticatedMap, version: int | None = None) -> Proven[Supply]:
    return query(state_map, KEY_SUPPLY, Supply, version)


@dataclass(frozen=True, slots=True)
class PoiScoreView:
    """A validator's proof-of-inference score (from its state record)."""

    correct: int
    wrong: int
    missed: int
    window_misses: int  # misses among the last `miss_window` scored heights
    jailed: bool
    jailed_until: int
    tombstoned: bool
    rewards: int
    slashed: int


def poi_score(record: ValidatorRecord) -> PoiScoreView:
    return PoiScoreView(int(record.poi_correct), int(record.poi_wrong), int(record.poi_missed),
                        int(record.miss_bits).bit_count(), record.jailed, int(record.jailed_until),
                        record.tombstoned, int(record.rewards), int(record.slashed))
