"""Which validator each peer speaks for, learnt from its signed peer record (core.peer_record).

Peer ids are free to mint, so a rule that counts peers as validators (node.proposal_hold's grace) asks a
peer for its record before counting it: the peer's validator key signed its peer id, and the link
authenticated the peer id. The first ask from a peer not yet bound starts one fetch; a peer without a record
(no validator), or whose fetch failed, is asked again only after RETRY_S. Fetches run apart from whatever
triggered them (a request we are serving), at most MAX_INFLIGHT at a time.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from libp2p.peer.id import ID

from core.errors import RemoteError
from core.peer_record import ValidatorPeerRecord
from core.types import Address

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

# A peer whose record could not be had is asked again after this long (a validator that just started).
RETRY_S = 30.0
# Fetches in flight at once; a peer asking meanwhile is fetched at its next ask.
MAX_INFLIGHT = 8
# Peers remembered as asked (bound or not).
REMEMBERED = 4096

Fetch = Callable[[ID], Awaitable[ValidatorPeerRecord]]
OnBound = Callable[[str, Address], None]


class ValidatorPeers:
    def __init__(self, fetch: Fetch, on_bound: OnBound, clock: Callable[[], float] = trio.current_time) -> None:
        self._fetch = fetch
        self._on_bound = on_bound
        self._clock = clock
        self._asked: OrderedDict[str, float] = OrderedDict()  # peer -> when its record was last asked for
        self._bound: dict[str, Address] = {}
        self._inflight = 0
        self.fetches = 0  # record fetches ended, whatever their outcome (for logs and tests)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def validator_of(self, peer: ID) -> Address | None:
        return self._bound.get(str(peer))

    def learn(self, peer: ID) -> None:
        """Fetch `peer`'s record unless it is bound, asked lately, or too many fetches are under way."""
        key = str(peer)
        now = self._clock()
        if self._nursery is None or key in self._bound or self._inflight >= MAX_INFLIGHT:
            return
        last = self._asked.get(key)
        if last is not None and now - last < RETRY_S:
            return
        self._asked.pop(key, None)
        self._asked[key] = now
        while len(self._asked) > REMEMBERED:
            self._asked.popitem(last=False)
        self._inflight += 1
        self._nursery.start_soon(self._learn, peer)

    async def _learn(self, peer: ID) -> None:
        try:
            record = await self._fetch(peer)
        except RemoteError as exc:  # no validator, or a bad record (already blamed on the peer), or no answer
            logger.debug("no validator record from %s: %s", peer, exc)
            return
        finally:
            self._inflight -= 1
            self.fetches += 1
        address = record.validator_address
        self._bound[str(peer)] = address
        while len(self._bound) > REMEMBERED:
            del self._bound[next(iter(self._bound))]
        logger.info("peer %s speaks for validator %s", str(peer)[-6:], address)
        self._on_bound(str(peer), address)
