"""The activation refusal and its escape on a devnet of real processes (docs/sandbox.md, "Deferred activation").

Four validators; node 3's sandbox workers are capped at 300 MiB (its own config, `worker_memory_mib`), so it
cannot run the check of a model whose run needs ~192 MiB of activations (`tests.vm.helpers.memory_hog_model`),
which the three others run at once. Four such models, deferred (the threshold lowered to 1M), are uploaded in
one batch: with one block of background budget per check they activate at consecutive heights, so round 0 of
exactly one of those heights is node 3's, by the proposer rotation (one step per height, whatever the rounds).

At that height node 3 cannot check, so it proposes a postponement in round 0; the three others can, so they
refuse it (prevote nil) and round 1's proposer, one of them, commits the decided verdict. So every model ends
registered, never postponed, and that height's block was built in a later round than 0. Without the refusal
rule (`vm.activation.verdict_problem` accepting every undecided verdict) the postponement commits in round 0
and that model shows one postponement: this test fails.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from consensus.proposer import ProposerPriorities
from core.hashing import sha256
from core.tensor import DType
from core.types import Address
from tests.realnet import RealNet, realnet_fixture
from tests.vm.helpers import memory_hog_model, meta_for, spec
from vm.execute import chunk_gas, completing_gas
from vm.genesis import load_genesis
from vm.params import Params
from vm.txs import ModelClass, ModelMeta, build_tx, compute_model_id, split_model

pytestmark = pytest.mark.e2e

TIGHT = 3  # the validator whose workers cannot run the check
MODELS = 4  # one per validator: consecutive activation heights meet every proposer's round 0
# Deferred (the hog's check is ~1.2M gas), and one block of background budget per check: consecutive heights.
VM = {"defer_check_gas_over": 1_000_000}
# Node 3 falls a little behind (it cannot judge the other activations' blocks, so it waits for their commits):
# a longer wait for round 0's proposal lets its postponement arrive, so that round is really tested.
CONSENSUS = {"timeout_propose_ms": 10_000}
WAIT_S = 60.0

net = realnet_fixture(validators=4, block_time_ms=200, genesis={"vm": VM, "consensus": CONSENSUS},
                      node_config={TIGHT: {"worker_memory_mib": 300}}, ready_height=2)


def round0_proposer(net: RealNet, height: int) -> Address:
    """Round 0's proposer of `height` (the genesis set, unchanged here: the rotation from height 1)."""
    genesis = load_genesis(net.devnet.genesis_path)
    validators = genesis.validator_set()
    state = ProposerPriorities.genesis(validators)
    for _ in range(height - 1):
        state = state.advance(validators)
    return state.proposer(0)


def test_a_validator_that_cannot_check_gets_no_round0_postponement(net: RealNet) -> None:
    params: Params = load_genesis(net.devnet.genesis_path).params
    client = net.client(0)
    key = net.account_key(1)
    uploads: list[tuple[bytes, ModelMeta]] = []
    for k in range(MODELS):
        body = memory_hog_model(4096 - k)  # distinct bytes, the same ~192 MiB of activations
        meta = meta_for(f"hog{k}", body, [spec("x", DType.INT32, (1, 1))], [spec("y", DType.INT32, (1, 1))],
                        ModelClass.EXACT, [[np.array([[3]], np.int32)]])
        uploads.append((body, meta))
    nonce = client.account(key.address).nonce
    txs = []
    for i, (body, meta) in enumerate(uploads):
        (chunk,) = split_model(body, meta, 256 * 1024)
        gas = chunk_gas(params, chunk, len(body), True, registration=completing_gas(params, body, meta))
        txs.append(build_tx(key, chunk, chain_id=net.chain_id, nonce=nonce + i, gas_limit=gas,
                            fee=gas * params.vm.min_gas_price))
    results = client.broadcast_txs(txs, mode="commit")
    assert all(r.accepted and r.result is not None and r.result.ok for r in results), results
    ids = [compute_model_id(sha256(body), meta) for body, meta in uploads]

    def settled() -> list[dict[str, Any]] | None:
        docs = [client.model_registration(mid) for mid in ids]
        return docs if all(d["status"] != "pending" for d in docs) else None

    docs = net.wait_until("every deferred registration decided", settled, WAIT_S)
    assert [d["status"] for d in docs] == ["registered"] * MODELS, json.dumps(docs)
    assert [d["postponed"] for d in docs] == [0] * MODELS, json.dumps(docs)  # red without the refusal rule

    tight = net.validator_key(TIGHT).address
    heights = [int(d["activates_at"]) for d in docs]
    assert heights == sorted(heights) and len(set(heights)) == MODELS, heights
    mine = [h for h in heights if round0_proposer(net, h) == tight]
    assert len(mine) == 1, f"activation heights {heights}: none or several at node {TIGHT}'s round 0"
    for h in heights:
        header = client.block(h).header
        if h in mine:  # node 3's round-0 postponement reached the others, was refused, and a later round decided
            assert f"proposal {h}/0 to the driver" in net.spec(0).log_path.read_text(errors="replace"), \
                f"node {TIGHT}'s round-0 proposal of height {h} never reached node 0: nothing was tested"
            assert int(header.round) >= 1 and header.proposer != tight, (h, int(header.round))
        elif int(header.round) == 0:  # the rotation as computed here: round 0's block is its proposer's
            assert header.proposer == round0_proposer(net, h)
    # Every node holds the same verdicts (node 3 applied the block's, never its own check).
    net.wait_height(heights[-1], timeout=WAIT_S)
    for index in net.indices:
        theirs = [net.client(index).model_registration(mid) for mid in ids]
        assert [(d["status"], d["postponed"], d["registered_at"]) for d in theirs] == \
            [(d["status"], d["postponed"], d["registered_at"]) for d in docs]
