"""apply_block is the state transition: a node that only applies committed blocks (block sync, replay)
reaches the same state roots as the proposer and the validators, and never runs a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.hashing import sha256
from core.tensor import Tensor
from core.types import Address, Amount, PublicKeyBytes
from tests.vm.devnet import ABSENT, Devnet
from tests.vm.helpers import upload_txs
from tests.vm.test_vm_evidence import double_vote
from tests.vm.test_vm_models import digits_meta
from vm.genesis import Genesis
from vm.sandbox.executor import Job, JobResult, LocalExecutor
from vm.txs import Infer, Stake, Transfer, Unstake

pytestmark = pytest.mark.vm


class NoModelsExecutor(LocalExecutor):
    """Fails the test if the application ever asks it to run anything."""

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        raise AssertionError("apply ran a model")


def test_an_apply_only_node_reaches_the_same_roots_without_running_models(tmp_path: Path,
                                                                          genesis: Genesis) -> None:
    net = Devnet.start(tmp_path, genesis, executors=[LocalExecutor, LocalExecutor, NoModelsExecutor])
    try:
        ids = {m.name: m.model_id for m in genesis.models}
        user, owner = net.account(6), net.account(5)
        model_bytes, meta = digits_meta(fee=3)
        new_key = net.account(77)
        net.keys[new_key.address] = new_key
        upload = upload_txs(owner, model_bytes, meta, params=genesis.params, chain_id=genesis.chain_id,
                            first_nonce=0, chunk_bytes=4096)
        net.nonces[owner.address] = len(upload)
        scripted: list[list[object]] = [
            [net.tx(user, Transfer(owner.address, Amount(10)), gas_limit=1000)],
            upload,
            [net.tx(user, Infer(ids["digits_int8"], (Tensor.from_numpy(np.ones((1, 64), np.uint8)),), Amount(0)),
                    gas_limit=2_000_000),
             net.tx(user, Infer(ids["digits_mlp"], (Tensor.from_numpy(np.ones((1, 64), np.float32)),), Amount(0)),
                    gas_limit=2_000_000)],
            [net.tx(owner, Stake(PublicKeyBytes(new_key.public_key), genesis.params.staking.min_validator_stake),
                    gas_limit=10_000)],
            [],
            [net.tx(owner, Unstake(PublicKeyBytes(new_key.public_key), Amount(5)), gas_limit=10_000)],
            [], [], [],
        ]
        for i, txs in enumerate(scripted):
            sleeper = net.apps[0].validator_set(net.height + 1).entries[-1].address
            poi = {sleeper: ABSENT if i % 2 else sha256(b"made up")} if net.height >= 1 else None
            evidence = [double_vote(net, 0, net.height)] if i == 4 else []
            block = net.step(txs, poi=poi, evidence=evidence, validators=[1])  # type: ignore[arg-type]
            assert len(block.txs) == len(txs) and all(not r.log for r in block.results), block.results
        roots = {app.info().state_root for app in net.apps}
        assert len(roots) == 1
        applied = net.apps[2].view()
        from vm.txs import split_model

        assert applied.model(split_model(model_bytes, meta, 4096)[0].model_id) is not None
        assert applied.validator(new_key.address) is not None
        offender = net.blocks[4].evidence[0].offender
        tombstoned = applied.validator(Address(sha256(offender)[:20]))
        assert tombstoned is not None and tombstoned.tombstoned
        assert any(r.poi_wrong for r in (applied.validator(e.address) for e in genesis.validator_set()) if r)
        net.assert_supply_conserved()
    finally:
        net.close()
