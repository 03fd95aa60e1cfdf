"""A node whose state names a model blob it lost fetches it from a peer when it starts (after block sync),
checks its hash and serves the model again: real nodes, real LevelDB, real libp2p on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from core.hashing import sha256
from core.tensor import DType
from node.blobstore import FileBlobStore
from tests.node.helpers import (
    account,
    genesis_doc,
    local_node,
    make_home,
    running,
    wait_until,
    with_bootstrap,
)
from tests.vm.helpers import log_model, meta_for, spec, upload_txs
from vm.txs import ModelClass, split_model

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_a_lost_model_blob_is_fetched_from_a_peer_at_start(tmp_path: Path) -> None:
    genesis = genesis_doc(1)
    model_bytes = log_model()
    meta = meta_for("log", model_bytes, [spec("x", DType.FLOAT32, (1, 4))], [spec("y", DType.FLOAT32, (1, 4))],
                    ModelClass.TOLERANT, [[np.full((1, 4), 2.0, np.float32)]], grid_k=20, tol_abs=64, tol_rel_ppm=200)
    digest = sha256(model_bytes)
    model_id = split_model(model_bytes, meta)[0].model_id
    source = local_node(make_home(tmp_path, "source", genesis, validator=0))
    with trio.fail_after(180):
        async with running(source):
            txs = upload_txs(account(2), model_bytes, meta, params=source.genesis.params,
                             chain_id=source.chain_id, first_nonce=0)
            verdicts = await source.queries.submit_txs(txs)
            assert all(v.accepted for v in verdicts), [v.reason for v in verdicts]
            await wait_until(lambda: source.app.view().model(model_id) is not None, 60)
            registered_at = source.height

            home = make_home(tmp_path, "follower", genesis, validator=None)
            config = with_bootstrap(home, (source.p2p_addr,))
            follower = local_node(home, config=config)
            async with running(follower):
                await wait_until(lambda: follower.height >= registered_at, 60)
                assert follower.blobs.get_blob(digest) == model_bytes  # from the chunk transactions
            lost = FileBlobStore(home.blob_dir)
            lost.delete_blob(digest)
            assert lost.get_blob(digest) is None

            again = local_node(home, config=config)
            async with running(again):
                await wait_until(lambda: again.blobs.get_blob(digest) is not None, 60)
                record = again.app.view().model(model_id)
                assert record is not None and again.app.view().model_bytes(record) == model_bytes
