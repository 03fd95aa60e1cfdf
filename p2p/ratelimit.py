"""Token buckets per peer: our own inbound rate limiting, since library spam protection is off (pitfall 3).

Every table is bounded (the least recently seen peer is forgotten first) and a peer's state is freed when it
disconnects (`forget`), so peers that come and go cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

_DEFAULT_MAX_PEERS = 4096


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, amount: float, now: float) -> bool:
        self.refill(now)
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def charge(self, amount: float, now: float) -> None:
        """Take `amount` even if that leaves a debt (a cost known only after the work was done)."""
        self.refill(now)
        self.tokens -= amount


class _Buckets:
    """Per-peer buckets of one kind, at most `max_peers` of them, least recently used forgotten first."""

    def __init__(self, rate: float, burst: float, max_peers: int) -> None:
        self._rate, self._burst, self._max = rate, burst, max_peers
        self._table: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, peer: str, now: float) -> TokenBucket:
        bucket = self._table.get(peer)
        if bucket is None:
            bucket = self._table[peer] = TokenBucket(self._rate, self._burst, self._burst, now)
            while len(self._table) > self._max:
                self._table.popitem(last=False)
        else:
            self._table.move_to_end(peer)
        return bucket

    def forget(self, peer: str) -> None:
        self._table.pop(peer, None)

    def __len__(self) -> int:
        return len(self._table)


class PeerRateLimiter:
    """One message bucket and one byte bucket per peer; the clock is passed in."""

    def __init__(self, msgs_per_s: float, msg_burst: float, bytes_per_s: float | None = None, *,
                 max_peers: int = _DEFAULT_MAX_PEERS) -> None:
        self._msgs = _Buckets(msgs_per_s, msg_burst, max_peers)
        self._bytes = _Buckets(bytes_per_s, 2 * bytes_per_s, max_peers) if bytes_per_s is not None else None

    def allow(self, peer: str, size: int, now: float) -> bool:
        if not self._msgs.get(peer, now).take(1.0, now):
            return False
        if self._bytes is None:
            return True
        return self._bytes.get(peer, now).take(float(size), now)

    def forget(self, peer: str) -> None:
        self._msgs.forget(peer)
        if self._bytes is not None:
            self._bytes.forget(peer)

    def tracked(self) -> int:
        return len(self._msgs) + (len(self._bytes) if self._bytes is not None else 0)


class ByteBudget:
    """Bytes we may spend on each peer (e.g. response bytes served): a peer may start a piece of work while it
    has budget left; the work's actual size is charged after, possibly into debt that later work repays."""

    def __init__(self, bytes_per_s: float, burst: float, *, max_peers: int = _DEFAULT_MAX_PEERS) -> None:
        self._buckets = _Buckets(bytes_per_s, burst, max_peers)

    def available(self, peer: str, now: float) -> bool:
        bucket = self._buckets.get(peer, now)
        bucket.refill(now)
        return bucket.tokens > 0

    def charge(self, peer: str, nbytes: int, now: float) -> None:
        self._buckets.get(peer, now).charge(float(nbytes), now)

    def forget(self, peer: str) -> None:
        self._buckets.forget(peer)

    def tracked(self) -> int:
        return len(self._buckets)
