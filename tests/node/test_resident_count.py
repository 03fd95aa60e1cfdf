"""The count bound of resident models (vm/resident.py `MAX_RESIDENT_MODELS`, 64), pending activations included,
on a real running validator with its RPC server: 64 small resident registrations are held; the 65th is refused
by `inferchain model register` before anything is signed, with the chain's own one-line reason (RPC
`resident_models`), and by the chain at its completing chunk with that same reason when sent anyway. The
byte bound (`vm.max_resident_bytes`) is far away: only the count refuses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from core.tensor import DType
from core.tx import Transaction
from node.cli.root import cli
from node.client import Client
from tests.node.clinode import validator_and_cli
from tests.node.helpers import account, running
from tests.node.test_deferred_name import matmul_model
from tests.node.uploads import upload_txs
from tests.vm.helpers import meta_for, spec
from tools.genesis import make_genesis
from vm.resident import MAX_RESIDENT_MODELS
from vm.sandbox.canonicalize import canonicalize
from vm.txs import ModelClass

pytestmark = pytest.mark.node

K = 16  # float32[1,16] x W[16,4]: ~350 bytes, resident here (its ~1.04M gas check is over 1M)
REFUSAL = f"{MAX_RESIDENT_MODELS} resident models are held already (vm.resident.MAX_RESIDENT_MODELS)"


def small_model(seed: int) -> bytes:
    return canonicalize(matmul_model(K, seed), {"x": (1, K)})


@pytest.mark.trio
async def test_the_65th_resident_model_is_refused_by_the_cli_and_by_the_chain_with_one_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Activations spaced by 100,000 gas of background work a block: each entry takes ~11 blocks, so most of
    # the 64 stay pending (pending and registered ones count alike).
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000,
                                                "background_gas_per_block": 100_000}})
    key = account(1)
    node, runner = validator_and_cli(tmp_path, monkeypatch, genesis, key, "payer")
    x = np.random.default_rng(7).standard_normal((1, K)).astype(np.float32)
    with trio.fail_after(240):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            url = node.rpc.url
            client = Client(url, timeout=60)
            try:
                params = node.app.current_params()

                def registrations(first: int, count: int) -> list[Transaction]:
                    nonce = client.account(key.address).nonce
                    txs: list[Transaction] = []
                    for seed in range(first, first + count):
                        body = small_model(seed)
                        meta = meta_for(f"r{seed}", body, [spec("x", DType.FLOAT32, (1, K))],
                                        [spec("y", DType.FLOAT32, (1, 4))], ModelClass.TOLERANT, [[x]], grid_k=20,
                                        tol_abs=64, tol_rel_ppm=200)
                        txs += upload_txs(params, key, node.chain_id, nonce + len(txs), body, meta)  # one chunk
                    return txs

                held = await trio.to_thread.run_sync(registrations, 0, MAX_RESIDENT_MODELS)
                results = await trio.to_thread.run_sync(lambda: client.broadcast_txs(held, mode="commit"))
                assert all(r.accepted and r.result is not None and r.result.ok for r in results), [
                    r for r in results if not (r.result is not None and r.result.ok)][:2]
                budget = await trio.to_thread.run_sync(client.call, "resident_models")
                assert budget["count"] == budget["max_models"] == MAX_RESIDENT_MODELS, budget
                assert budget["held_bytes"] < budget["max_bytes"] // 1000, budget  # the byte bound is far away
                asked = await trio.to_thread.run_sync(lambda: client.call("resident_models", {"size": 400}))
                assert asked["fits"] is False and asked["refusal"] == REFUSAL, asked

                # The CLI refuses the 65th before signing anything, with the chain's reason.
                model_file = tmp_path / "one_more.onnx"
                model_file.write_bytes(matmul_model(K, 1000))
                nonce = (await trio.to_thread.run_sync(client.account, key.address)).nonce
                refused = await trio.to_thread.run_sync(lambda: runner.invoke(
                    cli, ["model", "register", str(model_file), "--name", "one_more", "--class", "tolerant",
                          "--from", "payer", "--node", url]))
                assert refused.exit_code == 1, refused.output
                message = str(refused.exception)
                assert "\n" not in message and f"({REFUSAL})" in message, message
                assert f"by {MAX_RESIDENT_MODELS} resident models" in message, message
                assert (await trio.to_thread.run_sync(client.account, key.address)).nonce == nonce  # nothing sent

                # Sent anyway: the chain refuses its completing chunk with the same line (the fee paid).
                [extra] = await trio.to_thread.run_sync(registrations, 1000, 1)
                [result] = await trio.to_thread.run_sync(lambda: client.broadcast_txs([extra], mode="commit"))
                assert result.result is not None and result.result.status == "failed", result
                assert result.result.log == REFUSAL, result.result.log
                budget = await trio.to_thread.run_sync(client.call, "resident_models")
                assert budget["count"] == MAX_RESIDENT_MODELS, budget
            finally:
                client.close()
