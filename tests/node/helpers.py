"""Shared helpers of the node tests: devnet genesis, node homes in tmp_path, running nodes, waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import trio

from core.keys import PrivateKey
from core.tensor import Tensor
from core.tx import Transaction
from node.config import ConsensusSection, NodeConfig, P2PSection, RPCSection, SyncSection
from node.home import NodeHome, init_home
from node.precompute import DeferredPrecompute
from node.service import Node
from tools.genesis import DEFAULT_SEED_PHRASE, account_key, make_genesis, validator_key
from vm.models import manifest
from vm.sandbox.executor import LocalExecutor
from vm.txs import Infer, Transfer, build_tx

SEED = DEFAULT_SEED_PHRASE
# Short timeouts: the nodes share one process (and two cores) with the test.
FAST = ConsensusSection(timeout_propose_ms=2000, timeout_propose_delta_ms=500, timeout_prevote_ms=500,
                        timeout_prevote_delta_ms=250, timeout_precommit_ms=500, timeout_precommit_delta_ms=250,
                        timeout_commit_ms=100)


def genesis_doc(validators: int) -> dict[str, Any]:
    return make_genesis(validators)


def make_home(root: Path, name: str, genesis: dict[str, Any], *, validator: int | None,
              bootstrap: tuple[str, ...] = (), consensus: ConsensusSection = FAST) -> NodeHome:
    cfg = NodeConfig(moniker=name, p2p=P2PSection(listen_addrs=("/ip4/127.0.0.1/tcp/0",), bootstrap=bootstrap,
                                                   heartbeat_s=0.5),
                     rpc=RPCSection(enabled=False), consensus=consensus, sync=SyncSection(batch=16))
    return init_home(root / name, genesis, config=cfg, node_key_seed=name.encode(),
                     validator_key=validator_key(SEED, validator) if validator is not None else None,
                     generate_validator_key=False)


def with_bootstrap(home: NodeHome, bootstrap: tuple[str, ...]) -> NodeConfig:
    cfg = home.load_config()
    return cfg.replace(p2p=cfg.p2p.__class__(listen_addrs=cfg.p2p.listen_addrs, bootstrap=bootstrap,
                                             heartbeat_s=cfg.p2p.heartbeat_s))


def local_node(home: NodeHome, **kwargs: Any) -> Node:
    """A node whose VM runs models in-process (real ONNX Runtime, no worker processes)."""
    return Node(home, executor=LocalExecutor(), **kwargs)


@asynccontextmanager
async def running(node: Node) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        yield node
        nursery.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], limit_s: float, poll: float = 0.05) -> None:
    with trio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110 - node state with no event to wait on
            await trio.sleep(poll)


def account(i: int) -> PrivateKey:
    return account_key(SEED, i)


def transfer(chain_id: str, key: PrivateKey, to: PrivateKey, amount: int, nonce: int,
             gas_limit: int = 10_000) -> Transaction:
    return build_tx(key, Transfer(to.address, amount), chain_id=chain_id, nonce=nonce, gas_limit=gas_limit,
                    fee=gas_limit)


def model_id(name: str) -> Any:
    from vm.genesis import parse_genesis

    for m in parse_genesis(make_genesis(1)).models:
        if m.name == name:
            return m.model_id
    raise KeyError(name)


def infer_digits_int8(chain_id: str, key: PrivateKey, nonce: int, seed: int = 0) -> Transaction:
    spec = next(m for m in manifest()["models"] if m["name"] == "digits_int8")
    shape = tuple(spec["inputs"][0]["shape"])
    x = np.random.default_rng(seed).integers(0, 17, size=shape, dtype=np.uint8)
    payload = Infer(model_id("digits_int8"), (Tensor.from_numpy(x),), 0)
    gas = 5_000_000
    return build_tx(key, payload, chain_id=chain_id, nonce=nonce, gas_limit=gas, fee=gas)


def infer_model(chain_id: str, key: PrivateKey, nonce: int, name: str, seed: int = 0) -> Transaction:
    """An inference of one of the committed demo models on a random input of its shape and dtype."""
    spec = next(m for m in manifest()["models"] if m["name"] == name)
    inp = spec["inputs"][0]
    rng = np.random.default_rng(seed)
    shape = tuple(inp["shape"])
    if inp["dtype"] == "float32":
        x = rng.random(size=shape, dtype=np.float32)
    else:
        x = rng.integers(0, 17, size=shape).astype(inp["dtype"])
    payload = Infer(model_id(name), (Tensor.from_numpy(x),), 0)
    gas = 5_000_000
    return build_tx(key, payload, chain_id=chain_id, nonce=nonce, gas_limit=gas, fee=gas)


async def one_precompute_pass(service: DeferredPrecompute) -> None:
    """Run the background precompute service for one pass after a wake-up (bounded), then stop it."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run)
            service.wake()
            await service.next_pass()
            nursery.cancel_scope.cancel()
