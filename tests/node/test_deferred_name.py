"""A model name held by a pending deferred registration, or by an upload in progress, on a real running
validator with its RPC server: the `model_name` RPC says who holds it, and `inferchain model register`
refuses the name before signing anything (node/cli/model_cmd.py `ensure_name_free`; before, it read only the
registered models, and the chain refused the first chunk for its fee).

On the same node, the resident bound (vm/resident.py): the pending registration holds most of
`vm.max_resident_bytes`, the `resident_models` RPC reports the bytes and count held and applies the chain's
rule to a size (bad params get typed errors), and `model register` refuses a resident model that does not
fit before signing anything (before, the chain refused its completing chunk after every chunk fee was
paid); a smaller resident model's `--dry-run` quotes the budget and `vm.max_postponements`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trio
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from core.hashing import sha256
from node.cli.root import cli
from node.client import Client, RpcError
from node.config import RPCSection
from node.rpc.errors import INVALID_PARAMS
from tests.node.helpers import account, local_node, make_home, running
from tests.vm.deferred_models import weights_meta, weights_model
from tools.genesis import make_genesis
from vm.execute import chunk_gas, completing_gas
from vm.models import load_model
from vm.resident import MAX_RESIDENT_MODELS
from vm.txs import build_tx, compute_model_id, split_model

pytestmark = pytest.mark.node

# The pending 512 KiB registration fits, with room for a 256 KiB resident model and not for another 512 KiB one.
RESIDENT_BOUND = 800 * 1024


def matmul_model(k: int, seed: int) -> bytes:
    """float32[1,k] x W[k,4]: 16·k bytes of seeded random weights, resident on this chain from ~200 KiB."""
    w = np.random.default_rng(seed).standard_normal((k, 4)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "weights",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def check_resident_bound(runner: CliRunner, client: Client, url: str, tmp_path: Path, held_bytes: int) -> None:
    budget = client.call("resident_models")
    assert (budget["held_bytes"], budget["count"], budget["max_bytes"]) == (held_bytes, 1, RESIDENT_BOUND)
    assert budget["max_models"] == MAX_RESIDENT_MODELS and "fits" not in budget
    asked = client.call("resident_models", {"size": RESIDENT_BOUND - held_bytes + 1})
    assert asked["fits"] is False and "over vm.max_resident_bytes" in asked["refusal"], asked
    assert client.call("resident_models", {"size": RESIDENT_BOUND - held_bytes})["fits"] is True
    for bad in ({"size": 0}, {"size": -5}, {"size": "1"}, {"size": True}, {"size": 1.5}, {"bytes": 1}):
        with pytest.raises(RpcError) as refused:
            client.call("resident_models", bad)
        assert refused.value.code == INVALID_PARAMS, bad
    big = tmp_path / "big.onnx"
    big.write_bytes(matmul_model(32_768, 93))  # 512 KiB of weights: held + this > the bound
    result = runner.invoke(cli, ["model", "register", str(big), "--name", "big", "--class", "tolerant",
                                 "--from", "payer", "--node", url])
    assert result.exit_code == 1, result.output
    message = str(result.exception)
    assert "\n" not in message
    assert f"vm.max_resident_bytes {RESIDENT_BOUND}" in message, message
    assert f"{held_bytes} bytes held by 1 resident models" in message, message
    assert "this model is 5" in message and "would refuse its last chunk" in message, message
    dry = runner.invoke(cli, ["model", "register", str(big), "--name", "big", "--class", "tolerant", "--dry-run", "--from", "payer",
                              "--node", url])
    assert dry.exit_code == 1 and f"vm.max_resident_bytes {RESIDENT_BOUND}" in str(dry.exception), dry.output
    small = tmp_path / "small.onnx"
    small.write_bytes(matmul_model(16_384, 94))  # 256 KiB: resident (its check is over 1M gas), and it fits
    dry = runner.invoke(cli, ["model", "register", str(small), "--name", "small", "--class", "tolerant", "--dry-run", "--from", "payer",
                              "--node", url, "--json"])
    assert dry.exit_code == 0, dry.output
    quote = json.loads(dry.output)
    assert quote["resident"] is True and quote["max_postponements"] == 3, quote  # make_genesis's default
    assert "up to 3 times" in quote["activation"] and "rejected as unchecked" in quote["activation"]
    assert (quote["resident_bytes_held"], quote["max_resident_bytes"]) == (held_bytes, RESIDENT_BOUND)


@pytest.mark.trio
async def test_register_refuses_a_name_held_by_a_pending_registration_or_an_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Activations spaced by 10,000 gas of background work a block: the ~3M gas entry stays pending for
    # hundreds of blocks, far beyond this test.
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000, "background_gas_per_block": 10_000,
                                                 "max_resident_bytes": RESIDENT_BOUND}})
    home = make_home(tmp_path, "validator", genesis, validator=0)
    node = local_node(home, config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")))
    key = account(1)
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    runner = CliRunner()
    imported = runner.invoke(cli, ["keys", "import", "payer", "--seed", key.seed.hex()])
    assert imported.exit_code == 0, imported.output
    other = tmp_path / "other.onnx"
    other.write_bytes(load_model("digits_mlp").model_bytes)
    with trio.fail_after(120):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            url = node.rpc.url
            client = Client(url, timeout=30)
            try:
                params = node.app.current_params()

                def upload(body: bytes, name: str, n_chunks: int | None = None) -> bytes:
                    meta = weights_meta(name, body)
                    chunks = split_model(body, meta, 256 * 1024)
                    nonce = client.account(key.address).nonce
                    txs = []
                    for i, chunk in enumerate(chunks[:n_chunks]):
                        last = i == len(chunks) - 1
                        gas = chunk_gas(params, chunk, len(body), last,
                                        registration=completing_gas(params, body, meta) if last else 0)
                        txs.append(build_tx(key, chunk, chain_id=node.chain_id, nonce=nonce + i, gas_limit=gas,
                                            fee=gas * params.vm.min_gas_price))
                    results = client.broadcast_txs(txs, mode="commit")
                    assert all(r.accepted and r.result is not None and r.result.ok for r in results), results
                    return bytes(compute_model_id(sha256(body), meta))

                held_body = weights_model(91)
                held = await trio.to_thread.run_sync(upload, held_body, "held")
                partial = await trio.to_thread.run_sync(upload, weights_model(92), "partial", 1)
                pending = await trio.to_thread.run_sync(client.model_name, "held")
                assert pending is not None and pending["status"] == "pending" and pending["model_id"] == held.hex()
                assert int(pending["activates_at"]) > node.height
                uploading = await trio.to_thread.run_sync(client.model_name, "partial")
                assert uploading is not None and uploading["status"] == "uploading"
                assert uploading["model_id"] == partial.hex()
                assert await trio.to_thread.run_sync(client.model_name, "free") is None
                nonce = (await trio.to_thread.run_sync(client.account, key.address)).nonce

                def register(name: str) -> str:
                    result = runner.invoke(cli, ["model", "register", str(other), "--name", name, "--class",
                                                 "tolerant", "--from", "payer", "--node", url])
                    assert result.exit_code == 1, result.output
                    message = str(result.exception)  # the CLI's one-line error
                    assert "\n" not in message
                    return message

                refused = await trio.to_thread.run_sync(register, "held")
                assert "the model name 'held' is held by a pending registration" in refused, refused
                assert f"activates at height {pending['activates_at']}" in refused and "model status" in refused
                refused = await trio.to_thread.run_sync(register, "partial")
                assert "the model name 'partial' is held by an upload in progress" in refused, refused
                after = await trio.to_thread.run_sync(client.account, key.address)
                assert after.nonce == nonce  # nothing was signed or sent
                await trio.to_thread.run_sync(check_resident_bound, runner, client, url, tmp_path, len(held_body))
                after = await trio.to_thread.run_sync(client.account, key.address)
                assert after.nonce == nonce  # nothing was signed or sent
            finally:
                client.close()
