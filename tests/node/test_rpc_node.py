"""The RPC server and typed client in front of a real node (one validator, in process, real LevelDB, real
ONNX Runtime, real libp2p host): the answers the CLI relies on, and the proofs it checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
import trio

from core.tensor import Tensor
from node.client import Client, RpcError
from node.config import RPCSection
from node.rpc import errors as E
from tests.node.helpers import (
    account,
    genesis_doc,
    local_node,
    make_home,
    model_id,
    running,
    transfer,
    wait_until,
)
from vm.txs import Infer, build_tx

pytestmark = pytest.mark.node

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """The sync client must not block the node's event loop."""
    return await trio.to_thread.run_sync(fn)


@pytest.mark.trio
async def test_rpc_against_a_running_node(tmp_path: Path) -> None:
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    # The node's own RPC server and metrics, as `inferchain node run` serves them (port 0: a free port).
    node = local_node(home, config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")))
    with trio.fail_after(120):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            url = node.rpc.url
            await wait_until(lambda: node.height >= 2, 60)
            client = Client(url, timeout=30)
            try:
                status = await in_thread(client.status)
                assert status.chain_id == node.chain_id and status.is_validator and status.height >= 2
                # A height above the head is not found (never a block without its commit), as one line.
                with pytest.raises(RpcError) as missing:
                    await in_thread(lambda: client.block(status.height + 1_000))
                assert missing.value.code == E.NOT_FOUND
                assert missing.value.message == f"no block at height {status.height + 1_000}"
                head = await in_thread(lambda: client.block(status.height))
                assert head.commit is not None and head.commit.block_id == head.block.id

                # A transfer in commit mode lands and moves funds; the proof checks against the header.
                sender, receiver = account(0), account(5)
                before = (await in_thread(lambda: client.account(receiver.address))).balance
                nonce = (await in_thread(lambda: client.account(sender.address))).nonce
                tx = transfer(node.chain_id, sender, receiver, 777, nonce)
                landed = await in_thread(lambda: client.broadcast_tx(tx, mode="commit", timeout=60))
                assert landed.result is not None and landed.result.ok, landed
                acc = await in_thread(lambda: client.account(receiver.address))
                assert acc.balance == before + 777
                header = (await in_thread(lambda: client.block(acc.height))).header
                assert acc.verify(header.state_root)

                # The same transaction again is refused by the mempool (its nonce is used).
                with pytest.raises(RpcError) as refused:
                    await in_thread(lambda: client.broadcast_tx(tx))
                assert refused.value.code == E.TX_REJECTED

                # An inference of an exact genesis model, with its proof against a real commit.
                x = np.arange(64, dtype=np.uint8).reshape(1, 64) % 17
                payload = Infer(model_id("digits_int8"), (Tensor.from_numpy(x),), 0)
                infer = build_tx(sender, payload, chain_id=node.chain_id, nonce=nonce + 1, gas_limit=5_000_000,
                                 fee=5_000_000)
                done = await in_thread(lambda: client.broadcast_tx(infer, mode="commit", timeout=60))
                assert done.result is not None and done.result.ok, done
                await wait_until(lambda: node.blockstore.commit(done.height) is not None, 30)
                proof = await in_thread(lambda: client.inference(infer.hash))
                vset = (await in_thread(lambda: client.validators(proof.height))).validator_set()
                assert proof.verify(vset)
                assert proof.outputs[0].dtype.numpy.name == "int32"

                # Blocks, models, validators, PoI, params and metrics from the real node.
                info = await in_thread(lambda: client.block(done.height))
                assert infer.hash in [t.hash for t in info.block.txs]
                names = {m.name for m in await in_thread(client.models)}
                assert {"digits_int8", "digits_mlp", "poi_mix"} <= names
                scores = await in_thread(client.poi)
                assert len(scores) == 1
                params = await in_thread(lambda: client.call("params"))
                assert params["vm"]["gas_transfer"] > 0
                metrics = (await in_thread(lambda: httpx.get(url + "/metrics"))).text
                assert "inferchain_height" in metrics and "inferchain_block_interval_seconds_count" in metrics
                assert 'inferchain_inference_seconds_count{phase="run"}' in metrics  # the node's timed executor
            finally:
                client.close()
