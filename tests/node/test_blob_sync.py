"""Model-bytes sync between real libp2p hosts: a node fetches a blob its state names from peers, in 256 KiB
exchanges; a peer that serves bytes of another hash (a lying peer) is penalized and never stored from, and
the node takes the blob from an honest peer. Peers serve only blobs their committed state names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import trio

from core.blobs import blob_digest
from core.errors import LocalFault
from core.types import Hash32
from node.blobstore import FileBlobStore
from node.blobsync import BlobProvider, fetch_blob, missing_blobs, progress_bar, repair_blobs
from node.leveldb import LevelDBStore
from p2p.messages import ModelChunkResponse
from p2p.scoring import Offense
from p2p.service import P2PService
from tests.p2p.helpers import running_nodes, wait_until
from vm.blobrefs import stage_blob_changes
from vm.state import BlobChanges

pytestmark = pytest.mark.node

BLOB = np.random.default_rng(3).bytes((1 << 20) + 12_345)  # five exchanges, the last one short
DIGEST = blob_digest(BLOB)


def _holding(path: Path, *, name: bool) -> tuple[LevelDBStore, FileBlobStore]:
    """A database and blob store holding BLOB, named by the committed state when `name`."""
    path.mkdir()
    db, blobs = LevelDBStore(path / "db"), FileBlobStore(path / "blobs")
    with db.write_batch(sync=True) as batch:
        stage_blob_changes(db, blobs, batch, BlobChanges({bytes(DIGEST): BLOB}, {bytes(DIGEST): 1 if name else 0}))
    if not name:
        blobs.put_blobs({bytes(DIGEST): BLOB})  # held, but garbage: not served
    return db, blobs


@pytest.mark.trio
async def test_a_lying_peer_is_penalized_and_the_blob_comes_from_an_honest_one(tmp_path: Path) -> None:
    honest_db, honest_blobs = _holding(tmp_path / "honest", name=True)
    garbage_db, garbage_blobs = _holding(tmp_path / "garbage", name=False)
    (tmp_path / "me").mkdir()
    me_db = LevelDBStore(tmp_path / "me" / "db")
    with me_db.write_batch(sync=True) as batch:  # my state names the blob, my blob store lacks it
        stage_blob_changes(me_db, FileBlobStore(tmp_path / "me" / "blobs"), batch,
                           BlobChanges({}, {bytes(DIGEST): 1}))
    mine = FileBlobStore(tmp_path / "me" / "blobs")
    honest_open = trio.Event()

    async def lie(digest: Hash32, offset: int, length: int) -> ModelChunkResponse | None:
        await trio.lowlevel.checkpoint()
        fake = bytes(len(BLOB))  # the right size, other bytes
        return ModelChunkResponse(len(fake), offset, fake[offset:offset + length])

    async def honest(digest: Hash32, offset: int, length: int) -> ModelChunkResponse | None:
        if not honest_open.is_set():
            await trio.lowlevel.checkpoint()
            return None
        return await BlobProvider(honest_db, honest_blobs).model(digest, offset, length)

    def configure(i: int, service: P2PService) -> None:
        if i == 1:
            service.reqresp.serve_models(lie)
        elif i == 2:
            service.reqresp.serve_models(honest)
        elif i == 3:
            service.reqresp.serve_models(BlobProvider(garbage_db, garbage_blobs).model)

    try:
        with trio.fail_after(90):
            async with running_nodes(4, configure=configure) as (me, liar, good, collector):
                await wait_until(lambda: len(me.peers_serving("model")) == 3, 20)
                assert missing_blobs(me_db, mine) == [DIGEST]
                # Only the liar answers: it is penalized and nothing is stored.
                with pytest.raises(LocalFault, match="no peer served"):
                    await fetch_blob(me, mine, DIGEST)
                assert mine.get_blob(DIGEST) is None
                assert me.peers.scores.score(str(liar.peer_id), trio.current_time()) == pytest.approx(
                    -Offense.BAD_RESPONSE.penalty, abs=0.5)
                assert me.peers.scores.score(str(collector.peer_id), trio.current_time()) > -1  # not found is no lie
                # With the honest peer serving, the blob arrives whole and checked, whichever peer is asked first.
                honest_open.set()
                progress: list[int] = []

                def bar(digest: Hash32) -> Callable[[int, int], None]:
                    shown = progress_bar(digest)  # the node's bar, on stderr
                    return lambda got, total: (progress.append(got), shown(got, total))  # type: ignore[func-returns-value]

                assert await repair_blobs(me, me_db, mine, progress=bar) == 1
                assert mine.get_blob(DIGEST) == BLOB and missing_blobs(me_db, mine) == []
                assert progress[-5:] == [min(n << 18, len(BLOB)) for n in range(1, 6)]  # (the liar may go first)
                assert me.peers.scores.score(str(good.peer_id), trio.current_time()) > -1
    finally:
        for db in (honest_db, garbage_db, me_db):
            db.close()
