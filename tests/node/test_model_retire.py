"""`inferchain model retire` on a real running validator with its RPC server (vm/retire.py): the owner retires
a pending resident registration by name, the deposit comes back, the name is free again, and an inference on
the model waiting in the mempool is dropped with its reason (node/mempool.py `drop_inferences`) instead of
waiting to fail in a block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trio
from click.testing import CliRunner

from core.address import encode_address
from core.hashing import sha256
from core.keys import PrivateKey
from core.tensor import DType, Tensor
from core.types import Amount
from node.cli.root import cli
from node.client import Client
from node.config import RPCSection
from node.mempool import RemovalReason
from tests.node.helpers import account, local_node, make_home, running, transfer
from tests.node.uploads import upload_txs
from tests.vm.deferred_models import K, weights_meta, weights_model
from tools.genesis import make_genesis
from vm.retire import compute_resident_deposit
from vm.txs import Infer, build_tx, compute_model_id

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_the_owner_retires_a_pending_model_through_the_cli_and_its_queued_inferences_are_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Activations spaced by 10,000 gas of background work a block: the entry stays pending beyond this test.
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000, "background_gas_per_block": 10_000}})
    home = make_home(tmp_path, "validator", genesis, validator=0)
    node = local_node(home, config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")))
    owner, caller, stranger = account(1), account(2), account(3)
    poor = PrivateKey.derive("retire tests", "poor", 0)  # can pay a registration's fees and check, not its deposit
    monkeypatch.setenv("INFERCHAIN_KEYRING", str(tmp_path / "keys"))
    monkeypatch.delenv("INFERCHAIN_PASSPHRASE", raising=False)
    runner = CliRunner()
    for name, key in (("owner", owner), ("stranger", stranger), ("poor", poor), ("genesis-owner", account(0))):
        imported = runner.invoke(cli, ["keys", "import", name, "--seed", key.seed.hex()])
        assert imported.exit_code == 0, imported.output
    with trio.fail_after(120):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            url = node.rpc.url
            client = Client(url, timeout=30)
            try:
                params = node.app.current_params()
                body = weights_model(95)
                meta = weights_meta("retiring", body)
                model_id = compute_model_id(sha256(body), meta)

                def upload() -> None:
                    txs = upload_txs(params, owner, node.chain_id, client.account(owner.address).nonce, body, meta)
                    results = client.broadcast_txs(txs, mode="commit")
                    assert all(r.accepted and r.result is not None and r.result.ok for r in results), results

                # The genesis models' owner: a PoI model is refused; an ordinary (synchronous) one retires with no
                # deposit to refund and leaves the registry.
                names = {m.name for m in await trio.to_thread.run_sync(client.models)}
                assert {"digits_mlp", "poi_mix"} <= names
                poi = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "retire", "poi_mix", "--from", "genesis-owner", "--node", url]))
                assert poi.exit_code == 1 and "is in the PoI set" in str(poi.exception), poi.output
                plain = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "retire", "digits_mlp", "--from", "genesis-owner", "--node", url, "--json"]))
                assert plain.exit_code == 0 and json.loads(plain.output)["deposit_refunded"] == 0, plain.output
                names = {m.name for m in await trio.to_thread.run_sync(client.models)}
                assert "digits_mlp" not in names and "poi_mix" in names

                await trio.to_thread.run_sync(upload)

                # `model register` refuses, before signing anything, a resident registration whose sender cannot
                # also lock its deposit (the chain would fail the completing chunk after the others were paid).
                funded = await trio.to_thread.run_sync(lambda: client.broadcast_tx(
                    transfer(node.chain_id, account(4), poor, 30_000_000,
                             client.account(account(4).address).nonce), mode="commit"))
                assert funded.result is not None and funded.result.ok
                model_file = tmp_path / "big.onnx"
                model_file.write_bytes(weights_model(96))
                refused = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "register", str(model_file), "--name", "unpaid", "--class", "tolerant",
                          "--from", "poor", "--node", url]))
                wanted = compute_resident_deposit(params, len(weights_model(96)))
                assert refused.exit_code == 1, refused.output
                assert f"locks a resident deposit of {wanted}" in str(refused.exception), refused.exception
                assert (await trio.to_thread.run_sync(client.account, poor.address)).nonce == 0  # nothing sent
                held = await trio.to_thread.run_sync(client.model_name, "retiring")
                assert held is not None and held["status"] == "pending"
                # An inference on it waits in the mempool behind a nonce gap (never included on its own).
                nonce = (await trio.to_thread.run_sync(client.account, caller.address)).nonce
                x = np.zeros((1, K), np.float32)
                queued = build_tx(caller, Infer(model_id, (Tensor(DType.FLOAT32, (1, K), x.tobytes()),), Amount(0)),
                                  chain_id=node.chain_id, nonce=nonce + 1, gas_limit=10_000_000, fee=10_000_000)
                answer = await trio.to_thread.run_sync(lambda: client.call("broadcast_tx", {"tx": queued.encode().hex()}))
                assert answer["accepted"] is True, answer
                before = (await trio.to_thread.run_sync(client.account, owner.address)).balance

                # Another key is refused by the chain (its fee paid); the owner's retirement goes through.
                refused = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "retire", "retiring", "--from", "stranger", "--node", url]))
                assert refused.exit_code == 1 and "owned by another account" in str(refused.exception), refused.output
                retired = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "retire", "retiring", "--from", "owner", "--node", url, "--json"]))
                assert retired.exit_code == 0, retired.output
                doc = json.loads(retired.output)
                deposit = compute_resident_deposit(params, len(body))
                assert doc["model_id"] == model_id.hex() and doc["deposit_refunded"] == deposit > 0
                after = (await trio.to_thread.run_sync(client.account, owner.address)).balance
                fee = params.vm.gas_retire_model * params.vm.min_gas_price
                assert after == before - fee + deposit
                assert await trio.to_thread.run_sync(client.model_name, "retiring") is None
                doc = await trio.to_thread.run_sync(client.model_registration, model_id.hex())
                assert doc == {"model_id": model_id.hex(), "status": "retired", "retired_at": doc["retired_at"],
                               "by_governance": False, "owner": encode_address(owner.address)}
                assert doc["retired_at"] > 0
                shown = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "status", model_id.hex(), "--node", url]))
                assert shown.output.strip() == f"retired at height {doc['retired_at']} by its owner", shown.output
                [status] = await trio.to_thread.run_sync(
                    lambda: client.call("tx_status", {"hashes": [queued.hash.hex()]}))
                assert status == {"hash": queued.hash.hex(), "status": "rejected",
                                  "reason": RemovalReason.MODEL_RETIRED.value}, status
                assert queued.hash not in node.mempool
            finally:
                client.close()
