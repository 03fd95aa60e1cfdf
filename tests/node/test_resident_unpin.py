"""A running validator drops the pinned sessions of retired models (node/service.py `_unpin_departed` after each
commit that shrinks the resident set; vm/resident.py `unpin_departed`; the worker protocol's `Unpin`).

The attack: register-and-retire cycles, each paying a resident registration (its deposit refunded at
retirement), and each leaving one more session pinned in every validator's workers (the node loads a resident
model ahead, vm/app.py `preload_resident`), until those workers restart: past `vm.max_resident_bytes`, the
bound the chain keeps for them. Real node with its RPC server, real worker process, real LevelDB."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from core.hashing import sha256
from core.types import Hash32
from node.client import Client
from node.config import RPCSection
from node.service import Node
from tests.node.helpers import account, make_home, running, wait_until
from tests.node.uploads import upload_txs
from tests.vm.deferred_models import weights_meta, weights_model
from tools.genesis import make_genesis
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.txs import RetireModel, build_tx, compute_model_id

pytestmark = pytest.mark.node

MODEL_BYTES = len(weights_model(1))
BOUND = MODEL_BYTES * 3 // 2  # room for one resident model at a time
CYCLES = 3


@pytest.mark.trio
async def test_register_and_retire_cycles_leave_no_more_pinned_than_the_resident_bound(tmp_path: Path) -> None:
    # Activations spaced by 10,000 gas of background work a block: each entry stays pending (and resident).
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000, "background_gas_per_block": 10_000,
                                                "max_resident_bytes": BOUND}})
    home = make_home(tmp_path, "validator", genesis, validator=0)
    pool = WorkerPool(1, WorkerLimits(resident_model_bytes=BOUND))
    node = Node(home, config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")), executor=pool)
    owner = account(1)

    def pinned() -> dict[str, int]:
        [info] = pool.describe()
        return {"resident": int(info["resident"]), "resident_bytes": int(info["resident_bytes"])}

    with trio.fail_after(180):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            client = Client(node.rpc.url, timeout=30)
            params = node.app.current_params()

            def register(seed: int) -> bytes:
                body = weights_model(seed)
                meta = weights_meta(f"cycle{seed}", body)
                txs = upload_txs(params, owner, node.chain_id, client.account(owner.address).nonce, body, meta)
                results = client.broadcast_txs(txs, mode="commit")
                assert all(r.accepted and r.result is not None and r.result.ok for r in results), results
                return bytes(compute_model_id(sha256(body), meta))

            def retire(model_id: bytes) -> None:
                gas = params.vm.gas_retire_model
                tx = build_tx(owner, RetireModel(Hash32(model_id)), chain_id=node.chain_id,
                              nonce=client.account(owner.address).nonce, gas_limit=gas,
                              fee=gas * params.vm.min_gas_price)
                done = client.broadcast_tx(tx, mode="commit")
                assert done.result is not None and done.result.ok, done

            for cycle in range(CYCLES):
                model_id = await trio.to_thread.run_sync(register, 90 + cycle)
                # The node loads the pending resident model ahead, pinned in the block path's worker.
                await wait_until(lambda m=model_id: pool.holds(m), 60)  # type: ignore[misc]
                held = await trio.to_thread.run_sync(pinned)
                assert held["resident"] == 1 and held["resident_bytes"] <= BOUND, (cycle, held)
                await trio.to_thread.run_sync(retire, model_id)
                # After the commit that retired it, the node tells the worker to drop its session.
                await wait_until(lambda m=model_id: not pool.holds(m), 30)  # type: ignore[misc]
            held = await trio.to_thread.run_sync(pinned)
            assert held == {"resident": 0, "resident_bytes": 0}, held
            assert node.unpinned == CYCLES and pool.restarts == 0
