"""The initial state of a chain forked from an exported state (`inferchain export`, then
`inferchain devnet up --from-genesis FILE`; Cosmos's in-place testnet).

The fork keeps every account, model, upload, unbonding entry, piece of evidence, delegation, redelegation and
open proposal of the exported state and
starts again at height 0 under its own chain id, with its own validators (the genesis file's `validators`)
replacing the exported set:

- heights recorded in the state count from the fork: a record due at old height h is due at h - H (H = the
  exported height), at 1 at the earliest (unbonding and redelegation maturities, upload expiries, proposals'
  deposit and voting ends, a scheduled upgrade), or at 0 (registration, evidence, commission-change, lock
  applied-upgrade and model-retirement heights); governance's closing events are old history and are dropped;
- the exported validators stay in state (their stake stays counted in the supply) but leave the candidate
  list, so none is in a set again unless its owner stakes it back; a new validator whose key already has a
  record takes it over with the new stake, unjailed; the supply record follows the stake it adds or drops;
- the validator-set ring, the pending PoI commitments and the chain record start afresh, as at genesis;
- a pending deferred registration keeps the blocks it has left to its activation (vm/deferred.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.hashing import ZERO_HASH, sha256
from core.types import Address, Amount, Hash32, Height, PublicKeyBytes, Timestamp
from core.validators import ValidatorEntry, ValidatorList
from vm.deferred import KEY_DEFERRED_TAIL, PENDING, DeferredModel, DeferredTail, activation_key
from vm.gov.store import KEY_APPLIED_UPGRADES, KEY_UPGRADE_PLAN, queue_key
from vm.gov.types import AppliedUpgrades, Proposal, ProposalQueue, UpgradePlan
from vm.params import Params
from vm.retire import PurgeList, RetiredModel, purge_key
from vm.state import (
    KEY_CANDIDATES,
    KEY_CHAIN,
    KEY_PARAMS,
    KEY_POI,
    KEY_SUPPLY,
    CandidateList,
    ChainRecord,
    Delegation,
    ExpiryList,
    ModelRecord,
    RedelegationEntry,
    RedelegationQueue,
    StateView,
    Supply,
    UnbondingEntry,
    UnbondingQueue,
    Upload,
    ValidatorPool,
    ValidatorRecord,
    expiry_key,
    redelegation_key,
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


def _fork_gov(view: StateView, key: bytes, value: bytes, at: int) -> None:
    """Governance records with their heights counted from the fork: open proposals keep the blocks they have
    left (their deposit and voting ends, and the queues keyed by those ends, move down by the exported
    height); closing events are history of the old chain and start afresh, like the chain record."""
    if key == KEY_UPGRADE_PLAN:
        plan = UpgradePlan.decode(value)
        view.put(key, plan.replace(height=_due(int(plan.height), at, 1)))
    elif key == KEY_APPLIED_UPGRADES:
        applied = AppliedUpgrades.decode(value)
        view.put(key, applied.replace(entries=tuple(u.replace(height=_due(int(u.height), at, 0))
                                                    for u in applied.entries)))
    elif key[:2] == b"Gp":
        p = Proposal.decode(value)
        view.put(key, p.replace(submit_height=_due(int(p.submit_height), at, 0),
                                deposit_end=_due(int(p.deposit_end), at, 1),
                                voting_start=_due(int(p.voting_start), at, 0) if p.voting_start else p.voting_start,
                                voting_end=_due(int(p.voting_end), at, 1) if p.voting_end else p.voting_end))
    elif key[:2] == b"Gq":
        kind, height = key[2:3], int.from_bytes(key[3:], "big")
        shifted = queue_key(kind, int(_due(height, at, 1)))
        queued = view.get(shifted, ProposalQueue)
        ids = ProposalQueue.decode(value).proposal_ids
        view.put(shifted, ProposalQueue((*queued.proposal_ids, *ids) if queued is not None else ids))
    elif key[:2] == b"Ge":
        return
    else:
        view.put_raw(key, value)


def _fork_deferred(view: StateView, fork: Fork, key: bytes, value: bytes, at: int) -> None:
    """Deferred registrations (vm/deferred.py) with their heights counted from the fork: a pending one keeps
    the blocks it has left to its activation (its slot and the queue's tail move down with it) and names its
    model's blob; a decided one keeps its verdict."""
    if key == KEY_DEFERRED_TAIL:
        view.put(key, DeferredTail(_due(int(DeferredTail.decode(value).height), at, 1)))
    elif key[:1] == b"Z":
        view.put_raw(activation_key(_due(int.from_bytes(key[1:], "big"), at, 1)), value)
    else:
        record = DeferredModel.decode(value)
        view.put(key, record.replace(queued_at=_due(int(record.queued_at), at, 0),
                                     activates_at=_due(int(record.activates_at), at, 1)))
        if record.status == PENDING:
            view.put_blob(fork.blob(record.header.bytes_hash))


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
    redelegating: dict[int, list[RedelegationEntry]] = {}
    purging: dict[int, list[Hash32]] = {}  # retired models' purges (vm/retire.py)
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
        elif tag == b"R":  # redelegations mature (and stop being slashable) as many blocks on
            due = _due(int.from_bytes(key[1:], "big"), at, 1)
            redelegating.setdefault(due, []).extend(RedelegationQueue.decode(value).entries)
        elif tag == b"D":
            d = Delegation.decode(value)
            view.put(key, d.replace(locked_until=_due(int(d.locked_until), at, 0)))
        elif tag == b"P":
            pool = ValidatorPool.decode(value)
            view.put(key, pool.replace(commission_changed_at=_due(int(pool.commission_changed_at), at, 0)))
        elif tag == b"G" or key in (KEY_UPGRADE_PLAN, KEY_APPLIED_UPGRADES):
            _fork_gov(view, key, value, at)
        elif tag == b"T":  # a retired model's tombstone (vm/retire.py): its height counted from the fork
            retired = RetiredModel.decode(value)
            view.put(key, retired.replace(retired_at=_due(int(retired.retired_at), at, 0)))
        elif tag == b"K":  # a retired model's record kept for evidence: it names its blob
            view.put_raw(key, value)
            view.put_blob(fork.blob(ModelRecord.decode(value).bytes_hash))
        elif tag == b"J":
            purge_at = int(_due(int.from_bytes(key[1:], "big"), at, 1))
            purging.setdefault(purge_at, []).extend(PurgeList.decode(value).model_ids)
        elif tag in (b"Y", b"Z") or key == KEY_DEFERRED_TAIL:
            _fork_deferred(view, fork, key, value, at)
        else:
            view.put_raw(key, value)
    for release, queued in unbonding.items():
        view.put(unbonding_key(release), UnbondingQueue(tuple(queued)))
    for expiry, ids in expiring.items():
        view.put(expiry_key(expiry), ExpiryList(tuple(ids)))
    for matures, moved in redelegating.items():
        view.put(redelegation_key(matures), RedelegationQueue(tuple(moved)))
    for purge_at, ids in purging.items():
        view.put(purge_key(purge_at), PurgeList(tuple(ids)))
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
