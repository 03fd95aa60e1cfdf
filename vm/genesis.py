"""genesis.json: parse and validate it, and build the initial state (version 0) from it.

Every problem is a ConfigError with a one-line message naming the field. Amounts are JSON integers in the
token's smallest unit; addresses are bech32m (`ic1…`) or 40 hex digits; public keys 64 hex digits; model files
are paths relative to the genesis file (falling back to the repository root).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.address import parse_address
from core.errors import ConfigError, DecodeError, InvalidModel
from core.hashing import ZERO_HASH, sha256
from core.tensor import DType, Tensor
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, PublicKeyBytes, Timestamp
from core.units import DEFAULT_TOKEN, MAX_DECIMALS, Token
from core.validators import MAX_TOTAL_POWER, ValidatorEntry, ValidatorList, ValidatorSet
from vm.fork import Fork, fork_state
from vm.params import (
    BPS,
    ChainConsensusParams,
    GovParams,
    NamedInt,
    Params,
    RewardParams,
    SlashingParams,
    StakingParams,
    VMParams,
    validate_params,
)
from vm.state import (
    ACC_BYTES,
    KEY_CANDIDATES,
    KEY_CHAIN,
    KEY_PARAMS,
    KEY_SUPPLY,
    Account,
    CandidateList,
    ChainRecord,
    ModelRecord,
    StateView,
    Supply,
    ValidatorPool,
    model_key,
    model_name_key,
    pool_key,
    vset_key,
    vset_ring,
)
from vm.txs import MAX_CHUNK_BYTES, GoldenVector, ModelClass, ModelMeta, TensorSpec, compute_model_id

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True, slots=True)
class GenesisValidator:
    name: str
    public_key: PublicKeyBytes
    owner: Address
    stake: Amount
    # Commission terms (rate, max rate, max change per edit; basis points) published at genesis; None: the
    # owner publishes them with edit-validator before anyone may delegate (docs/staking.md).
    commission: tuple[int, int, int] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GenesisAccount:
    name: str
    address: Address
    balance: Amount


@dataclasses.dataclass(frozen=True, slots=True)
class GenesisModel:
    name: str
    model_id: Hash32
    owner: Address
    poi: bool
    meta: ModelMeta
    model_bytes: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time: Timestamp
    params: Params
    validators: tuple[GenesisValidator, ...]
    accounts: tuple[GenesisAccount, ...]
    models: tuple[GenesisModel, ...]
    hash: Hash32  # SHA-256 of the file's bytes
    seed_phrase: str | None = None
    fork: Fork | None = None  # an exported state to start from (vm.fork), with `validators` replacing its set

    @property
    def supply(self) -> int:
        return sum(a.balance for a in self.accounts) + sum(v.stake for v in self.validators)

    def validator_set(self) -> ValidatorSet:
        unit = self.params.staking.power_unit
        return ValidatorSet([ValidatorEntry(v.public_key, v.stake // unit) for v in self.validators])


# ------------------------------------------------------------------------------------------------ parsing


def load_genesis(path: str | Path) -> Genesis:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read genesis file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"genesis file {path} is not valid JSON: {exc}") from None
    return parse_genesis(doc, base_dir=path.parent, file_hash=sha256(raw))


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"genesis: {where} must be an object")
    if key not in obj:
        raise ConfigError(f"genesis: {where}.{key} is missing")
    return obj[key]


def _int(obj: Mapping[str, Any], key: str, where: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"genesis: {where}.{key} must be an integer in [{lo}, {hi}]")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"genesis: {where}.{key} must be a non-empty string")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = _get(obj, key, where)
    if not isinstance(value, list):
        raise ConfigError(f"genesis: {where}.{key} must be a list")
    return value


def _values(cls: type[Any], obj: Any, where: str, skip: tuple[str, ...] = ()) -> list[Any]:
    """The integer fields of params record `cls` from object `obj`, in field order; each required, none
    extra (the `skip` fields are the caller's)."""
    if not isinstance(obj, Mapping):
        raise ConfigError(f"genesis: {where} must be an object")
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    extra = sorted(set(obj) - set(names) - set(skip))
    if extra:
        raise ConfigError(f"genesis: {where} has unknown field {extra[0]!r}")
    return [_int(obj, name, where) for name in names]


def _named(obj: Any, where: str) -> tuple[NamedInt, ...]:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"genesis: {where} must be an object of integers")
    out = []
    for name in sorted(obj):
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < (1 << 63):
            raise ConfigError(f"genesis: {where}.{name} must be an integer")
        out.append(NamedInt(name, value))
    return tuple(out)


def parse_time(text: Any) -> Timestamp:
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return Timestamp(text)
    if not isinstance(text, str):
        raise ConfigError("genesis: genesis_time must be an RFC 3339 UTC time like 2026-01-01T00:00:00Z")
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"genesis: genesis_time {text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise ConfigError("genesis: genesis_time needs a time zone (use Z for UTC)")
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise ConfigError("genesis: genesis_time is before 1970")
    return Timestamp(ms)


def _token(doc: Mapping[str, Any]) -> Token:
    """The `token` section (display unit, base unit, decimals); a genesis without one gets ifc/uifc/6."""
    if "token" not in doc:
        return DEFAULT_TOKEN
    item = _get(doc, "token", "genesis")
    try:
        return Token.from_obj([_str(item, "display", "token"), _str(item, "base", "token"),
                               _int(item, "decimals", "token", 0, MAX_DECIMALS)])
    except (DecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"genesis: token: {exc}") from None


def parse_params(doc: Mapping[str, Any]) -> Params:
    try:
        consensus = ChainConsensusParams.from_obj(
            _values(ChainConsensusParams, _get(doc, "consensus", "genesis"), "consensus"))
        vm_doc = _get(doc, "vm", "genesis")
        vm_values = _values(VMParams, vm_doc, "vm", skip=("sandbox_limits", "gas_schedule"))
        vm_values.append([n.to_obj() for n in _named(_get(vm_doc, "sandbox_limits", "vm"), "vm.sandbox_limits")])
        vm_values.append([n.to_obj() for n in _named(_get(vm_doc, "gas_schedule", "vm"), "vm.gas_schedule")])
        vm = VMParams.from_obj(vm_values)
        staking = StakingParams.from_obj(_values(StakingParams, _get(doc, "staking", "genesis"), "staking"))
        rewards = RewardParams.from_obj(_values(RewardParams, _get(doc, "rewards", "genesis"), "rewards"))
        slashing = SlashingParams.from_obj(_values(SlashingParams, _get(doc, "slashing", "genesis"), "slashing"))
    except (DecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"genesis: {exc}") from None
    poi_ids = []
    for entry in _list(doc, "models", "genesis"):
        if isinstance(entry, Mapping) and entry.get("poi") is True:
            poi_ids.append(_hash(_get(entry, "id", "models[]"), "models[].id"))
    gov = _gov_params(_get(doc, "gov", "genesis"))
    try:
        return validate_chain_params(Params(consensus, vm, staking, rewards, slashing, tuple(poi_ids), gov,
                                            _token(doc)))
    except ValueError as exc:
        raise ConfigError(f"genesis: {exc}") from None


def _gov_params(obj: Any) -> GovParams:
    fields = dataclasses.fields(GovParams)
    flags = tuple(f.name for f in fields if f.type in (bool, "bool"))
    ints = iter(_values(GovParams, obj, "gov", skip=flags))
    values: list[Any] = []
    for f in fields:
        if f.name in flags:
            flag = _get(obj, f.name, "gov")
            if not isinstance(flag, bool):
                raise ConfigError(f"genesis: gov.{f.name} must be true or false")
            values.append(flag)
        else:
            values.append(next(ints))
    try:
        return GovParams.from_obj(values)
    except (DecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"genesis: gov: {exc}") from None


def validate_chain_params(params: Params) -> Params:
    """The one check of a parameter record, at genesis and for a governance change: the cross-field rules,
    every field within its wire range, the block-size cap and the sandbox's limits. ValueError says why."""
    try:
        validate_params(params)
        params = Params.decode(params.encode())  # every field within its wire range
    except ValueError:
        raise
    except Exception as exc:  # the codec's range checks raise several types
        raise ValueError(f"parameters out of range: {exc}") from None
    try:
        from vm.engine import sandbox_limits

        sandbox_limits(params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vm.sandbox_limits or vm.gas_schedule: {exc}") from None
    return params


def _hash(text: Any, where: str) -> Hash32:
    try:
        return Hash32.from_hex(text)
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"genesis: {where} must be 64 hex digits") from None


def _address(text: Any, where: str) -> Address:
    if not isinstance(text, str):
        raise ConfigError(f"genesis: {where} must be an address string")
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ConfigError(f"genesis: {where}: {exc}") from None


def _resolve(base_dir: Path, rel: str, where: str) -> Path:
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ConfigError(f"genesis: {where} must be a relative path inside the repository")
    for root in (base_dir, REPO_ROOT):
        candidate = root / rel
        if candidate.is_file():
            return candidate
    raise ConfigError(f"genesis: {where} {rel!r} not found next to the genesis file or in the repository")


def _tensor_specs(items: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError(f"genesis: {where} must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        try:
            shape = _get(item, "shape", w)
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                      and 0 <= d < 1 << 32 for d in shape):
                raise ConfigError(f"genesis: {w}.shape must be a list of non-negative integers")
            out.append(TensorSpec(_str(item, "name", w), DType.from_name(_str(item, "dtype", w)), tuple(shape)))
        except ValueError as exc:
            raise ConfigError(f"genesis: {w}: {exc}") from None
    return tuple(out)


def _golden(path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
            where: str) -> tuple[GoldenVector, ...]:
    from vm.sandbox.golden import decode_golden

    try:
        golden = decode_golden(path.read_bytes())
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"genesis: {where}: cannot read golden vectors: {exc}") from None
    vectors = []
    for case in golden.cases:
        try:
            ins = tuple(Tensor.from_numpy(case.inputs[s.name]) for s in inputs)
            outs = tuple(Tensor.from_numpy(case.outputs[s.name]) for s in outputs)
        except KeyError as exc:
            raise ConfigError(f"genesis: {where}: golden vectors lack tensor {exc}") from None
        vectors.append(GoldenVector(ins, outs))
    return tuple(vectors)


def _model(entry: Any, i: int, base_dir: Path) -> GenesisModel:
    where = f"models[{i}]"
    name = _str(entry, "name", where)
    cls_text = _str(entry, "class", where)
    if cls_text not in ("exact", "tolerant"):
        raise ConfigError(f"genesis: {where}.class must be 'exact' or 'tolerant'")
    inputs = _tensor_specs(_get(entry, "inputs", where), f"{where}.inputs")
    outputs = _tensor_specs(_get(entry, "outputs", where), f"{where}.outputs")
    model_bytes = _resolve(base_dir, _get(entry, "file", where), f"{where}.file").read_bytes()
    golden = _golden(_resolve(base_dir, _get(entry, "golden", where), f"{where}.golden"), inputs, outputs, where)
    try:
        meta = ModelMeta(name, inputs, outputs, ModelClass.EXACT if cls_text == "exact" else ModelClass.TOLERANT,
                         _int(entry, "grid_k", where, 0, 255), _int(entry, "t_abs", where, 0, (1 << 32) - 1),
                         _int(entry, "t_rel_ppm", where, 0, (1 << 32) - 1),
                         Amount(_int(entry, "fee_per_call", where)), golden)
        meta = ModelMeta.decode(meta.encode())
    except ValueError as exc:
        raise ConfigError(f"genesis: {where}: {exc}") from None
    except Exception as exc:  # the codec's range checks raise several types; genesis is the user's file
        raise ConfigError(f"genesis: {where}: metadata does not encode: {exc}") from None
    model_id = compute_model_id(sha256(model_bytes), meta)
    declared = _hash(_get(entry, "id", where), f"{where}.id")
    if declared != model_id:
        raise ConfigError(f"genesis: {where}.id is {declared.hex()}, but file and metadata give {model_id.hex()}")
    poi = entry.get("poi", False)
    if not isinstance(poi, bool):
        raise ConfigError(f"genesis: {where}.poi must be true or false")
    return GenesisModel(name, model_id, _address(_get(entry, "owner", where), f"{where}.owner"), poi, meta,
                        model_bytes)


def _fork(doc: Mapping[str, Any]) -> Fork | None:
    """The exported state a forked genesis starts from (`exported` and `state`, node.export's format)."""
    if "state" not in doc:
        return None
    try:
        height = _int(_get(doc, "exported", "genesis"), "height", "exported")
        pairs = tuple((bytes.fromhex(k), bytes.fromhex(v)) for rows in _get(doc, "state", "genesis").values()
                      for k, v in rows)
        blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in doc.get("blobs", {}).items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"genesis: state: not an exported state ({exc})") from None
    return Fork(height, pairs, blobs)


def _fork_params(fork: Fork) -> Params:
    try:
        params = fork.params()
    except (DecodeError, ValueError) as exc:
        raise ConfigError(f"genesis: state: {exc}") from None
    return params


def parse_genesis(doc: Any, *, base_dir: Path = REPO_ROOT, file_hash: Hash32 = ZERO_HASH) -> Genesis:
    if not isinstance(doc, Mapping):
        raise ConfigError("genesis: the file must hold a JSON object")
    chain_id = _str(doc, "chain_id", "genesis")
    if len(chain_id.encode()) > 64 or not chain_id.isprintable():
        raise ConfigError("genesis: chain_id must be at most 64 printable bytes")
    genesis_time = parse_time(_get(doc, "genesis_time", "genesis"))
    fork = _fork(doc)
    params = parse_params(doc) if fork is None else _fork_params(fork)
    validators = []
    for i, item in enumerate(_list(doc, "validators", "genesis")):
        where = f"validators[{i}]"
        try:
            pk = PublicKeyBytes.from_hex(_str(item, "public_key", where))
        except ValueError:
            raise ConfigError(f"genesis: {where}.public_key must be 64 hex digits") from None
        stake = _int(item, "stake", where)
        if stake < params.staking.min_validator_stake:
            raise ConfigError(f"genesis: {where}.stake is below staking.min_validator_stake")
        validators.append(GenesisValidator(item.get("name", where), pk, _address(_get(item, "owner", where),
                                                                                  f"{where}.owner"), Amount(stake),
                                           _commission(item, where)))
    if not validators:
        raise ConfigError("genesis: at least one validator is required")
    if len({v.public_key for v in validators}) != len(validators):
        raise ConfigError("genesis: a validator is listed twice")
    accounts = []
    for i, item in enumerate(_list(doc, "accounts", "genesis") if fork is None else []):  # a fork has its own
        where = f"accounts[{i}]"
        accounts.append(GenesisAccount(item.get("name", where) if isinstance(item, Mapping) else where,
                                       _address(_get(item, "address", where), f"{where}.address"),
                                       Amount(_int(item, "balance", where))))
    if len({a.address for a in accounts}) != len(accounts):
        raise ConfigError("genesis: an account is listed twice")
    models = tuple(_model(entry, i, base_dir) for i, entry in enumerate(_list(doc, "models", "genesis"))
                   if fork is None)
    if len({m.model_id for m in models}) != len(models):
        raise ConfigError("genesis: a model is listed twice")
    if len({m.meta.name for m in models}) != len(models):
        raise ConfigError("genesis: two models have the same name (names are unique per chain)")
    for m in models:
        if m.poi:
            _validate_poi_model(m)
    keys = doc.get("keys")
    seed_phrase = keys.get("seed_phrase") if isinstance(keys, Mapping) else None
    genesis = Genesis(chain_id, genesis_time, params, tuple(validators), tuple(accounts), models, file_hash,
                      seed_phrase if isinstance(seed_phrase, str) else None, fork)
    supply = genesis.supply
    if supply >= 1 << 62:
        raise ConfigError("genesis: total supply must stay below 2^62")
    try:
        vset = genesis.validator_set()
    except ValueError as exc:
        raise ConfigError(f"genesis: validators: {exc}") from None
    if vset.total_power > MAX_TOTAL_POWER or supply // params.staking.power_unit > MAX_TOTAL_POWER:
        raise ConfigError("genesis: staking.power_unit is too small for the supply")
    return genesis


def _validate_poi_model(m: GenesisModel) -> None:
    problem = poi_model_problem(m.meta)
    if problem is not None:
        raise ConfigError(f"genesis: PoI model {m.name} {problem}")


def poi_model_problem(meta: ModelMeta) -> str | None:
    """Why a model cannot serve PoI challenges (None: it can): exact class, integer inputs, one integer
    output of at least 64 bits (high entropy). Genesis and a governance PoI-model change both ask this."""
    if meta.model_class is not ModelClass.EXACT:
        return "must be of class exact"
    if any(t.dtype.is_float for t in meta.inputs):
        return "must take integer inputs"
    if len(meta.outputs) != 1:
        return "must have exactly one output"
    out = meta.outputs[0]
    if out.dtype.is_float or out.dtype == DType.BOOL or math.prod(out.shape) * out.dtype.itemsize < 8:
        return "must output an integer tensor of at least 64 bits"
    return None


# ------------------------------------------------------------------------------------------------ state


def _commission(item: Mapping[str, Any], where: str) -> tuple[int, int, int] | None:
    doc = item.get("commission")
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"genesis: {where}.commission must be an object")
    where = f"{where}.commission"
    terms = (_int(doc, "rate_bps", where, hi=BPS), _int(doc, "max_bps", where, hi=BPS),
             _int(doc, "max_change_bps", where, hi=BPS))
    if terms[0] > terms[1]:
        raise ConfigError(f"genesis: {where}.rate_bps must not exceed max_bps")
    return terms


def genesis_state(genesis: Genesis, model_gas: Callable[[GenesisModel], tuple[int, int]]) -> StateView:
    """The initial state as a view over the empty map; `model_gas` prices each genesis model as (gas per
    call, load gas) (the sandbox checker, which also refuses a model that breaks the registration rules)."""
    if genesis.fork is not None:
        try:
            return fork_state(genesis.fork, [(v.public_key, v.owner, int(v.stake)) for v in genesis.validators],
                              genesis.genesis_time)
        except ValueError as exc:
            raise ConfigError(f"genesis: state: {exc}") from None
    view = StateView(None, None)
    params = genesis.params
    view.put(KEY_PARAMS, params)
    for account in genesis.accounts:
        view.set_account(account.address, Account(account.balance, Nonce(0)))
    from vm.execute import new_validator

    for v in genesis.validators:
        address = Address(ValidatorEntry(v.public_key, 1).address)
        view.set_validator(address, new_validator(v.public_key, v.owner).replace(stake=v.stake))
        if v.commission is not None:
            view.put(pool_key(address), ValidatorPool(v.stake, v.stake, *v.commission, Height(0), Amount(0),
                                                      bytes(ACC_BYTES)))
    view.put(KEY_CANDIDATES, CandidateList(tuple(sorted(
        Address(ValidatorEntry(v.public_key, 1).address) for v in genesis.validators))))
    entries = genesis.validator_set().entries
    for height in (1, 2):
        view.put(vset_key(height, vset_ring(params)), ValidatorList(entries))
    for m in genesis.models:
        try:
            gas, gas_load = model_gas(m)
        except InvalidModel as exc:
            raise ConfigError(f"genesis: model {m.name} breaks a registration rule: {exc}") from None
        view.put_blob(m.model_bytes)
        n_chunks = -(-len(m.model_bytes) // MAX_CHUNK_BYTES)  # as an upload in full chunks would have it
        view.put(model_key(m.model_id), ModelRecord(m.owner, m.meta, sha256(m.model_bytes), len(m.model_bytes),
                                                    n_chunks, Gas(gas), Height(0), Gas(gas_load)))
        view.put_raw(model_name_key(m.meta.name), m.model_id)
    view.put(KEY_CHAIN, ChainRecord(Height(0), genesis.genesis_time, ZERO_HASH, ZERO_HASH))
    view.put(KEY_SUPPLY, Supply(Amount(genesis.supply), Amount(0), Amount(0)))
    return view


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
