"""The initial state of a chain forked from an exported state (`inferchain export`, then
`inferchain devnet up --from-genesis FILE`; Cosmos's in-place testnet).

The fork keeps every account, model, upload, unbonding entry and piece of evidence of the exported state and
starts again at height 0 under its own chain id, with its own validators (the genesis file's `validators`)
replacing the exported set:

- heights recorded in the state count from the fork: a record due at old height h is due at h - H (H = the
  exported height), at 1 at the earliest (unbonding releases, upload expiries), or at 0 (registration and
  evidence heights);
- the exported validators stay in state (their stake stays counted in the supply) but leave the candidate
  list, so none is in a set again unless its owner stakes it back; a new validator whose key already has a
  record takes it over with the new stake, unjailed; the supply record follows the stake it adds or drops;
- the validator-set ring, the pending PoI commitments and the chain record start afresh, as at genesis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.hashing import ZERO_HASH, sha256
from core.types import Address, Amount, Hash32, Height, PublicKeyBytes, Timestamp
from core.validators import ValidatorEntry, ValidatorList
from vm.params import Params
from vm.state import (
    KEY_CANDIDATES,
    KEY_CHAIN,
    KEY_PARAMS,
    KEY_POI,
    KEY_SUPPLY,
    CandidateList,
    ChainRecord,
    ExpiryList,
    ModelRecord,
    StateView,
    Supply,
    UnbondingEntry,
    UnbondingQueue,
    Upload,
    ValidatorRecord,
    expiry_key,
    unbonding_key,
    vset_key,
    vset_ring,
)


@dataclass(frozen=True, slots=True)
class Fork:
    """An exported state to start from: its height and every (key, value) pair of it."""

    height: int
    pairs: tuple[tuple[bytes, bytes], ...]
    # The model bytes the state names by hash (the export's `blobs`).
    blobs: Mapping[bytes, bytes] = dataclasses.field(default_factory=dict)

    def blob(self, digest: Hash32) -> bytes:
        data = self.blobs.get(bytes(digest))
        if data is None or sha256(data) != digest:
            raise ValueError(f"the exported file lacks the bytes of blob {digest.hex()[:16]} (export with them)")
        return data

    def params(self) -> Params:
        raw = dict(self.pairs).get(KEY_PARAMS)
        if raw is None:
            raise ValueError("the exported state has no chain parameters")
        return Params.decode(raw)


def _due(height: int, at: int, earliest: int) -> Height:
    return Height(max(earliest, height - at))


def fork_state(fork: Fork, validators: Iterable[tuple[PublicKeyBytes, Address, int]], genesis_time: Timestamp
               ) -> StateView:
    """The forked chain's state at height 0; `validators` as (public key, owner, stake)."""
    from vm.execute import new_validator

    at = fork.height
    view = StateView(None, None)
    params = fork.params()
    state: Mapping[bytes, bytes] = dict(fork.pairs)
    records: dict[Address, ValidatorRecord] = {}
    unbonding: dict[int, list[UnbondingEntry]] = {}
    expiring: dict[int, list[Hash32]] = {}
    for key, value in state.items():
        tag = key[:1]
        if key in (KEY_POI, KEY_CANDIDATES, KEY_CHAIN) or tag == b"S":
            continue  # started afresh below
        if tag == b"V":
            records[Address(key[1:])] = ValidatorRecord.decode(value)
        elif tag == b"Q":
            due = _due(int.from_bytes(key[1:], "big"), at, 1)
            unbonding.setdefault(due, []).extend(UnbondingQueue.decode(value).entries)
        elif tag == b"X":
            due = _due(int.from_bytes(key[1:], "big"), at, 1)
            expiring.setdefault(due, []).extend(ExpiryList.decode(value).model_ids)
        elif tag == b"U":
            upload = Upload.decode(value)
            view.put(key, upload.replace(expires_at=_due(int(upload.expires_at), at, 1)))
            for digest in upload.landed():  # one reference per record that names a blob, as on the old chain
                view.put_blob(fork.blob(digest))
        elif tag == b"M":
            model = ModelRecord.decode(value)
            view.put(key, model.replace(registered_at=_due(int(model.registered_at), at, 0)))
            view.put_blob(fork.blob(model.bytes_hash))
        elif tag == b"E":
            view.put_raw(key, int(_due(int.from_bytes(value, "big"), at, 0)).to_bytes(8, "big"))
        else:
            view.put_raw(key, value)
    for release, queued in unbonding.items():
        view.put(unbonding_key(release), UnbondingQueue(tuple(queued)))
    for expiry, ids in expiring.items():
        view.put(expiry_key(expiry), ExpiryList(tuple(ids)))
    supply = Supply.decode(state[KEY_SUPPLY])
    added = dropped = 0
    entries: list[ValidatorEntry] = []
    for public_key, owner, stake in validators:
        entry = ValidatorEntry(public_key, stake // params.staking.power_unit)
        address = Address(entry.address)
        old = records.get(address)
        if old is not None:
            dropped += int(old.stake)
            record = old.replace(stake=Amount(stake), jailed=False, jailed_until=Height(0), tombstoned=False,
                                 miss_bits=0)
        else:
            record = new_validator(public_key, owner).replace(stake=Amount(stake))
        added += stake
        records[address] = record
        entries.append(entry)
    for address, record in records.items():
        view.set_validator(address, record)
    if added >= dropped:
        supply = supply.replace(genesis=Amount(supply.genesis + added - dropped))
    else:
        supply = supply.replace(burned=Amount(supply.burned + dropped - added))
    view.put(KEY_SUPPLY, supply)
    chosen = tuple(sorted(entries, key=lambda e: e.address))
    view.put(KEY_CANDIDATES, CandidateList(tuple(sorted(Address(e.address) for e in chosen))))
    for height in (1, 2):
        view.put(vset_key(height, vset_ring(params)), ValidatorList(chosen))
    view.put(KEY_CHAIN, ChainRecord(Height(0), genesis_time, ZERO_HASH, ZERO_HASH))
    return view
