"""Token buckets per peer: our own inbound rate limiting, since library spam protection is off (pitfall 3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    at: float

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class PeerRateLimiter:
    """One message bucket and one byte bucket per peer; the clock is passed in."""

    def __init__(self, msgs_per_s: float, msg_burst: float, bytes_per_s: float | None = None) -> None:
        self._msgs_per_s = msgs_per_s
        self._msg_burst = msg_burst
        self._bytes_per_s = bytes_per_s
        self._msgs: dict[str, TokenBucket] = {}
        self._bytes: dict[str, TokenBucket] = {}

    def allow(self, peer: str, size: int, now: float) -> bool:
        msgs = self._msgs.get(peer)
        if msgs is None:
            msgs = self._msgs[peer] = TokenBucket(self._msgs_per_s, self._msg_burst, self._msg_burst, now)
        if not msgs.take(1.0, now):
            return False
        if self._bytes_per_s is None:
            return True
        nbytes = self._bytes.get(peer)
        if nbytes is None:
            burst = 2 * self._bytes_per_s
            nbytes = self._bytes[peer] = TokenBucket(self._bytes_per_s, burst, burst, now)
        return nbytes.take(float(size), now)

    def forget(self, peer: str) -> None:
        self._msgs.pop(peer, None)
        self._bytes.pop(peer, None)
