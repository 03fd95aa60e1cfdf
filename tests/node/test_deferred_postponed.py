"""A deferred registration whose check no node can run (the memory hog against sandbox workers capped at
300 MiB), on a real running validator with its RPC server, and a real apply-only node following it over
libp2p:

- `inferchain model register`'s wait (node/cli/model_cmd.py `wait_for_activation`) follows each postponement
  to the queue's tail and ends on the chain's verdict ("could not be checked"), not on "still pending after
  the first activation height";
- the `model_registration` RPC shows the postponement count (and `models` says whether each model came
  through deferred activation, and its postponements);
- the apply-only node runs no background check (node/precompute.py): it takes each verdict from its block,
  while the validator's background worker did try (and fault)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from core.hashing import sha256
from core.tensor import DType
from node.cli.common import CliError
from node.cli.model_cmd import wait_for_activation
from node.client import Client
from node.config import RPCSection
from node.precompute import DeferredPrecompute
from node.service import Node
from tests.node.helpers import account, local_node, make_home, running, wait_until, with_bootstrap
from tests.vm.deferred_models import weights_meta, weights_model
from tests.vm.helpers import memory_hog_model, meta_for, spec
from tools.genesis import make_genesis
from vm.activation import LOG_UNCHECKED
from vm.execute import chunk_gas, completing_gas
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.txs import ModelClass, ModelMeta, build_tx, compute_model_id, split_model

pytestmark = pytest.mark.node

MAX_POSTPONEMENTS = 2  # this chain's `vm.max_postponements` (a chain parameter; the default genesis has 3)

TIGHT = WorkerLimits(memory_bytes=300 << 20)  # the hog's ~192 MiB of activations exhaust it


@pytest.mark.trio
async def test_register_follows_postponements_and_an_apply_only_node_precomputes_nothing(tmp_path: Path) -> None:
    genesis = make_genesis(1, overrides={"vm": {"defer_check_gas_over": 1_000_000,
                                                 "max_postponements": MAX_POSTPONEMENTS}})
    home = make_home(tmp_path, "validator", genesis, validator=0)
    validator = Node(home, executor=WorkerPool(1, TIGHT),
                     config=home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0")))
    alarms: list[str] = []
    # Its background worker capped as its block path is: it cannot answer ahead either.
    validator.precompute = DeferredPrecompute(validator.app, alarm=alarms.append, wanted=validator.checks_activations,
                                              make_executor=lambda: WorkerPool(1, TIGHT))
    model_bytes = memory_hog_model()
    meta = meta_for("hog", model_bytes, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                    ModelClass.EXACT, [[np.array([[3]], np.int32)]])
    model_id = compute_model_id(sha256(model_bytes), meta)
    with trio.fail_after(240):
        async with running(validator):
            assert validator.rpc is not None and validator.rpc.url is not None
            follower_home = make_home(tmp_path, "follower", genesis, validator=None)
            follower = local_node(follower_home, config=with_bootstrap(follower_home, (validator.p2p_addr,)))
            async with running(follower):
                client = Client(validator.rpc.url, timeout=30)
                try:
                    params, key = validator.app.current_params(), account(1)

                    def upload(body: bytes, declared: ModelMeta) -> None:
                        chunks = split_model(body, declared, 256 * 1024)
                        nonce = client.account(key.address).nonce
                        txs = []
                        for i, chunk in enumerate(chunks):
                            last = i == len(chunks) - 1
                            gas = chunk_gas(params, chunk, len(body), last,
                                            registration=completing_gas(params, body, declared) if last else 0)
                            txs.append(build_tx(key, chunk, chain_id=validator.chain_id, nonce=nonce + i,
                                                gas_limit=gas, fee=gas * params.vm.min_gas_price))
                        results = client.broadcast_txs(txs, mode="commit")
                        assert all(r.accepted and r.result is not None and r.result.ok for r in results), results

                    await trio.to_thread.run_sync(upload, model_bytes, meta)
                    first = await trio.to_thread.run_sync(client.model_registration, model_id)
                    # Its first activation is a block away: it may be postponed once already (a race with the read).
                    assert first["status"] == "pending" and first["postponed"] <= 1

                    def give_up() -> str:  # no time at all: the overall bound's message, the registration goes on
                        with pytest.raises(CliError) as late:
                            wait_for_activation(client, model_id, 0, per_block_s=0, echo=lambda line: None)
                        return str(late.value)

                    late = await trio.to_thread.run_sync(give_up)
                    assert late.startswith("gave up after") and "still pending" in late and "model status" in late

                    lines: list[str] = []

                    def wait() -> str:
                        with pytest.raises(CliError) as refused:
                            wait_for_activation(client, model_id, 60, echo=lines.append)
                        return str(refused.value)

                    error = await trio.to_thread.run_sync(wait)
                    assert "rejected" in error and LOG_UNCHECKED in error, error
                    assert lines[0].startswith("pending")
                    postponed = [line for line in lines if line.startswith("postponed")]
                    counts = [int(line.split("(")[1].split(" ")[0]) for line in postponed]
                    assert counts and counts == list(range(counts[0], MAX_POSTPONEMENTS + 1))  # each one followed
                    assert all(f" of {MAX_POSTPONEMENTS}), activates at height " in line for line in postponed)
                    heights = [int(line.rsplit(" ", 1)[1]) for line in postponed]
                    assert heights == sorted(set(heights)) and heights[0] > int(first["activates_at"])
                    last = await trio.to_thread.run_sync(client.model_registration, model_id)
                    assert last["status"] == "rejected" and last["postponed"] == MAX_POSTPONEMENTS
                    assert last["max_postponements"] == MAX_POSTPONEMENTS
                    assert int(last["activates_at"]) > int(first["activates_at"])
                    # A model its workers can check, deferred too (its check is ~2.6M gas): listed as such.
                    fine_bytes = weights_model(71)
                    fine_meta = weights_meta("fine", fine_bytes)
                    fine_id = compute_model_id(sha256(fine_bytes), fine_meta)
                    await trio.to_thread.run_sync(upload, fine_bytes, fine_meta)
                    assert await trio.to_thread.run_sync(wait_for_activation, client, fine_id, 60) > 0
                    listed = {m["model_id"]: m for m in await trio.to_thread.run_sync(client.call, "models", {})}
                    fine = listed.pop(fine_id.hex())
                    assert fine["deferred"] is True and fine["postponed"] == 0
                    assert listed and all(m["deferred"] is False and m["postponed"] == 0 for m in listed.values())
                    assert model_id.hex() not in listed  # rejected: never listed

                    # The follower applied the same verdicts without a background check of its own.
                    # The height the validator has now, not its moving head: under load a follower applying
                    # each block after the validator made it can stay one block behind a moving target.
                    target = validator.height
                    await wait_until(lambda: follower.height >= target, 60)
                    assert follower.precompute.ran == 0 and follower.precompute.skipped >= 1
                    assert follower.app.check_memo.precomputed == 0
                    assert validator.precompute.skipped == 0
                    assert any("background check" in alarm for alarm in alarms)  # the validator did try
                finally:
                    client.close()
