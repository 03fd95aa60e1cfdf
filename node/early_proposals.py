"""Proposals that arrive before this node's consensus starts, kept until it does.

At start-up a node subscribes to the proposals topic when p2p comes up, but its consensus driver starts only
after block sync and the wait for peers. A proposal gossiped in between (height 1 of a devnet whose nodes
start together: the proposer waits only until enough peers are subscribed) used to be dropped, and votes
are recovered by consensus catch-up but proposals are not: the round was lost to `timeout_propose`. The
gossip hook has already checked each one (signed by the proposer of its height and round, a height next to
ours, a round within the window, admitted by the per-height budget), so at most a few are kept here, newest
last, and handed to the driver once it runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from p2p.validation import GossipMessage

# Proposals kept before consensus starts: the hook admits a handful per height; older ones are dropped first.
MAX_EARLY_PROPOSALS = 8

Handler = Callable[[GossipMessage], Awaitable[None]]


class EarlyProposals:
    """Wraps the proposals handler: before `release`, messages are kept (bounded); after it, passed on."""

    def __init__(self, handler: Handler, *, limit: int = MAX_EARLY_PROPOSALS) -> None:
        self._handler = handler
        self._kept: deque[GossipMessage] | None = deque(maxlen=limit)

    @property
    def kept(self) -> int:
        return 0 if self._kept is None else len(self._kept)

    async def handle(self, message: GossipMessage) -> None:
        if self._kept is not None:
            self._kept.append(message)
            return
        await self._handler(message)

    async def release(self) -> int:
        """Consensus runs now: hand it what was kept, in arrival order, and pass everything on from here.
        Returns how many were handed on."""
        kept, self._kept = self._kept, None
        for message in kept or ():
            await self._handler(message)
        return len(kept or ())
