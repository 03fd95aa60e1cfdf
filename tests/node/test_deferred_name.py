"""A model name held by a pending deferred registration, or by an upload in progress, on a real running
validator with its RPC server: the `model_name` RPC says who holds it, and `inferchain model register`
refuses the name before signing anything (node/cli/model_cmd.py `ensure_name_free`; before, it read only the
registered models, and the chain refused the first chunk for its fee)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from core.hashing import sha256
from node.cli.root import cli
from node.client import Client
from node.config import RPCSection
from tests.node.helpers import account, local_node, make_home, running
from tests.vm.deferred_models import weights_meta, weights_model
from tools.genesis import make_genesis
from vm.execute import chunk_gas, completing_gas
from vm.models import load_model
from vm.txs import build_tx, compute_model_id, split_model

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_register_refuses_a_name_held_by_a_pending_registration_or_an_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Activations spaced by 10,000 gas of background work a block: the ~3M gas entry stays pending for
    # hundreds of blocks, far beyond this test.
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000, "background_gas_per_block": 10_000}})
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

                held = await trio.to_thread.run_sync(upload, weights_model(91), "held")
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
            finally:
                client.close()
