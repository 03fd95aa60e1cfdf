"""p2p's errors, each a subclass of core's by cause."""

from __future__ import annotations

from core.errors import PeerMisbehaved, RemoteError


class WrongChain(RemoteError):
    """A message or peer of another chain id: not necessarily malicious, never accepted."""


class Oversized(RemoteError):
    """A message over its topic's byte cap, refused before decoding."""


class RequestFailed(RemoteError):
    """A request the peer did not answer usefully: timeout, refusal, transport failure, unknown protocol.
    Not necessarily misbehaviour: ask another peer, do not penalize (that is `BadResponse`)."""


class RateLimited(RequestFailed):
    """The peer refused the request for our request rate or its byte budget for us: wait, or ask another."""


class NotServed(RequestFailed):
    """The peer announced (libp2p identify) protocols that do not include this one: not asked at all."""


class NotFound(RequestFailed):
    """The peer answered that it lacks what was asked."""


class BadResponse(PeerMisbehaved):
    """A response a correct peer never sends (undecodable, inconsistent with the request, badly signed)."""
