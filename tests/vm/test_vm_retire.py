"""Retiring models and the resident deposit (vm/retire.py): the resident budget is no longer a permanent
prize. A resident registration locks `vm.resident_deposit_per_kib` per KiB; its owner (or governance) retires
it, which frees its resident bytes and slot, its blob and name, refunds the deposit exactly once, and refuses
any later inference on it. Real VM, real LevelDB, real ONNX Runtime; node 0 builds, node 1 validates, node 2
only applies committed blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.block import compute_results_root
from core.hashing import sha256
from core.header import TxStatus
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from node.export import export_state, state_pairs, state_root_of
from tests.vm.deferred_models import VM, K, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from tools.genesis import make_genesis
from vm.blobrefs import ref_count
from vm.deferred import (
    KEY_DEFERRED_TAIL,
    PENDING,
    REGISTERED,
    DeferredTail,
    activation_key,
    get_deferred,
    pending_in_order,
)
from vm.evidence import make_wrong_inference
from vm.execute import infer_gas
from vm.gov.store import get_next_proposal_id, get_proposal
from vm.gov.types import RetireModelsProposal, SubmitProposal, Vote, VoteOption
from vm.resident import get_resident_set
from vm.retire import (
    DEPOSIT_ESCROW,
    compute_resident_deposit,
    get_evidence_model,
    get_model_deposit,
    get_retired,
    retired_in_block,
)
from vm.state import model_name_key
from vm.txs import Infer, ModelChunk, RetireModel, compute_model_id

pytestmark = pytest.mark.vm

MODEL_BYTES = len(weights_model(1))
# Room for one 512 KiB weights model, not two: the whole budget is one model.
RETIRE_VM = {**VM, "max_tx_gas": 20_000_000, "max_resident_bytes": MODEL_BYTES * 3 // 2}
VOTING = 2
EVIDENCE_AGE = 3  # a retired model's record and bytes stay this many blocks, for evidence about it
MIN_DEPOSIT = 1_000


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    genesis = devnet_genesis(vm=RETIRE_VM, gov={"voting_blocks": VOTING, "max_deposit_blocks": 3,
                                                "min_deposit": MIN_DEPOSIT},
                             slashing={"max_evidence_age": EVIDENCE_AGE})
    devnet = Devnet.start(tmp_path, genesis, nodes=3)
    yield devnet
    devnet.close()


def step(net: Devnet, txs: list[Transaction]) -> list[tuple[TxStatus, str, bytes]]:
    block = net.step(txs, validators=[1])
    return [(r.status, r.log, r.data) for r in block.results[: len(block.txs)]]


def queue(net: Devnet, owner: int, seed: int, name: str) -> tuple[Transaction, Hash32]:
    """Upload every chunk of a resident model but the completing one; that chunk and the model id."""
    model_bytes = weights_model(seed)
    meta = weights_meta(name, model_bytes)
    txs = upload(net, net.account(owner), model_bytes, meta)
    for tx in txs[:-1]:
        assert step(net, [tx])[0][0] is TxStatus.OK
    return txs[-1], compute_model_id(sha256(model_bytes), meta)


def balance(net: Devnet, owner: int) -> int:
    return int(net.apps[0].view().account(net.account(owner).address).balance)


def retire(net: Devnet, owner: int, model_id: Hash32) -> Transaction:
    return net.tx(net.account(owner), RetireModel(model_id), gas_limit=net.genesis.params.vm.gas_retire_model)


def infer(net: Devnet, owner: int, model_id: Hash32) -> Transaction:
    x = np.random.default_rng(3).standard_normal((1, K)).astype(np.float32)
    return net.tx(net.account(owner), Infer(model_id, (Tensor(DType.FLOAT32, (1, K), x.tobytes()),), Amount(0)),
                  gas_limit=20_000_000)


def run_to(net: Devnet, height: int) -> None:
    while net.height < height:
        net.step(validators=[1])


def exported_tables(net: Devnet, expected: set[str]) -> None:
    """`inferchain export` knows the records of resident models and their retirement: node 2's latest state
    exports with these tables, and the file's pairs give the node's state root."""
    app = net.apps[2]
    doc = export_state(app.store, make_genesis(4), blobs=app.blobs)
    assert expected <= set(doc["state"]), sorted(doc["state"])
    assert state_root_of(state_pairs(doc)) == app.state_map.root(net.height)


def again(net: Devnet, owner: int, chunk: Transaction) -> Transaction:
    """The same completing chunk, signed again with the sender's next nonce."""
    return net.tx(net.account(owner), ModelChunk.decode(chunk.payload), gas_limit=int(chunk.gas_limit))


def test_the_resident_budget_filled_costs_a_deposit_and_its_owner_retiring_frees_it(net: Devnet) -> None:
    """The attack: one registrant fills the resident budget, and no one else can register a big model. The
    defence: filling it locks a deposit per KiB (not only fees), and retiring gives the room back: the second
    registrant's completing chunk, refused while the first is held, then queues. Only the owner may retire;
    inference on a retired model fails with why; the deposit comes back exactly once."""
    params = net.genesis.params
    filler, filler_id = queue(net, 5, 31, "filler")
    later, later_id = queue(net, 6, 32, "later")
    before = balance(net, 5)
    [(status, log, data)] = step(net, [filler])
    assert status is TxStatus.OK, log
    deposit = compute_resident_deposit(params, MODEL_BYTES)
    assert deposit == int(params.vm.resident_deposit_per_kib) * -(-MODEL_BYTES // 1024) > 0
    view = net.apps[2].view()
    assert int(view.account(DEPOSIT_ESCROW).balance) == deposit
    record = get_model_deposit(view, filler_id)
    assert record is not None and int(record.amount) == deposit and record.owner == net.account(5).address
    assert before - balance(net, 5) >= filler.fee + deposit  # fee, check and load spent; the deposit locked
    exported_tables(net, {"deferred_models", "activations", "deferred_tail", "resident_set", "model_deposits"})
    run_to(net, int.from_bytes(data, "big"))
    registered = get_deferred(net.apps[0].view(), filler_id)
    assert registered is not None and registered.status == REGISTERED

    # The budget is full: the second registrant is refused, fee paid.
    [(status, log, _)] = step(net, [later])
    assert status is TxStatus.FAILED and "over vm.max_resident_bytes" in log, log
    # Nobody but the owner retires it.
    [(status, log, _)] = step(net, [retire(net, 6, filler_id)])
    assert status is TxStatus.FAILED and log.endswith("is owned by another account"), log
    assert net.apps[0].view().model(filler_id) is not None

    # The owner retires it: an inference in the same block after it fails, the deposit comes back.
    blob = net.apps[0].view().model(filler_id).bytes_hash  # type: ignore[union-attr]
    before = balance(net, 5)
    gas = params.vm.gas_retire_model
    results = step(net, [retire(net, 5, filler_id), infer(net, 7, filler_id)])
    assert results[0][0] is TxStatus.OK, results[0][1]
    assert int.from_bytes(results[0][2], "big") == deposit
    retired_at = net.height
    block = net.blocks[-1]  # what the node's mempool drops inferences on after this block
    assert retired_in_block(net.apps[2].view(), retired_at, block.txs, block.results) == {bytes(filler_id)}
    assert results[1] == (TxStatus.FAILED, f"model retired at height {retired_at}", b"")
    assert balance(net, 5) == before - gas * params.vm.min_gas_price + deposit
    for app in net.apps:
        v = app.view()
        assert v.model(filler_id) is None and get_deferred(v, filler_id) is None
        assert int(v.account(DEPOSIT_ESCROW).balance) == 0 and get_model_deposit(v, filler_id) is None
        assert int(get_resident_set(v).total_bytes) == 0 and get_resident_set(v).models == ()
        assert v.get_raw(model_name_key("filler")) is None  # the name is free again
        tombstone = get_retired(v, filler_id)
        assert tombstone is not None and int(tombstone.retired_at) == retired_at and not tombstone.by_governance
        # Not callable, but kept (record and bytes) while evidence about its inferences may still land.
        assert get_evidence_model(v, filler_id) is not None and ref_count(app.store, blob) == 1
    exported_tables(net, {"retired_models", "retired_kept_records", "retired_purges"})
    run_to(net, retired_at + EVIDENCE_AGE + 1)  # then released: nothing names the bytes any more
    for app in net.apps:
        assert get_evidence_model(app.view(), filler_id) is None and ref_count(app.store, blob) == 0
    net.step(validators=[1])  # the next commit collects the garbage the last one listed
    assert all(app.blobs.size(blob) is None for app in net.apps)

    # The room is free: the second registrant's same chunk queues now.
    [(status, log, _)] = step(net, [again(net, 6, later)])
    assert status is TxStatus.OK, log
    pending = get_deferred(net.apps[1].view(), later_id)
    assert pending is not None and pending.status == PENDING
    # Retired is final: no second refund, no inference, no new registration under the same id.
    before = balance(net, 5)
    results = step(net, [retire(net, 5, filler_id), infer(net, 7, filler_id)])
    assert results[0][0] is TxStatus.FAILED and "already retired" in results[0][1], results[0][1]
    assert results[1][0] is TxStatus.FAILED and results[1][1] == f"model retired at height {retired_at}"
    assert balance(net, 5) == before - gas * params.vm.min_gas_price
    net.assert_supply_conserved()


def test_a_pending_registration_retired_leaves_the_queue_and_never_activates(net: Devnet) -> None:
    params = net.genesis.params
    chunk, model_id = queue(net, 5, 41, "pending")
    [(status, log, data)] = step(net, [chunk])
    assert status is TxStatus.OK, log
    activates_at = int.from_bytes(data, "big")
    assert net.height + 1 < activates_at
    before = balance(net, 5)
    [(status, log, data)] = step(net, [retire(net, 5, model_id)])
    assert status is TxStatus.OK, log
    deposit = compute_resident_deposit(params, MODEL_BYTES)
    assert int.from_bytes(data, "big") == deposit
    assert balance(net, 5) == before - params.vm.gas_retire_model * params.vm.min_gas_price + deposit
    for app in net.apps:
        v = app.view()
        assert get_deferred(v, model_id) is None and v.get_raw(activation_key(activates_at)) is None
        assert pending_in_order(v, 4) == [] and get_resident_set(v).total_bytes == 0
        assert v.get_raw(model_name_key("pending")) is None
    # Its activation height passes with no verdict: the block carries no system result, nothing registers.
    run_to(net, activates_at)
    block = net.blocks[activates_at - 1]
    assert len(block.results) == len(block.txs)
    assert all(app.view().model(model_id) is None for app in net.apps)
    assert net.apps[0].view().account(DEPOSIT_ESCROW).balance == 0
    net.assert_supply_conserved()


def pass_proposal(net: Devnet, content: RetireModelsProposal) -> None:
    """Submit `content` with the minimum deposit, every validator's owner votes yes, run to its end."""
    pid = get_next_proposal_id(net.apps[0].view())
    submit = net.tx(net.account(4), SubmitProposal("t", "why", content, Amount(MIN_DEPOSIT)), gas_limit=100_000)
    assert step(net, [submit])[0][0] is TxStatus.OK
    votes = [net.tx(net.account(i), Vote(pid, VoteOption.YES), gas_limit=100_000) for i in range(4)]
    assert all(s is TxStatus.OK for s, _, _ in step(net, votes))
    proposal = get_proposal(net.apps[0].view(), pid)
    assert proposal is not None
    run_to(net, int(proposal.voting_end))
    proposal = get_proposal(net.apps[2].view(), pid)
    assert proposal is not None and proposal.result_log == "passed and executed", proposal.result_log


def test_governance_retires_models_refunding_or_burning_their_deposits_and_refuses_a_poi_model(
        net: Devnet) -> None:
    """A passed RetireModelsProposal retires a model whoever owns it: the owner's deposit is refunded, or
    burned (recorded in the supply) when the proposal says so; a model in the PoI set is refused at
    submission (a PoiModelsProposal must remove it first)."""
    params = net.genesis.params
    deposit = compute_resident_deposit(params, MODEL_BYTES)
    chunk, model_id = queue(net, 5, 51, "governed")
    [(status, log, data)] = step(net, [chunk])
    assert status is TxStatus.OK, log
    run_to(net, int.from_bytes(data, "big"))
    assert net.apps[0].view().model(model_id) is not None

    poi_model = params.poi_models[0]
    refused = net.tx(net.account(4), SubmitProposal("t", "why", RetireModelsProposal((poi_model,), False),
                                                    Amount(MIN_DEPOSIT)), gas_limit=100_000)
    [(status, log, _)] = step(net, [refused])
    assert status is TxStatus.FAILED and "is in the PoI set" in log, log

    before = balance(net, 5)
    pass_proposal(net, RetireModelsProposal((model_id,), False))
    block = net.blocks[-1]
    assert retired_in_block(net.apps[2].view(), net.height, block.txs, block.results) == {bytes(model_id)}
    assert balance(net, 5) == before + deposit
    for app in net.apps:
        v = app.view()
        tombstone = get_retired(v, model_id)
        assert tombstone is not None and tombstone.by_governance and v.model(model_id) is None
        assert get_resident_set(v).total_bytes == 0
    net.assert_supply_conserved()

    # An abusive holder's pending model: retired with its deposit burned, not refunded.
    chunk, abusive = queue(net, 6, 52, "abusive")
    assert step(net, [chunk])[0][0] is TxStatus.OK
    before, burned_before = balance(net, 6), int(net.apps[0].view().supply().burned)
    pass_proposal(net, RetireModelsProposal((abusive,), True))
    view = net.apps[1].view()
    assert get_retired(view, abusive) is not None and get_deferred(view, abusive) is None
    assert balance(net, 6) == before and int(view.account(DEPOSIT_ESCROW).balance) == 0
    assert int(view.supply().burned) - burned_before >= deposit  # the block's fee burns come on top
    net.assert_supply_conserved()


def test_retiring_an_exact_model_does_not_escape_wrong_inference_evidence(net: Devnet) -> None:
    """The attack: a proposer commits a wrong output of an exact model (here: signs a proposal with one), and
    the model's owner retires the model before the evidence lands, so no node can re-run it to judge the
    claim. The defence: a retired model's record and bytes stay for `slashing.max_evidence_age` blocks; the
    evidence is still judged (red without: "not a registered exact model")."""
    digits = next(m.model_id for m in net.genesis.models if m.name == "digits_int8")
    inputs = Tensor.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 64)).astype(np.uint8))
    record = net.apps[0].view().model(digits)
    assert record is not None and digits not in net.genesis.params.poi_models
    block = net.propose([net.tx(net.account(6), Infer(digits, (inputs,), Amount(0)),
                                gas_limit=infer_gas(net.genesis.params, record, (inputs,)))])
    out = block.results[0].outputs[0].to_numpy().copy()
    out.flat[0] += 1
    results = (replace(block.results[0], outputs=(Tensor.from_numpy(out),)),)
    wrong = replace(block, results=results, header=replace(block.header, results_root=compute_results_root(results)))
    evidence = make_wrong_inference(net.sign_proposal(wrong), 0)
    for verdict in net.validate(block, [1]):
        assert verdict.is_valid
    net.commit(block)
    [(status, log, _)] = step(net, [retire(net, 0, digits)])  # the genesis models' owner is account 0
    assert status is TxStatus.OK, log
    judge = net.apps[1]
    assert judge.view().model(digits) is None
    assert judge.precheck_wrong_inference(evidence, net.blocks[-2].results[0]) is None
    assert judge.is_valid_evidence(evidence)


def tail_of(net: Devnet) -> int | None:
    """The queue's tail height on every node (the same on each), None when there is no tail record."""
    tails = set()
    for app in net.apps:
        tail = app.view().get(KEY_DEFERRED_TAIL, DeferredTail)
        tails.add(None if tail is None else int(tail.height))
    assert len(tails) == 1, tails
    return tails.pop()


def test_retiring_the_last_pending_entry_gives_its_blocks_back_to_the_next_registration(tmp_path: Path) -> None:
    """The queue's tail follows retirements from its end: retiring the last pending entry (after one in the
    middle) moves the tail back to the latest entry still pending, and the next registration activates its own
    blocks after that one, as if the retired entries had never queued; retiring every entry removes the tail,
    and the next activates its blocks after its own height. Red without: the next registration waits behind
    the retired tail's height."""
    # A quarter of the fixture's background budget a block: each entry waits long enough to stay pending.
    genesis = devnet_genesis(vm={**RETIRE_VM, "max_resident_bytes": MODEL_BYTES * 4,
                                 "background_gas_per_block": 250_000})
    net = Devnet.start(tmp_path, genesis, nodes=3)
    try:
        entries = []
        queued = [(owner, *queue(net, owner, seed, f"q{seed}")) for owner, seed in ((5, 61), (6, 62), (7, 63))]
        for owner, chunk, model_id in queued:
            [(status, log, data)] = step(net, [chunk])
            assert status is TxStatus.OK, log
            entries.append((owner, model_id, int.from_bytes(data, "big")))
        (a_owner, a, a_at), (b_owner, b, b_at), (c_owner, c, c_at) = entries
        assert a_at < b_at < c_at == tail_of(net)
        blocks = c_at - b_at  # the same model size: the same blocks of background work each
        assert step(net, [retire(net, b_owner, b)])[0][0] is TxStatus.OK
        assert tail_of(net) == c_at  # one from the middle: the entries after it keep their heights
        assert step(net, [retire(net, c_owner, c)])[0][0] is TxStatus.OK
        assert tail_of(net) == a_at  # the last: back to the latest still pending, past the middle's empty slot

        chunk, d = queue(net, 5, 64, "q64")
        [(status, log, data)] = step(net, [chunk])
        assert status is TxStatus.OK, log
        assert int.from_bytes(data, "big") == max(net.height, a_at) + blocks < c_at + blocks
        assert step(net, [retire(net, 5, d)])[0][0] is TxStatus.OK
        assert step(net, [retire(net, a_owner, a)])[0][0] is TxStatus.OK
        assert tail_of(net) is None and pending_in_order(net.apps[0].view(), 4) == []

        chunk, _ = queue(net, 6, 65, "q65")
        [(status, log, data)] = step(net, [chunk])
        assert status is TxStatus.OK, log
        assert int.from_bytes(data, "big") == net.height + blocks
        net.assert_supply_conserved()
    finally:
        net.close()
