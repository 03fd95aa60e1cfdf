"""The committed chain: block store + application over one LevelDB, and the one atomic commit step.

Both the consensus driver and block sync commit through `Chain.commit`: `finalize_block` stages every state
write into a batch, the block store stages the block, its commit and its tx index into the same batch, and
the batch is written with fsync; only then do in-memory heads move (docs/design.md §6). The work runs in a worker
thread so the event loop keeps serving peers and timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from core.app import Application, FinalizeOutcome
from core.block import Block
from core.errors import StorageError
from core.evidence import offence_id
from core.store import KeySpace, KVStore, space
from core.types import Height
from core.votes import Commit
from node.blockstore import BlockStore

logger = logging.getLogger(__name__)


class ChainDiverged(StorageError):
    """Applying a committed block gave another state root than the block's header certifies."""


@dataclass(frozen=True, slots=True)
class Committed:
    block: Block
    commit: Commit
    outcome: FinalizeOutcome


CommitListener = Callable[[Committed], None]


class Chain:
    def __init__(self, db: KVStore, blockstore: BlockStore, app: Application) -> None:
        self.db = db
        self.blockstore = blockstore
        self.app = app
        self._listeners: list[CommitListener] = []
        self._evidence = space(db, KeySpace.EVIDENCE)
        self._lock = trio.Lock()
        self._threads = trio.CapacityLimiter(1)  # one commit in flight

    @property
    def height(self) -> Height:
        return self.blockstore.height

    def on_commit(self, listener: CommitListener) -> None:
        """Called on the event loop after each commit, in order; must not block."""
        self._listeners.append(listener)

    async def commit(self, block: Block, commit: Commit, next_proposers: bytes | None = None) -> Committed:
        """Apply and store `block` finalized by `commit`, atomically; then tell the listeners.

        `next_proposers`: consensus's proposer priorities of the next height, stored with the block.
        """
        async with self._lock:
            outcome = await trio.to_thread.run_sync(self._commit_sync, block, commit, next_proposers,
                                                    limiter=self._threads)
            done = Committed(block, commit, outcome)
            for listener in self._listeners:
                try:
                    listener(done)
                except Exception:  # a listener's bug must not stop the chain
                    logger.exception("commit listener failed")
            return done

    def _commit_sync(self, block: Block, commit: Commit, next_proposers: bytes | None) -> FinalizeOutcome:
        try:
            with self.db.write_batch(sync=True) as batch:
                outcome = self.app.finalize_block(block, batch)
                if outcome.state_root != block.header.state_root:
                    raise ChainDiverged(
                        f"block {block.height}: applying it gave state root {outcome.state_root.hex()[:16]}, "
                        f"the header certifies {block.header.state_root.hex()[:16]}")
                self.blockstore.stage(batch, block, commit, next_proposers)
                evidence = self._evidence.bind(batch)
                for ev in block.evidence:  # a committed offence is no longer pending, whichever proof of it
                    evidence.delete(offence_id(ev))
        except BaseException:
            self.blockstore.reload_head()
            raise
        self.blockstore.advance(block)
        logger.info("committed block %d %s (%d txs)", block.height, block.id.hex()[:12], len(block.txs))
        return outcome

    # ---------------------------------------------------------------- start-up handshake (docs/design.md §4.5)

    def handshake(self) -> int:
        """Bring the application up to the block store; returns the number of blocks replayed.

        Block and state commit in one batch, so they normally agree; state behind the store (a wiped or
        separately kept state) is rebuilt by re-applying stored blocks, without running any model.
        """
        info = self.app.info()
        stored = int(self.blockstore.height)
        if info.chain_id != self.blockstore.chain_id:
            raise StorageError(f"application is on chain {info.chain_id!r}, block store on "
                               f"{self.blockstore.chain_id!r}")
        if info.last_height > stored:
            raise StorageError(f"state is at height {info.last_height} but the block store only at {stored}: "
                               "the database is inconsistent")
        if info.last_height == stored:
            if stored and info.last_block_id != self.blockstore.head_id:
                raise StorageError(f"state and block store disagree on block {stored}")
            return 0
        replayed = 0
        for height in range(int(info.last_height) + 1, stored + 1):
            block = self.blockstore.block(height)
            if block is None:
                raise StorageError(f"block {height} missing from the block store")
            with self.db.write_batch(sync=True) as batch:
                outcome = self.app.finalize_block(block, batch)
                if outcome.state_root != block.header.state_root:
                    raise ChainDiverged(f"replaying block {height} gave another state root")
            replayed += 1
        logger.info("handshake: replayed %d stored blocks into state", replayed)
        return replayed
