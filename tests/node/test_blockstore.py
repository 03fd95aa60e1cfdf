"""Block store on real LevelDB: append-only by height, lookups, and atomicity with the state writes of a
block (a failed batch leaves neither the block nor its state)."""

from __future__ import annotations

from types import TracebackType

import pytest

from core.errors import StorageError
from core.state import AuthenticatedMap
from core.store import BatchContext, KVStore, WriteBatch
from node.blockstore import BlockStore
from node.leveldb import LevelDBStore
from p2p.testing.chain import build_chain

pytestmark = pytest.mark.node

CHAIN = "blockstore-test"


class _FailingBatch:
    """A batch whose commit fails, as a crash or a disk error between staging and writing would."""

    def __init__(self, inner: BatchContext) -> None:
        self._inner = inner

    def __enter__(self) -> WriteBatch:
        return self._inner.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Drop the staged writes the way LevelDB drops an unwritten batch, then report the failure.
        self._inner.__exit__(RuntimeError, RuntimeError("disk gone"), None)
        if exc_type is None:
            raise StorageError("write failed: disk gone")


class FlakyStore:
    """The real LevelDB store, whose next batch fails when `fail_next` is set."""

    def __init__(self, db: LevelDBStore) -> None:
        self.db = db
        self.fail_next = False

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def iterate(self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False):  # type: ignore[no-untyped-def]
        return self.db.iterate(prefix, start=start, reverse=reverse)

    def write_batch(self, *, sync: bool = False) -> BatchContext:
        inner = self.db.write_batch(sync=sync)
        if self.fail_next:
            self.fail_next = False
            return _FailingBatch(inner)
        return inner

    def close(self) -> None:
        self.db.close()


def commit_with_state(db: KVStore, store: BlockStore, state: AuthenticatedMap, height: int,
                      chain_blocks: object) -> None:
    chain = chain_blocks
    block, commit = chain.blocks[height - 1], chain.commits[height - 1]  # type: ignore[attr-defined]
    update = state.compute_update(height - 1 if height > 1 else None, height, {b"k%d" % height: b"v"})
    with db.write_batch(sync=True) as batch:
        state.stage(batch, update)
        store.stage(batch, block, commit)
    store.advance(block)


def test_blocks_commits_and_tx_index_round_trip_and_survive_reopen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = build_chain(CHAIN, 5, txs_per_block=3)
    with LevelDBStore(tmp_path / "db") as db:
        store = BlockStore(db, CHAIN)
        assert store.height == 0 and store.block(1) is None
        for block, commit in zip(chain.blocks, chain.commits, strict=True):
            store.save(block, commit)
        assert store.height == 5 and store.head_id == chain.head.id and store.base == 1
    with LevelDBStore(tmp_path / "db") as db:
        store = BlockStore(db, CHAIN)
        assert store.height == 5 and store.head_id == chain.head.id
        assert store.block(3) == chain.blocks[2]
        assert store.commit(3) == chain.commits[2]
        assert store.block_by_id(chain.blocks[1].id) == chain.blocks[1]
        tx = chain.blocks[3].txs[2]
        loc = store.tx_location(tx.hash)
        assert loc is not None and (loc.height, loc.index) == (4, 2)
        assert store.block(6) is None and store.commit(0) is None
        with pytest.raises(StorageError, match="belongs to chain"):
            BlockStore(db, "other-chain")


def test_refuses_a_block_that_does_not_extend_the_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = build_chain(CHAIN, 3)
    other = build_chain(CHAIN, 3, txs_per_block=1)
    with LevelDBStore(tmp_path / "db") as db:
        store = BlockStore(db, CHAIN)
        with pytest.raises(StorageError, match="does not follow"):
            store.save(chain.blocks[1], chain.commits[1])
        store.save(chain.blocks[0], chain.commits[0])
        with pytest.raises(StorageError, match="does not extend"):
            store.save(other.blocks[1], other.commits[1])
        with pytest.raises(StorageError, match="not for block"):
            store.save(chain.blocks[1], chain.commits[2])
        assert store.height == 1


def test_a_failed_batch_leaves_neither_the_block_nor_its_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = build_chain(CHAIN, 3, txs_per_block=2)
    raw = LevelDBStore(tmp_path / "db")
    db = FlakyStore(raw)
    store = BlockStore(db, CHAIN)
    state = AuthenticatedMap(db)
    commit_with_state(db, store, state, 1, chain)
    before = dict(raw.iterate())

    db.fail_next = True
    with pytest.raises(StorageError, match="disk gone"):
        commit_with_state(db, store, state, 2, chain)
    assert dict(raw.iterate()) == before  # not one key of block 2 or of its state
    assert store.height == 1 and store.block(2) is None
    assert state.latest_version() == 1

    # A crash while staging (an exception inside the batch) writes nothing either.
    with pytest.raises(ZeroDivisionError), db.write_batch(sync=True) as batch:
        store.stage(batch, chain.blocks[1], chain.commits[1])
        _ = 1 // 0
    assert dict(raw.iterate()) == before

    # After reopening, the node is at block 1 and can commit block 2 normally.
    raw.close()
    raw = LevelDBStore(tmp_path / "db")
    store = BlockStore(raw, CHAIN)
    state = AuthenticatedMap(raw)
    assert store.height == 1 and state.latest_version() == 1
    commit_with_state(raw, store, state, 2, chain)
    assert store.height == 2 and state.latest_version() == 2
    assert state.get(b"k2", 2) == b"v"
    raw.close()


@pytest.mark.trio
async def test_a_failed_commit_of_a_real_block_leaves_block_store_and_vm_state_untouched(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.app import BlockTemplate
    from core.hashing import ZERO_HASH
    from core.types import Height, Round, Timestamp
    from core.votes import ZERO_SIGNATURE, Commit, Vote, VoteType
    from node.chain import Chain
    from tests.node.helpers import SEED, account, transfer
    from tools.genesis import make_genesis, validator_key
    from vm.app import VMApplication
    from vm.genesis import parse_genesis
    from vm.sandbox.executor import LocalExecutor

    genesis = parse_genesis(make_genesis(1))
    raw = LevelDBStore(tmp_path / "db")
    db = FlakyStore(raw)
    app = VMApplication(db, genesis, executor=LocalExecutor())  # type: ignore[arg-type]
    try:
        store = BlockStore(db, genesis.chain_id)
        chain = Chain(db, store, app)  # type: ignore[arg-type]
        key = validator_key(SEED, 0)
        template = BlockTemplate(genesis.chain_id, Height(1), Round(0), Timestamp(genesis.genesis_time + 1000),
                                 key.address, ZERO_HASH, None, ())
        pay = transfer(genesis.chain_id, account(1), account(2), 5, nonce=0)
        block = app.build_block(template, [pay])
        assert block.txs == (pay,)
        vote = Vote(VoteType.PRECOMMIT, Height(1), Round(0), block.id, Timestamp(0), key.public_key,
                    app.poi_commitment(Height(1), key.address), ZERO_SIGNATURE).signed(key, genesis.chain_id)
        commit = Commit(Height(1), Round(0), block.id, (vote,))
        before = dict(raw.iterate())
        info = app.info()

        db.fail_next = True
        with pytest.raises(StorageError, match="disk gone"):
            await chain.commit(block, commit, b"priorities")
        assert dict(raw.iterate()) == before
        assert store.height == 0 and store.tx_location(pay.hash) is None
        assert app.info() == info and app.view().account(account(2).address) == app.view(0).account(
            account(2).address)

        done = await chain.commit(block, commit, b"priorities")
        assert done.outcome.state_root == block.header.state_root == app.info().state_root
        assert store.height == 1 and store.tx_location(pay.hash) is not None
        assert store.next_proposers() == b"priorities"
        assert chain.handshake() == 0
    finally:
        app.close()
        raw.close()


def test_block_and_commit_answer_for_the_same_head_also_after_a_failed_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reader asks for a block, then for its commit (RPC `block`, `status`): both answer for the same head, at
    it, below it and above it, including for a block whose commit failed after it was staged."""
    chain = build_chain(CHAIN, 3, txs_per_block=1)
    raw = LevelDBStore(tmp_path / "db")
    db = FlakyStore(raw)
    store = BlockStore(db, CHAIN)
    state = AuthenticatedMap(db)
    for h in (1, 2):
        commit_with_state(db, store, state, h, chain)
    for h in range(0, 6):
        assert (store.block(h) is None) == (store.commit(h) is None), h
    assert store.block(3) is None and store.commit(3) is None
    # Block 3's batch fails after it was staged: the head reloads at 2, and block 3 is nowhere to be read.
    db.fail_next = True
    with pytest.raises(StorageError, match="disk gone"):
        commit_with_state(db, store, state, 3, chain)
    assert store.height == 2
    assert store.block(3) is None and store.commit(3) is None and store.block_bytes(3) is None
    assert store.block(2) == chain.blocks[1] and store.commit(2) == chain.commits[1]
    raw.close()


def test_the_block_cache_is_bounded_by_the_transactions_it_holds(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Decoded blocks stay cached up to a transaction budget (their objects are what the garbage collector
    walks), never fewer than the newest two; an evicted block is read back from disk, equal, and cached again
    without the count drifting."""
    from node import blockstore

    monkeypatch.setattr(blockstore, "_CACHE_TXS", 10)
    chain = build_chain(CHAIN, 8, txs_per_block=4)
    with LevelDBStore(tmp_path / "db") as db:
        store = BlockStore(db, CHAIN)
        for block, commit in zip(chain.blocks, chain.commits, strict=True):
            store.save(block, commit)
            assert store.cached_blocks <= 2  # 3 blocks would hold 12 transactions
        assert store.cached_blocks == 2
        for _ in range(3):
            for height in (1, 8, 2):
                assert store.block(height) == chain.blocks[height - 1]
                assert store.cached_blocks == 2
    empty = build_chain(CHAIN, 40)  # blocks without transactions: only the block count bounds them
    with LevelDBStore(tmp_path / "db2") as db:
        store = BlockStore(db, CHAIN)
        for block, commit in zip(empty.blocks, empty.commits, strict=True):
            store.save(block, commit)
        assert store.cached_blocks == blockstore._CACHE_BLOCKS
