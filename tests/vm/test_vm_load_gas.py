"""Model loading is priced and bounded (docs/vm.md, "Gas"): the first inference on a model in a block pays
the model's load, a block uses at most `vm.max_block_models` distinct models, and a transaction whose work
faults the proposer's worker is left out and reported for back-off. The attack (a block of calls to many
distinct cheap-but-large models) is mounted against real worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.header import TxStatus
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from tests.vm.devnet import Devnet
from tests.vm.helpers import _model, genesis_doc_with, memory_hog_model, meta_for, spec
from vm.engine import model_spec
from vm.execute import BlockModels, chunk_gas, infer_gas, registration_check_gas, registration_gas
from vm.genesis import Genesis, parse_genesis
from vm.sandbox.canonicalize import canonicalize
from vm.sandbox.executor import CheckJob, InferJob, LocalExecutor, ModelPackage
from vm.sandbox.limits import DEFAULT_LIMITS, WorkerLimits, registration_load_gas
from vm.sandbox.meter import load_gas, meter
from vm.sandbox.worker import WorkerPool
from vm.state import RegistrationData
from vm.txs import Infer, ModelClass, Transfer, build_tx, split_model

pytestmark = pytest.mark.vm


def chain_model(nodes: int, salt: int) -> bytes:
    """`nodes` int32 Adds in a row: nearly free to run, costly to load (the load attack's model)."""
    c = numpy_helper.from_array(np.array([salt], dtype=np.int32), "c")
    graph = [helper.make_node("Add", ["x" if i == 0 else f"t{i - 1}", "c"], ["y" if i == nodes - 1 else f"t{i}"])
             for i in range(nodes)]
    raw = _model(graph, [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], [c])
    return canonicalize(raw, {"x": (1, 1)})


def genesis_with_chains(tmp_path: Path, count: int, nodes: int, vm: dict[str, Any] | None = None) -> Genesis:
    """The test genesis plus `count` distinct chain models (ids differ by their constant)."""
    doc = genesis_doc_with(tmp_path, {f"chain{salt}": chain_model(nodes, salt) for salt in range(1, count + 1)}, vm)
    return parse_genesis(json.loads(json.dumps(doc)), base_dir=tmp_path)


# A model that needs ~192 MiB of activations, and a first use (a call plus its golden run) of ~160 M gas.
HOG_VM = {"max_tx_gas": 200_000_000}
HOG_CONSENSUS = {"max_block_gas": 400_000_000}
TIGHT_WORKER = WorkerLimits(memory_bytes=300 << 20)


def chain_ids(genesis: Genesis) -> list[Hash32]:
    return [m.model_id for m in genesis.models if m.name.startswith("chain")]


def call(value: int) -> tuple[Tensor, ...]:
    return (Tensor.from_numpy(np.array([[value]], np.int32)),)


def test_load_gas_is_priced_from_static_facts_and_grows_with_nodes_and_bytes() -> None:
    g = DEFAULT_LIMITS.gas
    small, large = chain_model(16, 1), chain_model(512, 1)
    for model_bytes, nodes in ((small, 16), (large, 512)):
        per_call = meter(model_bytes).gas
        assert load_gas(g, model_bytes=len(model_bytes), nodes=nodes, golden_runs=2, gas_per_call=per_call) == (
            g.load_base + g.load_per_node * nodes + g.load_per_kib * -(-len(model_bytes) // 1024) + 2 * per_call)
    # Loading a 512-node model costs far more than calling it: the attack's lever, now with its price.
    assert load_gas(g, model_bytes=len(large), nodes=512, golden_runs=0, gas_per_call=0) > 20 * meter(large).gas
    # Bytes alone are priced too (a weights-heavy model with two nodes).
    heavy = load_gas(g, model_bytes=100 << 20, nodes=2, golden_runs=0, gas_per_call=0)
    assert heavy >= g.load_per_kib * (100 << 10)


@pytest.fixture
def chains(tmp_path: Path) -> Iterator[Devnet]:
    genesis = genesis_with_chains(tmp_path, 2, 8, vm={"max_block_models": 2})
    net = Devnet.start(tmp_path, genesis, nodes=2)
    yield net
    net.close()


def test_the_first_inference_on_a_model_in_a_block_pays_its_load_and_later_ones_do_not(chains: Devnet) -> None:
    net = chains
    params = net.genesis.params
    first_id = chain_ids(net.genesis)[0]
    record = net.apps[0].view().model(first_id)
    assert record is not None and record.gas_load == load_gas(
        DEFAULT_LIMITS.gas, model_bytes=record.total_bytes, nodes=8, golden_runs=1, gas_per_call=record.gas_per_call)
    user = net.account(6)
    quote = infer_gas(params, record, call(1))
    tight = infer_gas(params, record, call(1), first_use=False)
    assert quote == tight + record.gas_load
    # A call that does not pay the load cannot be the block's first on the model: out of gas, fee paid.
    block = net.step([net.tx(user, Infer(first_id, call(1), Amount(0)), gas_limit=tight),
                      net.tx(user, Infer(first_id, call(2), Amount(0)), gas_limit=quote)])
    assert [r.status for r in block.results] == [TxStatus.OUT_OF_GAS, TxStatus.OK]
    assert block.results[1].gas_used == quote
    # After a paying call, the same tight call rides on the loaded model.
    block = net.step([net.tx(user, Infer(first_id, call(3), Amount(0)), gas_limit=quote),
                      net.tx(user, Infer(first_id, call(4), Amount(0)), gas_limit=tight)])
    assert [r.status for r in block.results] == [TxStatus.OK, TxStatus.OK]
    assert [r.gas_used for r in block.results] == [quote, tight]
    net.assert_supply_conserved()


def test_a_block_over_the_distinct_model_cap_is_invalid(chains: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proposer that ignores `vm.max_block_models` (here: one whose inclusion check is patched out) makes a
    block validators refuse, naming the transaction that adds one model too many."""
    net = chains
    cap = net.genesis.params.vm.max_block_models
    ids = chain_ids(net.genesis) + [m.model_id for m in net.genesis.models if m.name == "digits_int8"]
    assert cap < len(ids)
    user = net.account(6)
    u = Tensor.from_numpy(np.zeros((1, 64), np.uint8))
    txs = [net.tx(user, Infer(i, (u,) if n == len(ids) - 1 else call(n), Amount(0)), gas_limit=5_000_000)
           for n, i in enumerate(ids)]
    with monkeypatch.context() as m:
        m.setattr(BlockModels, "inclusion_error", lambda self, view, tx: None)
        greedy = net.propose(txs)
    assert len(greedy.txs) == len(ids)
    (verdict,) = net.validate(greedy)
    assert verdict.kind.value == "invalid" and list(verdict.bad_txs) == [cap]
    # An honest proposer stops at the cap; the next block takes the rest.
    block = net.step(txs)
    assert len(block.txs) == cap
    assert net.step(txs[cap:]).txs == tuple(txs[cap:])


def test_calls_to_many_distinct_large_models_cannot_overload_a_block(tmp_path: Path) -> None:
    """The load attack against real worker processes: every call names another 512-node model. The
    proposer's blocks stay within the cap and the gas limit, each validated by a node whose worker has
    never seen the models, and every call is included in the end (none is stranded)."""
    cap = 3
    genesis = genesis_with_chains(tmp_path, 7, 512, vm={"max_block_models": cap})
    pools: list[WorkerPool] = []

    def pool() -> WorkerPool:
        p = WorkerPool(1)
        p.start()
        pools.append(p)
        return p

    net = Devnet.start(tmp_path, genesis, executors=[pool, pool])  # type: ignore[list-item]
    try:
        params = genesis.params
        ids = chain_ids(genesis)
        user = net.account(6)
        txs = []
        for n, model_id in enumerate(ids):
            record = net.apps[0].view().model(model_id)
            assert record is not None and record.gas_load > 20 * record.gas_per_call
            txs.append(net.tx(user, Infer(model_id, call(n), Amount(0)), gas_limit=infer_gas(params, record, call(n))))
        included = 0
        while included < len(txs):
            block = net.step(txs[included:])  # validated by node 1's real, cold worker pool
            used = {bytes(Infer.decode(tx.payload).model_id) for tx in block.txs}
            assert 0 < len(used) <= cap
            assert sum(r.gas_used for r in block.results) <= params.consensus.max_block_gas
            assert all(r.status is TxStatus.OK for r in block.results)
            included += len(block.txs)
        assert net.alarms == [] and all(p.restarts == 0 for p in pools)
    finally:
        net.close()


def test_a_call_whose_work_faults_the_proposers_worker_is_left_out_and_reported(tmp_path: Path) -> None:
    """A worker that runs out of memory on the block's hand-off: the block is still produced, without the
    call, and `build_faults` names it for the mempool's back-off (node/driver.py)."""
    doc = genesis_doc_with(tmp_path, {"hog": memory_hog_model()}, HOG_VM)
    doc["consensus"].update(HOG_CONSENSUS)
    genesis = parse_genesis(json.loads(json.dumps(doc)), base_dir=tmp_path)

    def tight() -> WorkerPool:
        p = WorkerPool(1, TIGHT_WORKER)
        p.start()
        return p

    net = Devnet.start(tmp_path, genesis, executors=[tight, LocalExecutor])  # type: ignore[list-item]
    try:
        hog = next(m.model_id for m in genesis.models if m.name == "hog")
        call_tx = net.tx(net.account(6), Infer(hog, call(1), Amount(0)), gas_limit=200_000_000)
        other = net.tx(net.account(5), Transfer(net.account(7).address, Amount(1)), gas_limit=20_000)
        block = net.propose([call_tx, other])
        assert block.txs == (other,)
        assert net.apps[0].build_faults(block) == (call_tx.hash,)
        assert net.apps[0].build_faults(block) == ()  # reported once
        assert any(line.startswith("building block 1: worker") for line in net.alarms)
        (verdict,) = net.validate(block)
        assert verdict.is_valid
    finally:
        net.close()


def _upload(net: Devnet, model_bytes: bytes, registration: int) -> tuple[Transaction, ...]:
    meta = meta_for("reg", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[np.array([[3]], np.int32)]])
    owner = net.account(5)
    chunks = split_model(model_bytes, meta, len(model_bytes) // 2 + 1)
    params = net.genesis.params
    nonce = net.apps[0].view().account(owner.address).nonce
    return tuple(build_tx(owner, c, chain_id=net.genesis.chain_id, nonce=nonce + i,
                          gas_limit=(g := chunk_gas(params, c, len(model_bytes), i == len(chunks) - 1,
                                                    registration=registration)), fee=g)
                 for i, c in enumerate(chunks))


def test_a_registration_pays_its_check_by_node_count_and_its_golden_runs_before_they_run(chains: Devnet) -> None:
    """The checker's cost grows with the node count: the completing chunk pays the check at execution, and a
    registration whose remaining gas cannot pay its golden runs (on the check's own session: no per-KiB
    cold load) is refused before they run."""
    net = chains
    params = net.genesis.params
    model_bytes = chain_model(256, 99)
    meta = meta_for("reg", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[np.array([[3]], np.int32)]])
    check = registration_check_gas(params, model_bytes)
    assert check == (params.vm.gas_register_base + params.vm.gas_register_per_byte * len(model_bytes)
                     + params.vm.gas_register_per_node * 256 + params.vm.gas_register_per_propagated_element * 1)
    full = registration_gas(params, model_bytes, meta)
    runs = registration_load_gas(DEFAULT_LIMITS.gas, nodes=256, golden_runs=1, gas_per_call=meter(model_bytes).gas)
    assert full - check == runs
    # The stored first-use load still prices the cold path per KiB; the registration does not.
    assert runs < load_gas(DEFAULT_LIMITS.gas, model_bytes=len(model_bytes), nodes=256, golden_runs=1,
                           gas_per_call=meter(model_bytes).gas)
    # Only the check paid: charged at execution, then refused before the golden runs.
    short = _upload(net, model_bytes, check)
    block = net.step(short)
    last = block.results[-1]
    assert last.status is TxStatus.MODEL_REJECTED and "does not cover the golden runs" in last.log
    last_chunk = split_model(model_bytes, meta, len(model_bytes) // 2 + 1)[-1]
    assert last.gas_used == params.vm.gas_chunk_base + params.vm.gas_chunk_per_byte * len(last_chunk.data) + check
    # The full quote registers it.
    block = net.step(_upload(net, model_bytes, full))
    assert block.results[-1].status is TxStatus.OK


def lookup_model(entries: int) -> bytes:
    """y = table[x] with a 1-D int32 table of `entries` constants: an exact lookup, and a model whose check
    is slow per byte (ONNX's data propagation reads every element of a 1-D integer constant, ~340 ns each)."""
    table = numpy_helper.from_array(np.arange(entries, dtype=np.int32) * 7, "table")
    raw = _model([helper.make_node("Gather", ["table", "x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], [table])
    return canonicalize(raw, {"x": (1, 1)})


def test_a_registration_pays_its_check_per_propagated_element_so_integer_vectors_cannot_undercut_it(
        chains: Devnet) -> None:
    """The attack: a model made of 1-D integer constants, whose check costs ~340 ns per element (~85 ns per
    byte) while bytes are priced for weights that shape inference skips (`graph.skeleton`). Its completing
    chunk pays per propagated element too: a chunk that carries only the per-byte and per-node price runs
    out of gas, fee paid, before the checker runs; the full quote registers it."""
    net = chains
    params = net.genesis.params
    vm = params.vm
    entries = 1 << 16
    model_bytes = lookup_model(entries)
    check = registration_check_gas(params, model_bytes)
    per_element = vm.gas_register_per_propagated_element
    assert per_element > 0 and check == (vm.gas_register_base + vm.gas_register_per_byte * len(model_bytes)
                                         + vm.gas_register_per_node * 1 + per_element * entries)
    meta = meta_for("reg", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[np.array([[3]], np.int32)]])
    full = registration_gas(params, model_bytes, meta)
    block = net.step(_upload(net, model_bytes, full - per_element * entries))
    assert block.results[-1].status is TxStatus.OUT_OF_GAS
    # The upload stays open: its last chunk again, paying the full quote, registers the model.
    owner = net.account(5)
    last = split_model(model_bytes, meta, len(model_bytes) // 2 + 1)[-1]
    gas = chunk_gas(params, last, len(model_bytes), True, registration=full)
    nonce = net.apps[0].view().account(owner.address).nonce
    block = net.step([build_tx(owner, last, chain_id=net.genesis.chain_id, nonce=nonce, gas_limit=gas, fee=gas)])
    assert block.results[-1].status is TxStatus.OK
    registered = RegistrationData.decode(block.results[-1].data)
    assert net.apps[0].view().model(registered.model_id) is not None


def test_a_registration_runs_its_golden_inputs_on_the_checks_session_in_one_worker_job() -> None:
    """The registration is one job in a real worker: the check, then the golden inputs on the session the
    check built, giving the same outputs as a cold load of the model; the worker runs none of them when the
    gas left is one short of `registration_load_gas` (the VM's refusal rule, so nothing unpaid runs); a golden
    input that fails with a verdict (a Gather index out of range) comes back as None, never a fault."""
    model_bytes = chain_model(16, 5)
    spec_ = model_spec(meta_for("reg", model_bytes, [spec("x", DType.INT32, (1, 1))],
                                [spec("y", DType.INT32, (1, 1))], ModelClass.EXACT, [[np.array([[3]], np.int32)]]),
                       DEFAULT_LIMITS)
    inputs = ({"x": np.array([[3]], np.int32)}, {"x": np.array([[-9]], np.int32)})
    with WorkerPool(1) as pool:
        [checked] = pool.run_batch([CheckJob(model_bytes, spec_)])
        assert checked.info is not None and checked.golden is None
        need = registration_load_gas(DEFAULT_LIMITS.gas, nodes=16, golden_runs=2, gas_per_call=checked.info.gas_per_call)
        runs = pool.describe()[0]["runs"]
        [short] = pool.run_batch([CheckJob(model_bytes, spec_, inputs, need - 1)])
        assert short.info == checked.info and short.golden is None
        assert pool.describe()[0]["runs"] == runs  # nothing ran that the gas left did not pay for
        [paid] = pool.run_batch([CheckJob(model_bytes, spec_, inputs, need)])
        assert pool.describe()[0]["runs"] == runs + 2
        assert paid.golden is not None and len(paid.golden) == 2
        cold = pool.run_batch([InferJob(ModelPackage(b"cold", model_bytes, spec_), x) for x in inputs])
        for got, want in zip(paid.golden, cold, strict=True):
            assert got is not None and want.outputs is not None
            assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.outputs.items()}
        assert [int(v) for v in paid.golden[0]["y"].ravel()] == [3 + 16 * 5]
        table = lookup_model(64)
        table_spec = model_spec(meta_for("t", table, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                                         ModelClass.EXACT, [[np.array([[3]], np.int32)]]), DEFAULT_LIMITS)
        [bad] = pool.run_batch([CheckJob(table, table_spec, ({"x": np.array([[3]], np.int32)},
                                                             {"x": np.array([[64]], np.int32)}), 1 << 62)])
        assert bad.info is not None and bad.golden is not None
        assert bad.golden[0] is not None and [int(v) for v in bad.golden[0]["y"].ravel()] == [21]
        assert bad.golden[1] is None
        assert pool.restarts == 0
