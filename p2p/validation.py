"""The per-topic validator pipeline: size cap, then the envelope check, then the node's state hook.

Each stage can only narrow: a message reaches the node's handler and is relayed only if all say ACCEPT.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.peer.id import ID

from core.errors import DecodeError, InvalidSignature, LocalError, RemoteError
from core.types import Hash32
from p2p import offload
from p2p.envelope import EnvelopeCheck
from p2p.errors import Oversized, WrongChain
from p2p.scoring import Offense
from p2p.topics import TopicKind

logger = logging.getLogger(__name__)

# Envelope checks of messages at least this large run in a worker thread: a 256 KiB transaction batch
# means hundreds of signature verifications, which must not stall the event loop (STYLE anti-patterns).
THREAD_THRESHOLD = 8 * 1024
# A `DecodeOnly` envelope check (it verifies no signature: pure Python decoding, which holds the GIL in a
# worker thread as much as on the loop) runs inline below this size: about 420 transfers, ~2 ms of
# decoding on a quiet core. A trip to a worker thread costs ~50 us of CPU on a quiet loop (bench.offload),
# a fifth of a 50-transfer batch's decode (~5 us each, bench.gossip_rx), and buys nothing while the decode
# holds the GIL; above the bound the loop gets its GIL slices as before.
DECODE_INLINE_BYTES = 64 * 1024
# Transaction batches and consensus messages take separate worker threads: a proposal's check must not wait
# for the batches queued before it (docs/performance-latency.md, "Consensus messages ahead of transaction gossip").
_BULK_CHECK_THREADS = trio.CapacityLimiter(2)
_CONSENSUS_CHECK_THREADS = trio.CapacityLimiter(1)


class DecodeOnly:
    """An envelope check that verifies no signature (the node's transactions topic: its hook verifies them
    after the cheap state checks). The pipeline runs it on the event loop below `DECODE_INLINE_BYTES`, so a
    gossiped batch takes at most one thread trip (the hook's signatures) instead of two."""

    __slots__ = ("check",)

    def __init__(self, check: EnvelopeCheck) -> None:
        self.check = check

    def __call__(self, data: bytes) -> Any:
        return self.check(data)


class GossipVerdict(enum.Enum):
    ACCEPT = "accept"  # deliver and relay
    IGNORE = "ignore"  # neither deliver nor relay, and do not blame the sender (e.g. a stale height)
    REJECT = "reject"  # neither, and penalize the peer that sent it


@dataclass(slots=True)
class Arrival:
    """When one inbound message passed each stage of this node's pipeline (trio clock), for the logs.

    `read_wall` is the wall clock at read, to set against the signer's timestamp (its clock, not ours): what
    a consensus message spent before this node read it (signing, the sender's queue, the wire). The rest is
    this node's: waiting for admission (its task to run, the pubsub signature), the envelope check and hook,
    the delivery buffer, the handler.
    """

    read: float
    read_wall: float
    admitted: float = 0.0  # admission began
    checked: float = 0.0  # envelope check and hook done
    delivered: float = 0.0  # put in the topic's delivery buffer
    handled: float = 0.0  # taken by the node's handler

    def describe(self) -> str:
        """The stages as one log fragment: seconds spent waiting for admission, checking, in the buffer."""
        def span(start: float, end: float) -> str:
            return f"{end - start:.2f}" if start and end else "?"
        return (f"admission wait {span(self.read, self.admitted)} s, checks {span(self.admitted, self.checked)} s, "
                f"delivery {span(self.checked, self.handled)} s")


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A message that passed the pipeline, as the node's handler and hook see it."""

    kind: TopicKind
    data: bytes
    value: Any  # what the envelope check decoded: TxBatch, ProposalBlock, Vote or EvidenceEnvelope
    msg_id: Hash32  # SHA-256 of `data`
    forwarder: ID  # the peer that sent it to us
    origin: ID  # the peer that published it (authenticated by the pubsub signature)
    arrival: Arrival | None = field(default=None, compare=False)  # when it passed each stage (logs only)


StateHook = Callable[[GossipMessage], Awaitable[GossipVerdict]]


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: GossipVerdict
    offense: Offense | None = None
    message: GossipMessage | None = None
    reason: str = ""


def offense_of(error: RemoteError) -> Offense:
    if isinstance(error, Oversized):
        return Offense.OVERSIZED
    if isinstance(error, DecodeError):
        return Offense.UNDECODABLE
    if isinstance(error, WrongChain):
        return Offense.WRONG_CHAIN
    if isinstance(error, InvalidSignature):
        return Offense.BAD_SIGNATURE
    return Offense.INVALID


class TopicPipeline:
    """The checks of one topic. `envelope` is stateless; `hook` (optional) is the node's, with chain state."""

    def __init__(self, kind: TopicKind, cap: int, envelope: EnvelopeCheck, hook: StateHook | None = None):
        self.kind = kind
        self.cap = cap
        self.envelope = envelope
        self.hook = hook

    async def decode(self, data: bytes) -> Any:
        """Size cap and envelope check; raises a RemoteError naming what is wrong."""
        if len(data) > self.cap:
            raise Oversized(f"{self.kind.value}: {len(data)} bytes exceeds the cap of {self.cap}")
        if len(data) >= (DECODE_INLINE_BYTES if isinstance(self.envelope, DecodeOnly) else THREAD_THRESHOLD):
            limiter = _BULK_CHECK_THREADS if self.kind is TopicKind.TXS else _CONSENSUS_CHECK_THREADS
            return await offload.run_sync(self.envelope, data, limiter=limiter)
        return self.envelope(data)

    async def run(self, data: bytes, msg_id: Hash32, forwarder: ID, origin: ID,
                  arrival: Arrival | None = None) -> Outcome:
        try:
            value = await self.decode(data)
        except RemoteError as exc:
            return Outcome(GossipVerdict.REJECT, offense_of(exc), reason=str(exc))
        except LocalError as exc:  # our fault, not the sender's: drop the message, penalize nobody
            logger.warning("envelope check for %s failed on our side: %s", self.kind.value, exc)
            return Outcome(GossipVerdict.IGNORE, reason=str(exc))
        message = GossipMessage(self.kind, data, value, msg_id, forwarder, origin, arrival)
        if self.hook is None:
            return Outcome(GossipVerdict.ACCEPT, message=message)
        try:
            verdict = await self.hook(message)
        except RemoteError as exc:
            return Outcome(GossipVerdict.REJECT, offense_of(exc), reason=str(exc))
        except LocalError as exc:  # our fault, not the sender's: drop the message, penalize nobody
            logger.warning("state hook for %s failed on our side: %s", self.kind.value, exc)
            return Outcome(GossipVerdict.IGNORE, reason=str(exc))
        except Exception:
            # A bug in the node's hook must not take gossip down nor be blamed on the peer.
            logger.exception("state hook for %s failed; ignoring the message", self.kind.value)
            return Outcome(GossipVerdict.IGNORE, reason="hook error")
        if verdict is GossipVerdict.REJECT:
            return Outcome(verdict, Offense.INVALID, message, reason="refused by the node's state hook")
        return Outcome(verdict, message=message if verdict is GossipVerdict.ACCEPT else None)
