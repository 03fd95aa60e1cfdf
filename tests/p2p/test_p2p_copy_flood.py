"""Copies count toward the forwarder's gossip rate (docs/security.md, "Copy flood"): a peer that sends copies
of a message we already hold, as fast as it likes, is cut off like any peer over its rate.

A copy is dropped where it is read (`Gossip.is_copy`), before the pubsub signature check and validation, but
reading, parsing and hashing it are spent all the same; and an honest peer sends us at most one copy of each
message the network carries, so its copies stay within the rate its first copies need anyway.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from p2p.testing.chain import make_vote, validator_keys
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_until

pytestmark = [pytest.mark.p2p]

KEY = validator_keys(1)[0]
COPIES = 800  # over the default gossip burst (600 messages) by far more than the 20 a disconnect takes
PER_RPC = 100


@pytest.mark.trio
async def test_a_peer_flooding_copies_of_a_known_message_is_cut_off() -> None:
    """Attack: a peer publishes one valid vote, then 800 copies of its bytes (each a fresh pubsub message of
    its own, so upstream's seen cache knows the content, not the envelope). Defence: every copy is charged to
    its rate; past the burst it is penalized (RATE_LIMITED) and disconnected. The vote itself is delivered
    once. Without the charge, copies cost the peer nothing and it stays connected."""
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(1, configure=lambda i, s: inbox.attach(s)) as (victim,):
            votes = victim.gossip.topic(TopicKind.VOTES)
            vote = make_vote(CHAIN, KEY, 1).encode()
            async with attacker(b"copier") as bad:
                stream = await bad.open_meshsub(victim.addr)
                await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[bad.signed_message(votes, vote)]))
                await wait_until(lambda: any(m.data == vote for m in inbox.messages[TopicKind.VOTES]), within=20)
                with contextlib.suppress(Exception):  # the victim may reset the stream once it cuts us off
                    for _ in range(COPIES // PER_RPC):
                        rpc = rpc_pb2.RPC(publish=[bad.signed_message(votes, vote) for _ in range(PER_RPC)])
                        await Attacker.send_rpc(stream, rpc)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id), within=20)
                assert victim.counters.duplicates >= 600
                assert victim.counters.ignored["rate_limited"] >= 20
                assert victim.peers.is_banned(bad.peer_id)
            assert [m.data for m in inbox.messages[TopicKind.VOTES]] == [vote]
