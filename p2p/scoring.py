"""Peer scores: penalties per offense, exponential decay, and the disconnect/ban decision. No I/O, no clock."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from p2p.config import PenaltyPolicy


class Offense(enum.Enum):
    """What a peer did. A correct peer commits none of these, except RATE_LIMITED under load."""

    MALFORMED_FRAME = "malformed_frame"  # bytes on a pubsub stream that libp2p cannot parse
    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    WRONG_CHAIN = "wrong_chain"
    BAD_SIGNATURE = "bad_signature"
    INVALID = "invalid"  # decodes and verifies but breaks a rule (envelope or node hook)
    RATE_LIMITED = "rate_limited"
    BAD_REQUEST = "bad_request"
    BAD_RESPONSE = "bad_response"

    @property
    def penalty(self) -> float:
        return _PENALTIES[self]


_PENALTIES = {
    Offense.MALFORMED_FRAME: 100.0,
    Offense.OVERSIZED: 50.0,
    Offense.UNDECODABLE: 50.0,
    Offense.WRONG_CHAIN: 50.0,
    Offense.BAD_SIGNATURE: 100.0,
    Offense.INVALID: 25.0,
    Offense.RATE_LIMITED: 5.0,
    Offense.BAD_REQUEST: 25.0,
    Offense.BAD_RESPONSE: 50.0,
}


class Action(enum.Enum):
    NONE = "none"
    DISCONNECT = "disconnect"
    BAN = "ban"


@dataclass(slots=True)
class _Entry:
    score: float
    at: float


class ScoreBook:
    """Scores start at 0, drop by each offense's penalty and decay back toward 0 with a half-life."""

    def __init__(self, policy: PenaltyPolicy) -> None:
        self._policy = policy
        self._entries: dict[str, _Entry] = {}
        self._banned_until: dict[str, float] = {}

    def score(self, peer: str, now: float) -> float:
        entry = self._entries.get(peer)
        if entry is None:
            return 0.0
        return entry.score * math.pow(0.5, max(0.0, now - entry.at) / self._policy.half_life_s)

    def penalize(self, peer: str, offense: Offense, now: float) -> Action:
        """Record the offense; say whether the peer must now be disconnected (short ban) or banned."""
        score = self.score(peer, now) - offense.penalty
        self._entries[peer] = _Entry(score, now)
        if score <= self._policy.ban_below:
            self._banned_until[peer] = now + self._policy.ban_s
            return Action.BAN
        if score <= self._policy.disconnect_below:
            self._banned_until[peer] = max(
                self._banned_until.get(peer, 0.0), now + self._policy.disconnect_ban_s
            )
            return Action.DISCONNECT
        return Action.NONE

    def is_banned(self, peer: str, now: float) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[peer]
            return False
        return True

    def banned_peers(self, now: float) -> list[str]:
        return [p for p in list(self._banned_until) if self.is_banned(p, now)]

    def forget_idle(self, now: float, below: float = 1.0) -> None:
        """Drop entries that decayed to almost nothing, so the book stays bounded by active offenders."""
        for peer in [p for p in self._entries if -self.score(p, now) < below]:
            del self._entries[peer]
