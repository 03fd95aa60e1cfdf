"""Misbehaving peers over real connections: nothing they send may crash a node or be relayed."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p import new_host
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from core.types import Round
from p2p.batcher import encode_tx_batch
from p2p.config import PenaltyPolicy
from p2p.host import parse_multiaddr, parse_peer_addr
from p2p.identity import node_key_from_seed
from p2p.scoring import Offense
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.p2p.attacker import Attacker, attacker
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEY = validator_keys(1)[0]


async def assert_still_relays(nodes: list, inbox: Inbox, height: int) -> None:
    """Honest traffic still flows from node 1 through node 0 to node 2 (the attacker's victim is node 0)."""
    msg_id = await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEY, height).encode())
    await wait_until(lambda: bytes(msg_id) in inbox.ids(TopicKind.VOTES))


@pytest.mark.trio
async def test_garbage_frames_are_contained_and_the_sender_cut_off() -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(3, full_mesh=False,
                                 configure=lambda i, s: inbox.attach(s) if i == 2 else None) as nodes:
            await wait_for_mesh(nodes)
            victim = nodes[0]
            async with attacker(b"garbage") as bad, attacker(b"bad key") as bad_key:
                stream = await bad.open_meshsub(victim.addr)
                await Attacker.send_raw(stream, os.urandom(64))  # killed the process upstream (pitfall 2)
                await wait_until(lambda: victim.counters.malformed_frames == 1)
                # one garbage frame costs a correct peer's whole score: disconnected and barred for a while
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id))
                assert victim.peers.is_banned(bad.peer_id)
                assert victim.counters.disconnects == 1

                # a publish whose key field is not a public key raised out of upstream's push_msg
                stream = await bad_key.open_meshsub(victim.addr)
                msg = rpc_pb2.Message(data=b"x", topicIDs=[victim.gossip.topic(TopicKind.VOTES)],
                                      from_id=b"\x01\x02garbage", seqno=b"12345678", key=b"\xff\xfe",
                                      signature=b"sig")
                await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[msg]))
                await wait_until(lambda: victim.counters.malformed_frames == 2)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad_key.peer_id))

                # the barred peer dials back: its connection is closed again at once
                refused = victim.counters.peers_refused
                bad.host.get_network().unblock_peer(victim.peer_id)
                await bad.host.connect(parse_peer_addr(victim.addr))
                await wait_until(lambda: victim.counters.peers_refused == refused + 1)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id))
            await assert_still_relays(nodes, inbox, 2)


@pytest.mark.trio
async def test_oversized_wrong_chain_and_badly_signed_messages_are_dropped_not_relayed() -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        # thresholds out of reach, so that every bad message is seen before the sender would be cut off
        lenient = PenaltyPolicy(disconnect_below=-1e9, ban_below=-2e9)
        async with running_nodes(3, full_mesh=False, penalties=lenient,
                                 configure=lambda i, s: inbox.attach(s) if i == 2 else None) as nodes:
            await wait_for_mesh(nodes)
            victim = nodes[0]
            votes, txs = victim.gossip.topic(TopicKind.VOTES), victim.gossip.topic(TopicKind.TXS)
            async with attacker() as bad:
                stream = await bad.open_meshsub(victim.addr)
                oversized = make_vote(CHAIN, KEY, 1).encode() + b"\x00" * 4096
                wrong_chain = encode_tx_batch([make_tx("other-chain", n).encode() for n in range(3)])
                forged = make_vote(CHAIN, KEY, 3).replace(round=Round(9)).encode()  # signature no longer fits
                garbage = b"\xc1" * 100
                for data, topic in ((oversized, votes), (wrong_chain, txs), (forged, votes), (garbage, votes)):
                    await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[bad.signed_message(topic, data)]))
                await wait_until(lambda: sum(victim.counters.rejected.values()) >= 4)
                assert victim.counters.rejected[Offense.OVERSIZED.value] == 1
                assert victim.counters.rejected[Offense.WRONG_CHAIN.value] == 1
                assert victim.counters.rejected[Offense.BAD_SIGNATURE.value] == 1
                assert victim.counters.rejected[Offense.UNDECODABLE.value] == 1
                assert victim.peers.scores.score(str(bad.peer_id), trio.current_time()) < 0
                # a valid message from the same peer is still accepted and relayed
                good = make_vote(CHAIN, KEY, 4).encode()
                await Attacker.send_rpc(stream, rpc_pb2.RPC(publish=[bad.signed_message(votes, good)]))
                await wait_until(lambda: any(m.data == good for m in inbox.messages[TopicKind.VOTES]))
            assert {m.data for m in inbox.messages[TopicKind.VOTES]} == {good}
            assert not inbox.messages[TopicKind.TXS]
            await assert_still_relays(nodes, inbox, 5)


@pytest.mark.trio
async def test_a_plaintext_dial_is_refused() -> None:
    with trio.fail_after(30):
        async with running_nodes(1) as nodes:
            key = node_key_from_seed(b"plaintext")
            plain = new_host(key_pair=key, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(key)})
            async with plain.run(listen_addrs=[parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
                with pytest.raises(Exception):  # noqa: B017 - the swarm wraps the negotiation failure
                    with trio.fail_after(10):
                        await plain.connect(parse_peer_addr(nodes[0].addr))
                assert not nodes[0].host.get_network().get_connections(plain.get_id())
