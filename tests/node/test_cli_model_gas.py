"""The CLI's gas quote for a registration and for the model's first call in a block (`node.cli.model_cmd`)
equals what the chain charges (the real VM on LevelDB, two nodes), and a model whose first call could never
fit one transaction is refused before anything is signed (`uncallable`); DenseNet-121, the largest of onnx's
light CNNs that registers, is callable on the default genesis (docs/sandbox.md, "DenseNet-121: what bounds
it")."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.header import TxStatus
from core.tensor import Tensor
from core.types import Amount
from node.cli import main
from node.cli.common import CliError
from node.cli.model_cmd import _gas_quote, over_first_call_floor, uncallable
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import upload_txs, wide_meta, wide_model
from tools.backend_corpus import Registered, load_case, register
from vm.execute import infer_gas
from vm.state import RegistrationData
from vm.txs import Infer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.node


def _vm_dict(net: Devnet) -> dict[str, object]:
    """The VM parameters as the node publishes them to the CLI (genesis JSON form)."""
    vm = net.genesis.params.vm
    out: dict[str, object] = {f.name: getattr(vm, f.name) for f in dataclasses.fields(vm)
                              if f.name not in ("sandbox_limits", "gas_schedule")}
    out["gas_schedule"] = [{"name": item.name, "value": int(item.value)} for item in vm.gas_schedule]
    return json.loads(json.dumps(out, default=int))


def test_the_quote_is_what_the_chain_charges_and_an_uncallable_model_is_refused(tmp_path: Path) -> None:
    net = Devnet.start(tmp_path, devnet_genesis(4), nodes=2)
    try:
        owner = net.account(5)
        model_bytes = wide_model()
        meta = wide_meta(model_bytes)
        vm = _vm_dict(net)
        quote = _gas_quote(vm, model_bytes, meta)
        model_id = net.register(owner, model_bytes, meta)
        record = net.apps[0].view().model(model_id)
        assert record is not None
        x = (Tensor.from_numpy(np.array([[3]], np.int32)),)
        assert quote.first_call == infer_gas(net.genesis.params, record, x, first_use=True)
        uncallable({**vm, "max_tx_gas": quote.first_call}, quote)  # exactly fits: no refusal
        with pytest.raises(CliError, match="no inference on it could be included"):
            uncallable({**vm, "max_tx_gas": quote.first_call - 1}, quote)
    finally:
        net.close()


def test_densenet121_prepared_by_the_client_registers_and_its_first_call_fits_on_the_default_genesis(
        tmp_path: Path) -> None:
    """onnx's DenseNet-121 (26.5 MB canonical, 670 nodes), prepared as `inferchain model register` prepares it:
    the CLI's quote of its registration and of its first call in a block are within max_tx_gas, so the CLI
    does not refuse it as uncallable; the real VM on the default genesis registers it (the upload over as
    many blocks as the block bytes need), charges its first inference exactly the quote, and runs it."""
    case = load_case("light/light_densenet121")
    prepared = register(case)
    assert isinstance(prepared, Registered), prepared
    canonical, meta = prepared.canonical, prepared.meta
    net = Devnet.start(tmp_path, devnet_genesis(4), nodes=1)
    try:
        vm = _vm_dict(net)
        cap = int(vm["max_tx_gas"])  # type: ignore[call-overload]
        quote = _gas_quote(vm, canonical, meta)
        assert quote.registration <= cap and quote.first_call <= cap, quote
        uncallable(vm, quote)  # the CLI registers it
        owner = net.account(5)
        params = net.genesis.params
        txs = upload_txs(owner, canonical, meta, params=params, chain_id=net.genesis.chain_id,
                         first_nonce=net.apps[0].view().account(owner.address).nonce)
        net.nonces[owner.address] = int(txs[-1].nonce) + 1
        per_block = (params.consensus.max_block_bytes - (64 << 10)) // len(txs[0].encode())
        for start in range(0, len(txs), per_block):
            block = net.step(txs[start:start + per_block])
            assert all(r.status is TxStatus.OK for r in block.results), [r.log for r in block.results]
        model_id = RegistrationData.decode(block.results[-1].data).model_id
        assert block.results[-1].gas_used - params.vm.gas_chunk_base - params.vm.gas_chunk_per_byte * len(
            txs[-1].payload) <= quote.registration
        record = net.apps[0].view().model(model_id)
        assert record is not None
        x = tuple(Tensor.from_numpy(case.inputs[s.name].astype(s.dtype.numpy)) for s in meta.inputs)
        assert infer_gas(params, record, x, first_use=True) == quote.first_call
        block = net.step([net.tx(net.account(6), Infer(model_id, x, Amount(0)), gas_limit=quote.first_call)])
        [result] = block.results
        assert result.status is TxStatus.OK, result.log
        assert result.gas_used == quote.first_call
        assert [tuple(t.shape) for t in result.outputs] == [tuple(s.shape) for s in meta.outputs]
    finally:
        net.close()


def _matmul_model(path: Path, cols: int) -> Path:
    """x [1, 4096] @ w [4096, cols], w constant: 16 KiB of weight per column."""
    weight = numpy_helper.from_array(np.full((4096, cols), 0.5, np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])], initializer=[weight])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
                     .SerializeToString())
    return path


def test_a_big_model_is_resident_so_only_a_synchronous_one_is_refused_by_its_size_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 64 MiB weight's 268M of check gas is over `vm.defer_check_gas_over`: a deferred activation, so a
    resident model (vm/resident.py) whose cold load (3,584 gas per KiB, 235M) is paid once, in tokens, and
    whose calls pay no per-KiB load. The CLI's size floor (`over_first_call_floor`) no longer refuses it: it
    goes on to the check and the golden runs, which refuse golden inputs of the wrong shape. The floor still
    refuses the same bytes where they would register synchronously (the threshold raised over its check),
    before any check. --dry-run with no node answering prices from genesis.json."""
    np.savez(tmp_path / "golden.npz", x=np.zeros((1, 3), np.float32))  # not the model's shape
    with socket.socket() as s:  # a port the OS just handed out and took back: no node answers there
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"

    def dry_run(path: Path) -> str:
        with pytest.raises(SystemExit) as exited:
            main(["model", "register", str(path), "--name", "big", "--class", "tolerant", "--from", "nobody",
                  "--node", url, "--golden-inputs", str(tmp_path / "golden.npz"), "--dry-run"])
        assert exited.value.code == 1
        return capsys.readouterr().err.strip().splitlines()[-1]

    big = _matmul_model(tmp_path / "big.onnx", 4096)
    error = dry_run(big)
    assert error == "error: golden input 'x' has shape (1, 3), the model takes (1, 4096)", error
    vm = json.loads((REPO / "genesis.json").read_text())["vm"]
    over_first_call_floor(vm, big.read_bytes())  # resident: no floor
    with pytest.raises(CliError, match="no inference on it could be included") as refused:
        over_first_call_floor({**vm, "defer_check_gas_over": 10**12}, big.read_bytes())
    floor = int(str(refused.value).split()[8])  # infer base + load base + 3,584 per KiB (the weight and a little)
    assert 3584 * 4 * 4096 * 4 < floor < 3584 * (4 * 4096 * 4 + 4) + 70_000, refused.value
