"""Peer scores: penalties per offense, exponential decay, and the disconnect/ban decision. No I/O, no clock."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

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
    # A status claimed a height whose block the peer then said it does not have. Heights only grow and blocks
    # are never deleted, so no correct peer sends that pair of answers: a proven lie, disconnected at once.
    FALSE_CLAIM = "false_claim"

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
    Offense.FALSE_CLAIM: 100.0,
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
    """Scores start at 0, drop by each offense's penalty and decay back toward 0 with a half-life.

    Reaching `disconnect_below` is a strike; `strikes_to_ban` strikes within `ban_s` ban the peer, whatever its
    score (scores decay, so a peer that reconnects after each short refusal would otherwise never reach
    `ban_below`). Every table is bounded by `max_tracked_peers`, oldest first out.
    """

    def __init__(self, policy: PenaltyPolicy) -> None:
        self._policy = policy
        self._entries: dict[str, _Entry] = {}
        self._banned_until: dict[str, float] = {}
        self._strikes: dict[str, list[float]] = {}

    def score(self, peer: str, now: float) -> float:
        entry = self._entries.get(peer)
        if entry is None:
            return 0.0
        return entry.score * math.pow(0.5, max(0.0, now - entry.at) / self._policy.half_life_s)

    def penalize(self, peer: str, offense: Offense, now: float) -> Action:
        """Record the offense; say whether the peer must now be disconnected (short ban) or banned."""
        policy = self._policy
        score = self.score(peer, now) - offense.penalty
        _put(self._entries, peer, _Entry(score, now), policy.max_tracked_peers)
        if score > policy.disconnect_below:
            return Action.NONE
        if score <= policy.ban_below:
            return self._ban(peer, now)
        if self.is_banned(peer, now):
            return Action.NONE  # already refused: offenses in flight when it was cut off are no new strike
        strikes = [t for t in self._strikes.get(peer, []) if now - t < policy.ban_s] + [now]
        _put(self._strikes, peer, strikes[-policy.strikes_to_ban:], policy.max_tracked_peers)
        if len(strikes) >= policy.strikes_to_ban:
            return self._ban(peer, now)
        until = max(self._banned_until.get(peer, 0.0), now + policy.disconnect_ban_s)
        _put(self._banned_until, peer, until, policy.max_tracked_peers)
        return Action.DISCONNECT

    def _ban(self, peer: str, now: float) -> Action:
        current = self._banned_until.get(peer, 0.0)
        if current - now > self._policy.ban_s / 2:
            return Action.NONE  # already banned (a disconnect refusal is shorter than half a ban)
        _put(self._banned_until, peer, now + self._policy.ban_s, self._policy.max_tracked_peers)
        return Action.BAN

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
        """Drop entries that decayed to almost nothing and strikes older than `ban_s`."""
        for peer in [p for p in self._entries if -self.score(p, now) < below]:
            del self._entries[peer]
        for peer in [p for p, times in self._strikes.items() if now - times[-1] >= self._policy.ban_s]:
            del self._strikes[peer]

    def tracked(self) -> int:
        """Entries held over all tables (for tests and metrics)."""
        return len(self._entries) + len(self._banned_until) + len(self._strikes)


def _put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Insert as the newest entry; past `limit` entries, forget the oldest."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]
