"""`inferchain export`: a node's state at one height, written as a genesis-shaped JSON file (Cosmos `export`).

Every key of the state at that height is read (`AuthenticatedMap.items`), sorted into its table by the key's
prefix and decoded as that table's record, so the file holds all of the state and nothing undecodable. A key
whose prefix no table here claims stops the export with its prefix named: state that the exporter does not
know would be silently lost from every fork made from the file, so a new kind of record must add its table
below (tests/node/test_export.py walks a chain with every kind of record and compares roots).

The file keeps the node's genesis sections (chain id, token, parameters) and adds `exported` (height, state
root, block time) and `state` (per table, `[key hex, value hex]` pairs). `state_root_of` recomputes the root
from the pairs, so anyone can check a file against the header of that height.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.blobs import BlobReader
from core.codec import Wire
from core.errors import LocalError, StorageError
from core.state import AuthenticatedMap
from core.store import KVStore, MemoryStore
from core.types import Hash32
from core.validators import ValidatorList
from vm.deferred import KEY_DEFERRED_TAIL, PENDING, DeferredModel, DeferredTail
from vm.gov.store import KEY_APPLIED_UPGRADES, KEY_NEXT_PROPOSAL, KEY_UPGRADE_PLAN
from vm.gov.types import (
    AppliedUpgrades,
    DepositList,
    GovEvents,
    Proposal,
    ProposalQueue,
    UpgradePlan,
    VoteList,
)
from vm.params import Params
from vm.resident import KEY_RESIDENT, ResidentSet
from vm.retire import ModelDeposit, PurgeList, RetiredModel
from vm.state import (
    KEY_CANDIDATES,
    KEY_CHAIN,
    KEY_PARAMS,
    KEY_POI,
    KEY_SUPPLY,
    Account,
    CandidateList,
    ChainRecord,
    Delegation,
    DelegatorIndex,
    ExpiryList,
    ModelRecord,
    PendingPoi,
    RedelegationQueue,
    Supply,
    UnbondingQueue,
    Upload,
    ValidatorPool,
    ValidatorRecord,
)

FORMAT = "inferchain-export/1"


class ExportError(LocalError):
    """The state cannot be exported as it is (an unknown key prefix, a record that does not decode, no such
    height)."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    check: Callable[[bytes, bytes], None]  # raises on a key or value that is not this table's


def _record(cls: type[Wire], key_len: int | None = None) -> Callable[[bytes, bytes], None]:
    def check(key: bytes, value: bytes) -> None:
        if key_len is not None and len(key) != key_len:
            raise ValueError(f"key of {len(key)} bytes, expected {key_len}")
        cls.decode(value)
    return check


def _raw(key_len: int | None, value_len: int | None = None) -> Callable[[bytes, bytes], None]:
    def check(key: bytes, value: bytes) -> None:
        if key_len is not None and len(key) != key_len:
            raise ValueError(f"key of {len(key)} bytes, expected {key_len}")
        if value_len is not None and len(value) != value_len:
            raise ValueError(f"value of {len(value)} bytes, expected {value_len}")
    return check


def _model_name(key: bytes, value: bytes) -> None:
    key[1:].decode()
    if len(value) != 32:
        raise ValueError("a model name must map to a 32-byte model id")


_GOV_RECORDS: dict[bytes, type[Wire]] = {b"p": Proposal, b"d": DepositList, b"v": VoteList, b"e": GovEvents,
                                         b"q": ProposalQueue}


def _governance(key: bytes, value: bytes) -> None:
    cls = _GOV_RECORDS.get(key[1:2])
    if cls is None:
        raise ValueError(f"unknown governance record {key[1:2]!r}")
    cls.decode(value)


# Singletons by exact key; tables by their one-byte prefix (vm.state's key layout).
SINGLETONS: dict[bytes, Table] = {
    KEY_CHAIN: Table("chain", _record(ChainRecord)),
    KEY_SUPPLY: Table("supply", _record(Supply)),
    KEY_PARAMS: Table("params", _record(Params)),
    KEY_POI: Table("pending_poi", _record(PendingPoi)),
    KEY_CANDIDATES: Table("candidates", _record(CandidateList)),
    KEY_NEXT_PROPOSAL: Table("gov_next_proposal", _raw(None, 8)),
    KEY_UPGRADE_PLAN: Table("upgrade_plan", _record(UpgradePlan)),
    KEY_APPLIED_UPGRADES: Table("applied_upgrades", _record(AppliedUpgrades)),
    KEY_DEFERRED_TAIL: Table("deferred_tail", _record(DeferredTail)),
    KEY_RESIDENT: Table("resident_set", _record(ResidentSet)),
}
TABLES: dict[bytes, Table] = {
    b"A": Table("accounts", _record(Account, 21)),
    b"V": Table("validators", _record(ValidatorRecord, 21)),
    b"Q": Table("unbonding", _record(UnbondingQueue, 9)),
    b"U": Table("uploads", _record(Upload, 33)),
    b"M": Table("models", _record(ModelRecord, 33)),
    b"N": Table("model_names", _model_name),
    b"X": Table("expiries", _record(ExpiryList, 9)),
    b"S": Table("validator_sets", _record(ValidatorList, 5)),
    b"E": Table("evidence", _raw(33, 8)),
    # Delegation (vm/delegation.py, docs/staking.md).
    b"P": Table("validator_pools", _record(ValidatorPool, 21)),
    b"D": Table("delegations", _record(Delegation, 41)),
    b"I": Table("delegator_index", _record(DelegatorIndex, 21)),
    b"R": Table("redelegations", _record(RedelegationQueue, 9)),
    # Governance (vm/gov/store.py, docs/governance.md): one prefix, records told apart by the second byte.
    b"G": Table("governance", _governance),
    # Deferred registrations (vm/deferred.py): their records and activation slots.
    b"Y": Table("deferred_models", _record(DeferredModel, 33)),
    b"Z": Table("activations", _raw(9, 32)),
    # Retiring models (vm/retire.py): resident models' deposits, retired ids' tombstones.
    b"L": Table("model_deposits", _record(ModelDeposit, 33)),
    b"T": Table("retired_models", _record(RetiredModel, 33)),
    b"K": Table("retired_kept_records", _record(ModelRecord, 33)),
    b"J": Table("retired_purges", _record(PurgeList, 9)),
}


def table_of(key: bytes) -> Table:
    table = SINGLETONS.get(key) or TABLES.get(key[:1])
    if table is None:
        raise ExportError(f"unknown state key prefix {key[:1].hex()} (key {key[:16].hex()}…): teach node/export.py "
                          "this table before exporting, or its records would be lost")
    return table


def classify(items: Iterable[tuple[bytes, bytes]]) -> dict[str, list[list[str]]]:
    """The state's pairs by table name, each checked as that table's record; sorted for a stable file."""
    out: dict[str, list[list[str]]] = {}
    for key, value in items:
        table = table_of(key)
        try:
            table.check(key, value)
        except Exception as exc:  # the codec's decode errors come in several types; each is a bad record
            raise ExportError(f"state key {key[:16].hex()}… ({table.name}) does not decode: {exc}") from None
        out.setdefault(table.name, []).append([key.hex(), value.hex()])
    return {name: sorted(rows) for name, rows in sorted(out.items())}


def state_pairs(doc: dict[str, Any]) -> Iterator[tuple[bytes, bytes]]:
    for rows in doc["state"].values():
        for key_hex, value_hex in rows:
            yield bytes.fromhex(key_hex), bytes.fromhex(value_hex)


def state_root_of(pairs: Iterable[tuple[bytes, bytes]]) -> Hash32:
    """The authenticated map's root over exactly these pairs (the same tree the node keeps)."""
    fresh = AuthenticatedMap(MemoryStore())
    update = fresh.compute_update(None, 0, dict(pairs))
    return update.root


def named_blob_digests(tables: dict[str, list[list[str]]]) -> list[Hash32]:
    """The blobs the exported records name: each model's bytes (retired ones' kept for evidence too), each
    pending registration's and each open upload's landed chunks."""
    digests = {ModelRecord.decode(bytes.fromhex(v)).bytes_hash
               for table in ("models", "retired_kept_records") for _, v in tables.get(table, [])}
    for _, v in tables.get("uploads", []):
        digests.update(Upload.decode(bytes.fromhex(v)).landed())
    for _, v in tables.get("deferred_models", []):  # a pending registration names its model's blob
        record = DeferredModel.decode(bytes.fromhex(v))
        if record.status == PENDING:
            digests.add(record.header.bytes_hash)
    return sorted(digests)


def export_state(store: KVStore, genesis_doc: dict[str, Any], height: int | None = None,
                 blobs: BlobReader | None = None) -> dict[str, Any]:
    """The genesis-shaped export of the state in `store` at `height` (default: the latest). With `blobs`, the
    file also carries the model bytes the state names by hash (`blobs`: hex digest -> hex bytes), so a fork
    of it is complete; without, it holds the state alone."""
    state_map = AuthenticatedMap(store)
    latest = state_map.latest_version()
    if latest is None:
        raise ExportError("the database holds no state")
    version = latest if height is None else height
    if version > latest or not state_map.has_version(version):
        raise ExportError(f"no state at height {version} (the node has heights up to {latest}; older ones may "
                          "be pruned)")
    tables = classify(state_map.items(version))
    root = state_map.root(version)
    chain = ChainRecord.decode(bytes.fromhex(next(v for k, v in tables["chain"] if bytes.fromhex(k) == KEY_CHAIN)))
    doc = {k: v for k, v in genesis_doc.items() if k not in ("exported", "state")}
    doc["exported"] = {"format": FORMAT, "chain_id": genesis_doc.get("chain_id"), "height": version,
                       "state_root": root.hex(), "block_time_ms": int(chain.time)}
    doc["state"] = tables
    if blobs is not None:
        carried: dict[str, str] = {}
        for digest in named_blob_digests(tables):
            data = blobs.get_blob(digest)
            if data is None:
                raise ExportError(f"blob {digest.hex()[:16]} named by the state is missing from this node")
            carried[digest.hex()] = data.hex()
        doc["blobs"] = carried
    return doc


def export_home(home: Path, height: int | None) -> dict[str, Any]:
    """Export from a stopped node's home (its LevelDB is locked while the node runs)."""
    from node.home import NodeHome
    from node.leveldb import LevelDBStore

    node_home = NodeHome.at(home)
    genesis_doc = json.loads(node_home.genesis_path.read_text())
    try:
        store = LevelDBStore(node_home.data_dir, create=False)
    except StorageError as exc:
        raise ExportError(f"{exc} (export reads a stopped node's database: stop the node first)") from None
    from node.blobstore import FileBlobStore

    try:
        return export_state(store, genesis_doc, height, FileBlobStore(node_home.blob_dir))
    finally:
        store.close()
