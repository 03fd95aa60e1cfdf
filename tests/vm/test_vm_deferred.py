"""Deferred activation (vm/deferred.py): a registration whose check is over `vm.defer_check_gas_over` (here
also over `vm.max_tx_gas`) is queued as pending, pays its check in tokens, and activates at the height the
queue gives it, with one verdict on the builder, a validator and a node that applies the block from scratch.
A flood of such registrations activates one per height, spaced by their work; a model whose golden runs
fail is rejected at its activation on every node alike, its fees kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.hashing import sha256
from core.header import TxStatus
from core.tx import Transaction
from tests.vm.deferred_models import VM, lying_meta, near_meta, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from vm.checkmemo import compute_check_key
from vm.deferred import (
    KEY_DEFERRED_TAIL,
    PENDING,
    REGISTERED,
    REJECTED,
    DeferredTail,
    activation_key,
    compute_defer_blocks,
    get_deferred,
)
from vm.engine import feeds, model_spec, sandbox_limits
from vm.execute import (
    chunk_gas,
    deferred_check_price,
    registration_check_gas,
    registration_check_gas_and_nodes,
)
from vm.fork import Fork, fork_state
from vm.resident import resident_load_gas_static
from vm.retire import compute_resident_deposit
from vm.sandbox.executor import CheckJob
from vm.state import model_name_key
from vm.txs import compute_model_id, split_model

pytestmark = pytest.mark.vm

@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    """Node 0 builds, node 1 validates, node 2 only applies committed blocks (block sync's path)."""
    devnet = Devnet.start(tmp_path, devnet_genesis(vm=VM), nodes=3)
    yield devnet
    devnet.close()


def step(net: Devnet, txs: list[Transaction] | None = None) -> None:
    block = net.step(txs or [], validators=[1])
    for result in block.results[: len(block.txs)]:  # an activation's verdict follows them
        assert result.status is TxStatus.OK, result.log


def test_a_registration_over_max_tx_gas_is_pending_and_activates_at_its_height(net: Devnet) -> None:
    params = net.genesis.params
    owner = net.account(5)
    model_bytes = weights_model(1)
    meta = weights_meta("big", model_bytes)
    check = registration_check_gas(params, model_bytes)
    assert check > params.vm.max_tx_gas  # it could never register in one transaction
    model_id = compute_model_id(sha256(model_bytes), meta)
    txs = upload(net, owner, model_bytes, meta)
    for tx in txs[:-1]:
        step(net, [tx])
    before = net.apps[0].view().account(owner.address).balance
    queued = net.step(txs[-1:], validators=[1])
    [result] = queued.results
    assert result.status is TxStatus.OK, result.log
    activates_at = int.from_bytes(result.data, "big")
    record = get_deferred(net.apps[0].view(), model_id)
    assert record is not None and record.status == PENDING
    work = int(record.check_gas) + int(record.gas_left)
    assert activates_at == net.height + compute_defer_blocks(params, work) and activates_at > net.height + 1
    # Only the fixed part and the chunk count against the block; the check is paid in tokens, not refunded.
    assert result.gas_used == chunk_gas(params, split_model(model_bytes, meta, 256 * 1024)[-1], 0, True,
                                        registration=params.vm.gas_register_deferred)
    spent = before - net.apps[0].view().account(owner.address).balance
    # ... and its resident load (vm/resident.py) in tokens too.
    load = resident_load_gas_static(params, len(model_bytes), registration_check_gas_and_nodes(params, model_bytes)[1])
    assert deferred_check_price(params, model_bytes) == check + load
    # ... and locks its resident deposit (vm/retire.py), refunded when it is rejected or retired.
    assert spent == txs[-1].fee + check + load + compute_resident_deposit(params, len(model_bytes))
    for app in net.apps:
        assert app.view().model(model_id) is None
        assert app.view().get_raw(model_name_key("big")) == model_id  # the name stays held while pending
    # The same model cannot be uploaded again while it is pending.
    again = upload(net, net.account(6), model_bytes, meta)[0]
    assert net.step([again], validators=[1]).results[0].status is TxStatus.FAILED

    while net.height < activates_at - 1:
        step(net)
        assert all(app.view().model(model_id) is None for app in net.apps)
    step(net)  # the activation block: built by node 0, validated by node 1, applied from scratch by node 2
    records = [app.view().model(model_id) for app in net.apps]
    assert records[0] is not None and records[0] == records[1] == records[2]
    assert int(records[0].registered_at) == activates_at
    done = get_deferred(net.apps[2].view(), model_id)
    assert done is not None and done.status == REGISTERED
    assert net.apps[0].view().get_raw(activation_key(activates_at)) is None

    assert int(records[0].gas_per_call) > 0 and int(records[0].gas_load) > 0
    # The check memo keyed the job by the upload header's hash, which the VM had checked: no second SHA-256.
    assert all(app.check_memo.hashed == 0 and app.check_memo.misses >= 1 for app in net.apps[:2])
    # The node that only applies took the verdict from the block (its system result): it ran no check.
    assert net.apps[2].check_memo.misses == 0 and net.apps[2].check_memo.hits == 0
    net.assert_supply_conserved()


def test_a_flood_of_pending_registrations_activates_one_per_height_and_a_failing_one_is_rejected_alike(
        net: Devnet) -> None:
    """The attack: three large registrations completed in one block. Without the FIFO spacing they would all
    run their checks in one block; with it, each activates alone, `compute_defer_blocks` after the previous
    one, and the lying one is rejected by the same rule on the builder, a validator and a syncing node."""
    params = net.genesis.params
    owners = [net.account(5), net.account(6), net.account(7)]
    models = [weights_model(seed) for seed in (11, 12, 13)]
    metas = [weights_meta(f"flood{i}", m) for i, m in enumerate(models)]
    metas[1] = lying_meta(metas[1])
    uploads = [upload(net, owner, m, meta) for owner, m, meta in zip(owners, models, metas, strict=True)]
    for txs in uploads:
        for tx in txs[:-1]:
            step(net, [tx])
    balances = [net.apps[0].view().account(o.address).balance for o in owners]
    queued = net.step([txs[-1] for txs in uploads], validators=[1])
    heights = [int.from_bytes(r.data, "big") for r in queued.results]
    mids = [compute_model_id(sha256(m), meta) for m, meta in zip(models, metas, strict=True)]
    ids = [get_deferred(net.apps[0].view(), mid) for mid in mids]
    assert all(r is not None for r in ids)
    gaps = [b - a for a, b in zip([net.height, *heights], heights, strict=False)]
    works = [int(r.check_gas) + int(r.gas_left) for r in ids if r is not None]
    assert gaps == [compute_defer_blocks(params, w) for w in works]  # FIFO, each after the last
    assert len(set(heights)) == 3

    while net.height < heights[-1]:
        step(net)
        due = [h for h in heights if h == net.height]
        # At most one activation's check in any block: the per-block background budget is never stacked.
        assert len(due) <= 1
    for i, mid in enumerate(mids):
        verdicts = [get_deferred(app.view(), mid) for app in net.apps]
        assert verdicts[0] == verdicts[1] == verdicts[2]
        assert verdicts[0] is not None
        if i == 1:
            assert verdicts[0].status == REJECTED and verdicts[0].log == "golden vectors do not reproduce"
            assert all(app.view().model(mid) is None for app in net.apps)
            assert net.apps[0].view().get_raw(model_name_key("flood1")) is None  # the name is free again
        else:
            assert verdicts[0].status == REGISTERED and net.apps[2].view().model(mid) is not None
    # Fees are never refunded: the rejected owner paid its check like the others (its deposit came back).
    spent = [b - net.apps[0].view().account(o.address).balance for b, o in zip(balances, owners, strict=True)]
    assert spent[1] == uploads[1][-1].fee + deferred_check_price(params, models[1])
    net.assert_supply_conserved()


def test_the_check_memo_key_is_the_same_with_the_known_hash_as_with_its_own() -> None:
    """The key a check job gets from the VM's known hash (`CheckMemo.note_digest`) is the one hashing the bytes
    gives, so a verdict stored by either path answers the other."""
    model_bytes = weights_model(31)
    meta = weights_meta("key", model_bytes)
    job = CheckJob(model_bytes, model_spec(meta, sandbox_limits(devnet_genesis(vm=VM).params)),
                   tuple(feeds(meta, v.inputs) for v in meta.golden), 10**9)
    assert compute_check_key(job, b"code") == compute_check_key(job, b"code", bytes(sha256(model_bytes)))
    assert compute_check_key(job, b"code") != compute_check_key(job, b"code", bytes(32))


def test_a_fork_keeps_a_pending_registration_with_the_blocks_it_has_left(net: Devnet) -> None:
    """`vm/fork.py`: an exported state with a pending registration forks into one whose entry, slot and tail
    count from the fork, and whose model blob is named (so the forked chain can run the activation)."""
    model_bytes = weights_model(41)
    meta = weights_meta("forked", model_bytes)
    model_id = compute_model_id(sha256(model_bytes), meta)
    txs = upload(net, net.account(5), model_bytes, meta)
    for tx in txs:
        step(net, [tx])
    activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
    app, at = net.apps[0], net.height
    digest = sha256(model_bytes)
    blobs = {bytes(d): app.blobs.get_blob(d) for d in app.blobs.digests()}  # the export's blobs
    assert blobs[bytes(digest)] == model_bytes
    fork = Fork(at, tuple(app.state_map.items(at)), blobs)
    validators = [(v.public_key, v.owner, int(v.stake)) for v in net.genesis.validators]
    view = fork_state(fork, validators, net.genesis.genesis_time)
    record = get_deferred(view, model_id)
    assert record is not None and record.status == PENDING
    assert int(record.activates_at) == activates_at - at and int(record.queued_at) == 0
    assert view.get_raw(activation_key(activates_at - at)) == model_id
    tail = view.get(KEY_DEFERRED_TAIL, DeferredTail)
    assert tail is not None and int(tail.height) == activates_at - at
    assert view.blob_changes().refs[bytes(digest)] == 1


def test_golden_outputs_near_the_tolerance_reject_at_activation_instead_of_stalling_it(net: Devnet) -> None:
    """On the synchronous path a registration whose golden outputs are near the tolerance is this node's fault
    (the builder leaves the chunk out). An activation cannot be left out: as a fault it would stop every
    node at that height. It is a rejection there, the same on the builder, a validator and an applying node."""
    model_bytes = weights_model(51)
    meta = near_meta(weights_meta("near", model_bytes))
    model_id = compute_model_id(sha256(model_bytes), meta)
    txs = upload(net, net.account(5), model_bytes, meta)
    for tx in txs:
        step(net, [tx])
    activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
    while net.height < activates_at:
        step(net)
    verdicts = [get_deferred(app.view(), model_id) for app in net.apps]
    assert verdicts[0] is not None and verdicts[0] == verdicts[1] == verdicts[2]
    assert verdicts[0].status == REJECTED and verdicts[0].log == "golden outputs are near the tolerance"


@pytest.mark.parametrize(("vm", "reason"), [
    ({"background_gas_per_block": 0}, "vm.background_gas_per_block must be positive"),
    ({"max_deferred_registration_gas": 1}, "must be at least vm.defer_check_gas_over"),
    ({"gas_register_deferred": 10**12}, "vm.gas_register_deferred must not exceed vm.max_tx_gas"),
])
def test_genesis_refuses_deferral_parameters_that_cannot_work(vm: dict[str, int], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        devnet_genesis(vm=vm)
