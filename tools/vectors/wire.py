"""Wire vectors: for every wire type of the runtime packages, real values with their canonical encoding,
decoded fields, signed bytes and ids; and encodings that decoding must refuse.

One file per type, `wire/<module>.<Type>.json`, plus `wire/rejected.json`. Every wire type defined in
core, consensus, vm, p2p or node must have at least one case: a new type fails generation until it does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack

from consensus.events import (
    BlockBuilt,
    BlockValidated,
    CommitFetched,
    EvidenceReceived,
    NewHeight,
    ProposalReceived,
    Resume,
    TimeoutFired,
    VoteReceived,
    VotesFetched,
    WalRecord,
)
from consensus.params import Step
from consensus.proposer import ProposerPriorities
from consensus.signer import SignRecord
from core.app import Verdict
from core.block import Block, ProposalBlock
from core.codec import Wire
from core.compact import CompactProposal, compact_of
from core.errors import DecodeError
from core.evidence import (
    DuplicateProposal,
    DuplicateVote,
    EvidenceEnvelope,
    WrongInference,
    evidence_hash,
    offence_id,
)
from core.hashing import ZERO_HASH, sha256
from core.header import Header, TxResult
from core.tx import Transaction
from core.types import Address, Gas, Height, Round, Timestamp
from core.validators import ValidatorList
from core.votes import Commit, Proposal, Vote, VoteType
from p2p import messages as p2p_messages
from tools.vectors.gov import add_gov_cases
from tools.vectors.render import dump, render, schema
from tools.vectors.world import World
from vm import state as vm_state
from vm import txs as vm_txs
from vm.app import META_KEY, AppMeta

RUNTIME_PACKAGES = ("core", "consensus", "vm", "p2p", "node")
Cases = dict[type[Wire], list[tuple[str, Wire]]]


def runtime_wire_types(root: Path) -> set[type[Wire]]:
    """Every `@wire` type defined in a runtime package (modules found by their `@wire(` declarations)."""
    found: set[type[Wire]] = set()
    for package in RUNTIME_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "@wire(" not in path.read_text():
                continue
            module = importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))
            for value in vars(module).values():
                if (isinstance(value, type) and issubclass(value, Wire) and value.__module__ == module.__name__
                        and "_wire_own" in value.__dict__):
                    found.add(value)
    return found


def collect(world: World) -> Cases:
    """The values each type's vectors show, by case name, taken from the world's real chain."""
    cases: Cases = {}

    def add(name: str, value: Wire) -> None:
        cases.setdefault(type(value), []).append((name, value))

    chain_id = world.chain_id
    b1, b2, b3 = world.blocks
    c1, c2, c3 = world.commits
    app = world.app
    now = Timestamp(int(b3.header.time) + 250)

    # core
    for name, tx in world.txs.items():
        add(name, tx)
    infer_index = b1.txs.index(world.txs["infer"])
    add("infer_input", vm_txs.Infer.decode(world.txs["infer"].payload).inputs[0])
    add("infer_output", b1.results[infer_index].outputs[0])
    add("poi_reveal_of_height_1", _some(b3.header.poi_reveal))
    vset1 = app.validator_set(Height(1))
    add("validator_0_of_height_1", vset1.entries[0])
    add("validators_of_height_1", ValidatorList(vset1.entries))
    wrong = world.evidence["wrong_inference"]
    assert isinstance(wrong, WrongInference)
    add("tx_proof", wrong.tx_proof)
    add("result_proof", wrong.result_proof)
    add("precommit_for_block_1", c1.precommits[0])
    add("prevote_for_block_1", world.vote(world.validators[0], VoteType.PREVOTE, 1, b1.id))
    add("nil_precommit_with_poi", world.vote(world.validators[1], VoteType.PRECOMMIT, 1, None, round_=1))
    add("proposal_of_block_1", world.proposals[0].proposal)
    add("proposal_of_block_2", world.proposals[1].proposal)
    for i, commit in enumerate(world.commits, 1):
        add(f"commit_of_block_{i}", commit)
    for i, block in enumerate(world.blocks, 1):
        add(f"header_{i}", block.header)
        add(f"block_{i}", block)
    add("proposal_block_3", world.proposals[2])
    add("compact_proposal_block_1", compact_of(world.proposals[0]))
    names = {tx.hash: name for name, tx in world.txs.items()}
    for block in (b1, b2):
        for tx, result in zip(block.txs, block.results, strict=True):
            add(f"result_of_{names[tx.hash]}", result)
    for name, evidence in world.evidence.items():
        add(name, evidence)
        add(f"envelope_of_{name}", EvidenceEnvelope(evidence))
    account = vm_state.account_key(world.accounts[0].address)
    add("proof_of_account_0_at_3", app.state_map.prove(account, 3))
    add("proof_of_an_absent_account_at_3", app.state_map.prove(vm_state.account_key(Address(bytes(20))), 3))
    add("leaf_of_account_0", _some(app.state_map.prove(account, 3).leaf))

    # vm: payloads
    for name in ("transfer", "stake", "unstake", "unjail_refused", "infer", "upload_chunk_0", "upload_chunk_1"):
        tx = world.txs[name]
        add(name, vm_txs.PAYLOAD_TYPES[vm_txs.TxKind(tx.kind)].decode(tx.payload))
    meta = world.upload_meta
    assert meta is not None
    chunk0 = vm_txs.ModelChunk.decode(world.txs["upload_chunk_0"].payload)
    add("upload_header", _some(chunk0.header))
    add("model_meta_digits_int8_again", meta)
    add("input_spec", meta.inputs[0])
    add("golden_vector_0", meta.golden[0])
    # vm: parameters and state records, read from the state the blocks produced
    view = app.view()
    params = view.params()
    add("params", params)
    add("consensus_params", params.consensus)
    add("vm_params", params.vm)
    add("staking_params", params.staking)
    add("reward_params", params.rewards)
    add("slashing_params", params.slashing)
    add("token", params.token)
    add("sandbox_limit_0", params.vm.sandbox_limits[0])
    add("account_0", view.account(world.accounts[0].address))
    for i in (0, 3):
        add(f"validator_{i}", _some(view.validator(world.validators[i].address)))
    add("chain_at_3", view.chain())
    add("supply_at_3", view.supply())
    registered = vm_state.RegistrationData.decode(b2.results[0].data)
    add("registration_of_digits_int8_again", registered)
    add("model_digits_int8_again", _some(view.model(registered.model_id)))
    # Deferred activation (vm.deferred): the world registers in one block, so these are built on its upload.
    from vm import activation, deferred

    pending = deferred.DeferredModel(world.accounts[0].address, _some(chunk0.header), Height(2), Height(7),
                                     Gas(160_000_000), Gas(1_500_000), deferred.PENDING, "", 0)
    add("deferred_pending", pending)
    add("deferred_postponed_once", pending.replace(postponed=1, activates_at=Height(9)))
    # An activation block's system result (after its transactions' results): a postponement.
    add("activation_postponed", activation.unchecked_result(pending, params))
    add("deferred_rejected", pending.replace(status=deferred.REJECTED, log="golden vectors do not reproduce"))
    add("deferred_tail_at_7", deferred.DeferredTail(Height(7)))
    # Resident models (vm.resident): the set a deferred registration joins at its completing chunk.
    from vm import resident

    add("resident_set_of_one", resident.ResidentSet(102_503_416, (registered.model_id,)))
    # Retiring models (vm.retire): the owner's transaction, a resident model's deposit, a retired id's tombstone.
    from core.types import Amount
    from vm import retire

    add("retire_model", vm_txs.RetireModel(registered.model_id))
    add("model_deposit", retire.ModelDeposit(world.accounts[0].address, Amount(10_010_100_000)))
    add("retired_by_owner", retire.RetiredModel(world.accounts[0].address, Height(12), False))
    add("purge_at_113", retire.PurgeList((registered.model_id,)))
    # (prefix, version read, case name, type): records that exist only between blocks.
    records: list[tuple[bytes, int, str, type[Wire]]] = [
        (_unbonding_key(world), 1, "unbonding_queue_at_1", vm_state.UnbondingQueue),
        (b"U", 1, "upload_after_chunk_0", vm_state.Upload),
        (b"X", 1, "upload_expiry_at_1", vm_state.ExpiryList),
        (vm_state.KEY_POI, 2, "pending_poi_at_2", vm_state.PendingPoi),
        (vm_state.KEY_CANDIDATES, 1, "candidates_at_1", vm_state.CandidateList)]
    for prefix, version, name, cls in records:
        raw = next(v for k, v in app.state_map.items(version) if k.startswith(prefix))
        record = cls.decode(raw)
        add(name, record)
        if isinstance(record, vm_state.UnbondingQueue):
            add("unbonding_entry", record.entries[0])
        elif isinstance(record, vm_state.PendingPoi):
            add("poi_entry_0", record.entries[0])
    _delegation_cases(world, add)
    raw_meta = app.store.get(META_KEY)
    assert raw_meta is not None
    add("app_meta_at_3", AppMeta.decode(raw_meta))
    add_gov_cases(world, add)

    # p2p
    add("batch_of_block_1", p2p_messages.TxBatch(b1.txs))
    status = p2p_messages.ChainStatus(chain_id, Height(3), b3.id, Height(1))
    add("status_at_3", status)
    add("status_request", p2p_messages.StatusRequest(chain_id))
    add("ok_status", p2p_messages.Response(p2p_messages.ResponseCode.OK, status.encode(), ""))
    add("not_found", p2p_messages.Response(p2p_messages.ResponseCode.NOT_FOUND, b"", "no block at height 9"))
    add("blocks_1_to_3", p2p_messages.BlocksRequest(Height(1), Height(3)))
    stored = [p2p_messages.StoredBlock(b.height, b.encode(), c.encode()) for b, c in ((b1, c1), (b2, c2))]
    add("stored_block_2", stored[1])
    add("blocks_1_and_2", p2p_messages.BlocksResponse(tuple(stored), 0))
    add("part_0_of_block_2", p2p_messages.BlockPartRequest(Height(2), 0))
    raw2 = stored[1].encode()
    add("block_2_as_one_part", p2p_messages.BlockPart(Height(2), 0, len(raw2), raw2))
    add("precommits_lacking_0_and_2", p2p_messages.VotesRequest(Height(1), Round(0), VoteType.PRECOMMIT, b"\x0a"))
    add("precommits_0_and_2", p2p_messages.VotesResponse((c1.precommits[0], c1.precommits[2])))
    registered_record = app.view().model(registered.model_id)
    assert registered_record is not None
    model_bytes = app.view().model_bytes(registered_record)
    add("first_2048_bytes", p2p_messages.ModelChunkRequest(registered.model_id, 0, 2048))
    add("txs_of_block_1", p2p_messages.TxsRequest(tuple(tx.hash for tx in b1.txs)))
    add("txs_of_block_1_held", p2p_messages.TxsResponse(b1.txs))
    add("pending_first_4096", p2p_messages.PendingRequest(4096))
    add("pending_of_block_1", p2p_messages.PendingResponse(tuple(tx.hash for tx in b1.txs)))
    # Validator 0 vouches for the peer id of the node key seeded "vector node" (an Ed25519 identity multihash).
    from core.keys import PrivateKey
    from core.peer_record import sign_peer_record
    from p2p.peerid import node_seed_secret

    node_public_key = bytes(PrivateKey(node_seed_secret(b"vector node")).public_key)
    add("validator_peer_record", sign_peer_record(world.validators[0], bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
                                                  + node_public_key, chain_id))
    add("model_bytes_from_2048", p2p_messages.ModelChunkResponse(len(model_bytes), 2048, model_bytes[2048:]))

    # consensus
    add("signed_proposal_1", SignRecord(Height(1), Round(0), Step.PROPOSE, world.proposals[0].encode()))
    add("signed_precommit_1", SignRecord(Height(1), Round(0), Step.PRECOMMIT, c1.precommits[0].encode()))
    for i, prios in enumerate(world.priorities[:3], 1):
        add(f"proposer_priorities_{i}", prios)
    new_height_1 = NewHeight(Timestamp(world.genesis.genesis_time + 1), Height(1), world.priorities[0],
                             app.validator_set(Height(2)).entries, (), ZERO_HASH, world.genesis.genesis_time, None)
    add("new_height_1", new_height_1)
    add("new_height_3", NewHeight(now, Height(3), world.priorities[2], app.validator_set(Height(4)).entries,
                                  app.validator_set(Height(2)).entries, b2.id, b2.header.time, c2))
    add("proposal_received", ProposalReceived(now, world.proposals[2]))
    vote_received = VoteReceived(now, c3.precommits[0])
    add("vote_received", vote_received)
    add("votes_fetched", VotesFetched(now, c3.precommits[1:3]))
    add("prevote_timeout", TimeoutFired(now, Height(3), Round(0), Step.PREVOTE))
    add("block_built", BlockBuilt(now, Height(3), Round(0), b3))
    add("valid", BlockValidated.of(now, b3.id, Verdict.valid()))
    add("invalid_naming_txs", BlockValidated.of(now, b1.id, Verdict.invalid("wrong output", (1, 4), (1,))))
    add("local_fault", BlockValidated.of(now, b1.id, Verdict.local_fault("worker crashed")))
    add("evidence_received", EvidenceReceived(now, world.evidence["duplicate_vote"]))
    add("commit_fetched", CommitFetched(now, b3, c3))
    add("resume", Resume(now))
    add("wal_new_height_1", WalRecord(new_height_1))
    add("wal_vote_received", WalRecord(vote_received))
    return cases


def _delegation_cases(world: World, add: Callable[[str, Wire], None]) -> None:
    """Delegation payloads and records (vm.delegation), built on the world's accounts and validators."""
    from core.types import Amount

    alice, v0, v1 = world.accounts[-1].address, world.validators[0].address, world.validators[1].address
    acc = (5 << 64).to_bytes(vm_state.ACC_BYTES, "big")
    add("delegate", vm_txs.Delegate(v0, Amount(5_000_000)))
    add("undelegate", vm_txs.Undelegate(v0, Amount(1_000_000)))
    add("redelegate", vm_txs.Redelegate(v0, v1, Amount(2_000_000)))
    add("withdraw_all", vm_txs.WithdrawRewards(None))
    add("withdraw_from_0", vm_txs.WithdrawRewards(v0))
    add("edit_validator", vm_txs.EditValidator(world.validators[0].public_key, 1_000, 2_000, 100))
    add("pool", vm_state.ValidatorPool(15_000_000, 10_000_000, 1_000, 2_000, 100, Height(7), Amount(42), acc))
    add("delegation", vm_state.Delegation(5_000_000, acc, Height(0)))
    add("delegator_index", vm_state.DelegatorIndex((v0, v1) if v0 < v1 else (v1, v0)))
    entry = vm_state.RedelegationEntry(alice, v0, v1, Amount(2_000_000))
    add("redelegation_entry", entry)
    add("redelegation_queue", vm_state.RedelegationQueue((entry,)))


def _some(value: Any) -> Any:
    if value is None:
        raise AssertionError("the world lacks a value the vectors show")
    return value


def _unbonding_key(world: World) -> bytes:
    """The key of the unbonding queue the block-1 unstake joined (its result's data: the completion height)."""
    result = world.blocks[0].results[world.blocks[0].txs.index(world.txs["unstake"])]
    return vm_state.unbonding_key(int.from_bytes(result.data, "big"))


def extras(value: Wire, chain_id: str) -> dict[str, Any]:
    """Signed bytes and ids defined on a value, beyond the SHA-256 of its encoding."""
    out: dict[str, Any] = {}
    if isinstance(value, Transaction):
        out["sign_bytes"] = value.sign_bytes().hex()
        out["ids"] = {"tx_hash": value.hash.hex()}
    elif isinstance(value, Vote | Proposal):
        out["sign_bytes"] = value.sign_bytes(chain_id).hex()
    elif isinstance(value, Header):
        out["ids"] = {"block_id": value.block_id.hex()}
    elif isinstance(value, Block):
        out["ids"] = {"block_id": value.id.hex()}
    elif isinstance(value, TxResult):
        out["ids"] = {"result_hash": value.hash.hex()}
    elif isinstance(value, Commit):
        out["ids"] = {"commit_hash": value.hash.hex()}
    elif isinstance(value, ProposalBlock):
        out["ids"] = {"hash": value.hash.hex(), "block_id": value.block.id.hex()}
    elif isinstance(value, CompactProposal):
        out["ids"] = {"block_id": value.header.block_id.hex()}
    elif isinstance(value, EvidenceEnvelope):
        out["ids"] = {"evidence_hash": value.hash.hex(), "offence_id": offence_id(value.evidence).hex()}
    elif isinstance(value, DuplicateVote | DuplicateProposal | WrongInference):
        out["ids"] = {"evidence_hash": evidence_hash(value).hex(), "offence_id": offence_id(value).hex()}
    return out


def type_file(cls: type[Wire], cases: list[tuple[str, Wire]], chain_id: str) -> bytes:
    rendered = []
    for name, value in cases:
        encoding = value.encode()
        if type(value).decode(encoding) != value:
            raise AssertionError(f"{cls.__name__} {name}: decoding the encoding gives another value")
        rendered.append({"name": name, "encoding": encoding.hex(), "sha256": sha256(encoding).hex(),
                         **extras(value, chain_id), "value": render(value)})
    return dump({"type": cls.__name__, "module": cls.__module__, "max_bytes": cls.MAX_BYTES, "tag": cls.TAG,
                 "fields": schema(cls), "cases": rendered})


# ---------------------------------------------------------------------------------------------- refused


def refused(cases: Cases) -> Iterator[tuple[type[Wire], str, bytes]]:
    """Encodings decoding must refuse, each derived from a real value, with the rule it breaks."""

    def first(cls: type[Wire]) -> bytes:
        return cases[cls][0][1].encode()

    def repack(cls: type[Wire], change: Callable[[list[Any]], list[Any]]) -> bytes:
        data: bytes = msgpack.packb(change(msgpack.unpackb(first(cls), raw=False)), use_bin_type=True)
        return data

    vote = first(Vote)
    yield Vote, "trailing byte after the value", vote + b"\x00"
    yield Vote, "truncated by one byte", vote[:-1]
    yield Vote, "array header not minimal (array16 for 8 fields)", b"\xdc\x00\x08" + vote[1:]
    yield Vote, "one field missing", repack(Vote, lambda o: o[:-1])
    yield Vote, "one field too many", repack(Vote, lambda o: [*o, 0])
    yield Vote, "enum value out of range (vote type 3)", repack(Vote, lambda o: [3, *o[1:]])
    yield Vote, "Hash32 of 31 bytes", repack(Vote, lambda o: [*o[:3], o[3][:31], *o[4:]])
    yield Vote, "height as a negative integer", repack(Vote, lambda o: [o[0], -1, *o[2:]])
    if vote[:3] != b"\x98\x02\x01":
        raise AssertionError("the first vote case is a precommit at height 1")
    yield Vote, "integer not minimal (height 1 as uint16)", vote[:2] + b"\xcd\x00\x01" + vote[3:]
    yield Transaction, "chain id as bytes instead of str", repack(Transaction, lambda o: [o[0].encode(), *o[1:]])
    yield ProposerPriorities, "validators not in address order", repack(ProposerPriorities, lambda o: [o[0][::-1], o[1]])
    yield EvidenceEnvelope, "unknown union tag", repack(EvidenceEnvelope, lambda o: [[9, o[0][1]]])
    yield Block, "over the type's byte limit", b"\x00" * (Block.MAX_BYTES + 1)


def refused_file(cases: Cases) -> bytes:
    rows = []
    for cls, why, data in refused(cases):
        try:
            cls.decode(data)
        except DecodeError:
            pass
        else:
            raise AssertionError(f"{cls.__name__}: decoding accepted {why}")
        rows.append({"type": cls.__name__, "module": cls.__module__, "why": why,
                     "encoding": data.hex() if len(data) <= 4096 else None, "length": len(data)})
    return dump({"about": "Encodings every decoder must refuse (a DecodeError here), whatever it could parse.",
                 "cases": rows})


def generate(world: World, root: Path) -> dict[str, bytes]:
    cases = collect(world)
    missing = sorted(f"{c.__module__}.{c.__name__}" for c in runtime_wire_types(root) - set(cases))
    if missing:
        raise AssertionError(f"wire types without a vector (add a case in tools/vectors/wire.py): {missing}")
    files = {f"wire/{cls.__module__}.{cls.__name__}.json": type_file(cls, values, world.chain_id)
             for cls, values in cases.items()}
    files["wire/rejected.json"] = refused_file(cases)
    return files
