"""What this node serves peers over request/response (`p2p.reqresp`): its chain status, stored blocks with
their commits, and the votes of a height and round that a peer lacks (consensus catch-up)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.types import Height
from core.votes import Vote
from node.chain import Chain
from node.driver import ConsensusDriver
from p2p.messages import ChainStatus, StoredBlock, VotesRequest


def stored_block(chain: Chain, height: Height) -> StoredBlock | None:
    """A block and its commit as stored (canonical bytes, sent as they are); None if either is missing."""
    store = chain.blockstore
    block = store.block_bytes(height)
    commit = store.commit_bytes(height)
    if block is None or commit is None:
        return None
    return StoredBlock(height, block, commit)


class ChainProviders:
    """The node's request/response providers; `driver` returns the running consensus driver, or None."""

    def __init__(self, chain: Chain, chain_id: str, driver: Callable[[], ConsensusDriver | None]) -> None:
        self._chain = chain
        self._chain_id = chain_id
        self._driver = driver

    async def status(self) -> ChainStatus:
        store = self._chain.blockstore
        return ChainStatus(self._chain_id, store.height, store.head_id, store.base)

    async def block(self, height: Height) -> StoredBlock | None:
        return stored_block(self._chain, height)

    async def votes(self, request: VotesRequest) -> Sequence[Vote]:
        driver = self._driver()
        if driver is None:
            return ()
        # The machine answers () for whatever it does not hold (before its first height too); anything it
        # raises is a bug of ours, which request-response logs with its traceback while resetting the stream.
        return driver.state.votes_for_peer(request.height, request.round, request.type, request.have)
