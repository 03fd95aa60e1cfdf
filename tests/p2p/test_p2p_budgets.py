"""Bounded requests and bounded peer state (issue 9.8), each mounted for real against real hosts."""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from core.types import Height, Round
from core.votes import VoteType
from p2p.config import PenaltyPolicy, RateLimits
from p2p.errors import NotServed, RateLimited
from p2p.host import parse_peer_addr
from p2p.limits import LIBP2P_FRAME_MAX
from p2p.messages import VotesRequest, bitset
from p2p.reqresp import SyncedBlock
from p2p.service import P2PService
from p2p.testing.node import NodeProcess, free_port
from p2p.topics import TopicKind
from tests.adversary.frames import Attacker, attacker
from tests.p2p.helpers import CHAIN, running_nodes, wait_until
from tests.p2p.test_p2p_processes import processes
from tests.p2p.test_p2p_reqresp import CHAIN_DATA, serve

pytestmark = [pytest.mark.p2p]

KIB, MIB = 1024, 1024 * 1024
SHORT_REFUSAL = PenaltyPolicy(disconnect_ban_s=1.0)


@pytest.mark.trio
async def test_byte_heavy_requests_are_budgeted_per_peer_and_honest_sync_still_completes() -> None:
    """A ~20-byte blocks request is answered with ~1 MiB: the server budgets bytes served per peer, not only
    requests. Over budget it refuses without blame; an honest `fetch_blocks` waits and completes."""
    rates = RateLimits(served_bytes_per_s=512 * KIB, served_bytes_burst=1 * MIB)
    with trio.fail_after(90):
        async with running_nodes(2, rates=rates, configure=lambda i, s: serve(s) if i == 0 else None) as nodes:
            server, client = nodes
            started = trio.current_time()
            answered = refused = 0
            for _ in range(20):  # what the attack looked like: 20 tiny requests, each worth ~1 MiB
                try:
                    await client.reqresp.blocks(server.peer_id, 1, 1000)
                    answered += 1
                except RateLimited:
                    refused += 1
            elapsed = trio.current_time() - started
            assert refused > 0 and server.counters.served_budget_refusals == refused
            budget = rates.served_bytes_burst + rates.served_bytes_per_s * elapsed
            assert server.counters.served_bytes <= budget + MIB, (server.counters.served_bytes, budget)
            assert answered <= 2 + int(elapsed), (answered, elapsed)  # ~1 MiB each at 0.5 MiB/s plus the burst
            # the refusals cost the client no score: an honest syncing peer gets here too
            assert server.peers.scores.score(str(client.peer_id), trio.current_time()) == 0

            got: list[SyncedBlock] = []

            async def on_blocks(chunk: list[SyncedBlock]) -> None:
                got.extend(chunk)
                await trio.lowlevel.checkpoint()

            fetched = await client.reqresp.fetch_blocks(server.peer_id, 1, 12, on_blocks)
            assert fetched == 12 and [b.block.id for b in got] == [CHAIN_DATA.blocks[i].id for i in range(12)]


@pytest.mark.trio
async def test_rate_state_of_a_peer_is_freed_when_it_disconnects() -> None:
    """Per-peer rate state was never freed: every peer that ever sent a message or a request stayed. Visitors
    are real processes that gossip and sync, then die (the kernel closes their connections)."""
    with trio.fail_after(120):
        async with running_nodes(1, configure=lambda i, s: serve(s)) as (victim,):
            for i in range(2):
                visitor = NodeProcess(f"visitor-{i}", free_port(), [victim.addr], chain=CHAIN)
                async with processes(visitor):
                    await visitor.expect("ready")
                    await visitor.request("sync", "synced", peer=victim.addr, to=3)
                    await visitor.request("publish_votes", "published", count=2, height=5)
                    await wait_until(lambda: victim.gossip.tracked_peers() > 0 and victim.reqresp.tracked_peers() > 0)
                    visitor.kill()
                await wait_until(lambda: victim.gossip.tracked_peers() == 0 and victim.reqresp.tracked_peers() == 0)
                assert not victim.connected_peers()


def refusal_over(victim: P2PService, bad: Attacker) -> bool:
    pubsub = victim.gossip.pubsub
    return not victim.peers.is_banned(bad.peer_id) and pubsub is not None \
        and not pubsub.is_peer_blacklisted(bad.peer_id)


@pytest.mark.trio
async def test_oversized_pubsub_frames_cost_the_sender_and_a_repeat_offender_is_banned() -> None:
    """A foreign peer sent pubsub frames over the limit (1.5 MiB when it was 1 MiB; now one byte over 2 MiB):
    upstream reset the stream each time, without a penalty, and the peer came back for more. Now the frame is
    an offense, and coming back to do it again is a ban."""
    with trio.fail_after(90):
        async with running_nodes(1, penalties=SHORT_REFUSAL) as (victim,), attacker(b"big frames") as bad:
            for round_ in (1, 2):
                bad.host.get_network().unblock_peer(victim.peer_id)  # type: ignore[attr-defined]
                stream = await bad.open_meshsub(victim.addr)
                await Attacker.send_oversized(stream, LIBP2P_FRAME_MAX + 1)
                await wait_until(lambda r=round_: victim.counters.oversized_frames == r)
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id))
                if round_ == 1:
                    assert victim.counters.disconnects == 1 and victim.counters.bans == 0
                    await wait_until(lambda: refusal_over(victim, bad), within=10)
            assert victim.counters.bans == 1
            await trio.sleep(1.5)  # longer than the short refusal: the ban holds
            assert victim.peers.is_banned(bad.peer_id)


@pytest.mark.trio
async def test_a_peer_disconnected_twice_for_small_offenses_is_banned() -> None:
    """Scores halve every 60 s and a disconnected peer may return after 30 s: a peer whose offenses each cost
    little (50 for wrong-chain batches) was disconnected at -100 again and again, never reaching -200."""
    with trio.fail_after(90):
        async with running_nodes(1, penalties=SHORT_REFUSAL) as (victim,), attacker(b"small offenses") as bad:
            topic = victim.gossip.topic(TopicKind.TXS)
            for round_ in (1, 2):
                bad.host.get_network().unblock_peer(victim.peer_id)  # type: ignore[attr-defined]
                stream = await bad.open_meshsub(victim.addr)
                for n in range(4):
                    with contextlib.suppress(Exception):  # the victim may cut us off before the last
                        await Attacker.send_rpc(stream, bad.wrong_chain_batch(topic, 10 * round_ + n))
                await wait_until(lambda: not victim.host.get_network().get_connections(bad.peer_id))
                if round_ == 1:
                    assert victim.counters.disconnects == 1 and victim.counters.bans == 0
                    await wait_until(lambda: refusal_over(victim, bad), within=10)
            assert victim.counters.bans == 1
            await trio.sleep(1.5)
            assert victim.peers.is_banned(bad.peer_id)


@pytest.mark.trio
async def test_requests_go_only_to_peers_that_announced_our_protocols() -> None:
    """Catch-up asked a connected js-libp2p peer for votes, 42 times: it speaks none of our protocols."""
    request = VotesRequest(Height(1), Round(0), VoteType.PREVOTE, bitset([]))
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve(s) if i == 1 else None) as (client, server), \
                attacker(b"foreign") as foreign:
            await foreign.host.connect(parse_peer_addr(client.addr))
            store = client.host.get_peerstore()

            def identified(peer: ID) -> bool:
                try:
                    return bool(store.get_protocols(peer))
                except PeerStoreError:  # not in the peerstore yet
                    return False

            await wait_until(lambda: identified(foreign.peer_id) and identified(server.peer_id), within=30)
            assert set(client.peers_serving("votes")) == {server.peer_id}
            with pytest.raises(NotServed):
                await client.reqresp.votes(foreign.peer_id, request)
            assert client.counters.requests_skipped["votes"] == 1
            assert client.counters.requests_failed["votes"] == 0
            assert len(await client.reqresp.votes(server.peer_id, request)) == 4
