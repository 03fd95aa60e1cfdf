"""The node's model index (node/queries.py `ModelIndex`, behind the `models` RPC and `inferchain model list`)
keeps a deferred registration while it is pending (its upload is gone, its record not written yet), so the
model is listed once it activates, even when the index was read in between."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.hashing import sha256
from node.queries import ModelIndex
from tests.vm.deferred_models import VM, upload, weights_meta, weights_model
from tests.vm.devnet import Devnet, devnet_genesis
from vm.txs import compute_model_id

pytestmark = pytest.mark.node


def test_a_pending_deferred_model_is_listed_once_it_activates(tmp_path: Path) -> None:
    net = Devnet.start(tmp_path, devnet_genesis(vm=VM))
    try:
        app = net.apps[0]
        index = ModelIndex()
        before = index.page(app.state_map, net.height, None, 100)  # built now: the genesis models
        model_bytes = weights_model(61)
        meta = weights_meta("listed", model_bytes)
        model_id = bytes(compute_model_id(sha256(model_bytes), meta))
        for tx in upload(net, net.account(5), model_bytes, meta):
            index.note_block(net.step([tx]).txs)
        activates_at = int.from_bytes(net.blocks[-1].results[0].data, "big")
        assert model_id not in index.page(app.state_map, net.height, None, 100)  # read while pending
        while net.height < activates_at:
            net.step()
        listed = index.page(app.state_map, net.height, None, 100)
        assert model_id in listed and len(listed) == len(before) + 1
    finally:
        net.close()
