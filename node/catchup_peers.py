"""Which peer consensus catch-up asks next: skip peers whose last round went unanswered, for a while.

A peer behind a link that went silent makes a catch-up round fail without an answer (a `RemoteError` such as
`RequestFailed` once the request is abandoned, or a round that timed out with nothing fetched). Picking
at random among all serving peers would ask it again every interval until the link is dropped, while a
validator waits for votes. Here such a peer cools down: `BASE_COOLDOWN_S` after its first failure, doubling
on each failure after that up to `MAX_COOLDOWN_S`, forgotten on its next answered round. The choice is
random among the peers not cooling down; when all are, the one whose cool-down ends first is asked.

Node policy, not consensus: the clock and the random source are passed in (tests use a fake clock).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

BASE_COOLDOWN_S = 2.0
MAX_COOLDOWN_S = 30.0

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class _Cooldown:
    length_s: float
    until: float


class CatchUpPeers(Generic[P]):
    """Remembers unanswered peers and chooses the next one to ask."""

    def __init__(
        self,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        base_s: float = BASE_COOLDOWN_S,
        max_s: float = MAX_COOLDOWN_S,
    ) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._base_s = base_s
        self._max_s = max_s
        self._cooling: dict[P, _Cooldown] = {}

    def choose(self, peers: Sequence[P]) -> P | None:
        """A peer to ask among `peers` (those serving votes now), or None when there are none."""
        if not peers:
            self._cooling.clear()
            return None
        present = set(peers)
        # Forget peers that left: the entries stay bounded by the peer set, and a redialed link starts afresh.
        for gone in [p for p in self._cooling if p not in present]:
            del self._cooling[gone]
        now = self._clock()
        ready = [p for p in peers if self.cooldown_left(p, now) == 0.0]
        if ready:
            return self._rng.choice(ready)
        return min(peers, key=lambda p: self._cooling[p].until)

    def cooldown_left(self, peer: P, now: float | None = None) -> float:
        """Seconds until `peer` may be asked again; 0.0 when it is not cooling down."""
        entry = self._cooling.get(peer)
        if entry is None:
            return 0.0
        return max(0.0, entry.until - (self._clock() if now is None else now))

    def record_unanswered(self, peer: P) -> None:
        """`peer`'s round failed without an answer: cool it down, twice as long as last time (capped)."""
        entry = self._cooling.get(peer)
        length = self._base_s if entry is None else min(self._max_s, 2 * entry.length_s)
        self._cooling[peer] = _Cooldown(length, self._clock() + length)

    def record_answered(self, peer: P) -> None:
        """`peer` answered: no cool-down, and its next failure starts from the base again."""
        self._cooling.pop(peer, None)
