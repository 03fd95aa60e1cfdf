"""`OutboundTimes` (p2p/pubsub.py): the sender's log of consensus messages written late, per message, so that a
frame of merged RPCs (p2p/coalesce.py) is still reported; a plain value driven by trio's mock clock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2p.pubsub import OutboundTimes

pytestmark = [pytest.mark.p2p]

PEER = ID(b"\x00\x24" + bytes(range(36)))


def vote_rpc(seqno: int) -> rpc_pb2.RPC:
    msg = rpc_pb2.Message(data=b"vote", topicIDs=["/inferchain/c/votes/1"], from_id=b"origin",
                          seqno=seqno.to_bytes(8, "big"))
    return rpc_pb2.RPC(publish=[msg])


@pytest.mark.parametrize("wait_s, logged", [(0.7, True), (0.1, False)])
def test_a_merged_frame_is_logged_by_its_oldest_message(caplog: pytest.LogCaptureFixture, wait_s: float,
                                                        logged: bool) -> None:
    async def scenario() -> None:
        times = OutboundTimes()
        first, second = vote_rpc(1), vote_rpc(2)
        times.queued(PEER, first)
        await trio.sleep(0.2)
        times.queued(PEER, second)
        await trio.sleep(wait_s)
        frame = rpc_pb2.RPC()
        frame.MergeFrom(first)
        frame.MergeFrom(second)  # what the sending loop writes when both were queued
        started = trio.current_time()
        await trio.sleep(0.05)
        times.written(PEER, frame, started)
        times.written(PEER, frame, started)  # each message is reported once

    with caplog.at_level(logging.INFO, logger="p2p.pubsub"):
        trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    lines = [r.getMessage() for r in caplog.records if "written" in r.getMessage()]
    if logged:
        assert len(lines) == 1
        assert f"written {0.2 + wait_s + 0.05:.2f} s after it was queued" in lines[0]
    else:
        assert lines == []
