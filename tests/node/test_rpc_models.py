"""`models` is paged and served from an index, not by walking the state on each call: a real node's RPC pages
the genesis models in id order, and the index follows registrations from committed blocks without walking
the state again (real LevelDB)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.keys import PrivateKey
from core.state import AuthenticatedMap
from core.types import Hash32
from node.leveldb import LevelDBStore
from node.queries import ModelIndex
from node.rpc import errors as E
from tests.node.helpers import genesis_doc, local_node, make_home
from tests.node.rpc_harness import ServerThread
from vm.state import model_key, upload_key
from vm.txs import ModelChunk, build_tx

pytestmark = pytest.mark.node

JSON = {"content-type": "application/json"}


def call(url: str, method: str, params: object) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return httpx.post(url + "/", json=body, headers=JSON, timeout=30).json()


def test_models_come_a_page_at_a_time_in_id_order(tmp_path: Path) -> None:
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    try:
        with ServerThread(node.queries) as s:
            everything = call(s.url, "models", {})["result"]
            ids = [m["model_id"] for m in everything]
            assert len(ids) >= 2 and ids == sorted(ids)
            paged, after = [], None
            while True:
                page = call(s.url, "models", {"limit": 1, **({"after": after} if after else {})})["result"]
                if not page:
                    break
                assert len(page) == 1
                paged.append(page[0]["model_id"])
                after = page[0]["model_id"]
            assert paged == ids
            assert call(s.url, "models", [ids[0], 100])["result"][0]["model_id"] == ids[1]  # by position
            for bad in (0, 101, -1, "10", True):
                assert call(s.url, "models", {"limit": bad})["error"]["code"] == E.INVALID_PARAMS
    finally:
        node.app.close()
        node.db.close()


def _chunk_tx(model_id: bytes) -> object:
    chunk = ModelChunk(Hash32(model_id), 1, b"x", None)
    return build_tx(PrivateKey.derive("models test", "owner", 0), chunk, chain_id="c", nonce=0, gas_limit=1, fee=1)


def test_the_index_follows_committed_blocks_without_walking_the_state_again(tmp_path: Path) -> None:
    with LevelDBStore(tmp_path / "db") as db:
        state = AuthenticatedMap(db)
        first, second, third, filler = (bytes([i]) * 32 for i in (0x20, 0x10, 0x30, 0x40))
        state.commit(1, {model_key(Hash32(first)): b"record", b"A" + bytes(20): b"an account"})
        index = ModelIndex()
        assert index.page(state, 1, None, 10) == [first]  # built by one walk
        # A registration lands: its record is in state, and its upload chunk in a committed block.
        state.commit(2, {model_key(Hash32(second)): b"record", upload_key(Hash32(third)): b"open upload",
                         model_key(Hash32(filler)): b"record written without a chunk in a block"})
        assert index.page(state, 2, None, 10) == [first]  # no second walk: only blocks feed it
        index.note_block([_chunk_tx(second), _chunk_tx(third)])  # type: ignore[list-item]
        assert index.page(state, 2, None, 10) == [second, first]
        assert index.page(state, 2, Hash32(second), 10) == [first]
        assert index.page(state, 2, None, 1) == [second]
        # The open upload stays pending until it registers (or its upload record goes).
        state.commit(3, {model_key(Hash32(third)): b"record", upload_key(Hash32(third)): None})
        assert index.page(state, 3, None, 10) == [second, first, third]
