"""IDONTWANT (p2p/dontwant.py): fewer copies of large messages, and no way for a lying peer to use it against
others. Book and queue rules as plain values; the rest with real hosts on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from core.hashing import sha256
from p2p.batcher import encode_tx_batch
from p2p.dontwant import (
    MERGED_DONT_WANT_IDS,
    DontWantBook,
    DontWantGossipSub,
    DontWantPolicy,
    announcement_id,
)
from p2p.pubsub import ByteBudgetQueue
from p2p.service import P2PService
from p2p.testing.chain import make_tx
from p2p.topics import TopicKind
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until
from tests.p2p.test_p2p_gossip import proposal_block

pytestmark = [pytest.mark.p2p]


def announcement(*ids: bytes) -> rpc_pb2.RPC:
    return rpc_pb2.RPC(control=rpc_pb2.ControlMessage(idontwant=[rpc_pb2.ControlIDontWant(messageIDs=list(ids))]))


def ids(n: int, start: int = 0) -> list[bytes]:
    return [sha256(i.to_bytes(4, "big")) for i in range(start, start + n)]


def batch(tag: int, txs: int = 20) -> bytes:
    """A valid tx batch of a few KiB (the tests set the announcement threshold to 1 KiB; the default is 64 KiB)."""
    return encode_tx_batch([make_tx(CHAIN, 1000 * tag + n).encode() for n in range(txs)])


# ---------------------------------------------------------------------------------------------- plain values


def test_an_announcement_holds_for_its_ttl_and_only_for_the_peer_that_made_it() -> None:
    book = DontWantBook(DontWantPolicy(ttl_s=5.0))
    [m] = ids(1)
    assert book.add("liar", [m], now=100.0) == 1
    assert book.holds("liar", m, now=104.9)
    assert not book.holds("honest", m, now=100.0)  # what one peer says changes nothing for another
    assert not book.holds("liar", m, now=105.1)
    book.prune(now=105.1)
    assert book.size("liar") == 0
    book.add("liar", [m], now=200.0)
    book.forget("liar")
    assert not book.holds("liar", m, now=200.0)


def test_a_peer_cannot_grow_its_announcements_past_the_bounds() -> None:
    book = DontWantBook(DontWantPolicy(max_per_peer=100, max_ids_per_rpc=10))
    assert book.add("p", ids(50), now=0.0) == 10  # at most max_ids_per_rpc from one control message
    for n in range(30):
        book.add("p", ids(10, start=100 + 10 * n), now=float(n))
    assert book.size("p") == 100  # the oldest went first
    assert book.holds("p", ids(1, start=395)[0], now=30.0)
    assert not book.holds("p", ids(1, start=100)[0], now=30.0)
    assert book.add("p", [b"short", b"x" * 33], now=31.0) == 0  # not a 32-byte id: nothing we send under it


def test_the_policy_refuses_nonsense() -> None:
    for bad in ({"ttl_s": 0.0}, {"max_per_peer": 0}, {"bulk_relay_delay_s": 20.0}, {"min_bytes": -1}):
        with pytest.raises(ValueError):
            DontWantPolicy(**bad)  # type: ignore[arg-type]


def test_announcements_waiting_for_a_busy_peer_go_out_as_one_frame() -> None:
    queue = ByteBudgetQueue(32)
    bulk = rpc_pb2.RPC(publish=[rpc_pb2.Message(data=b"x" * 2000, topicIDs=["t"])])
    assert queue.push(bulk)
    for m in ids(MERGED_DONT_WANT_IDS + 1):
        assert queue.push(announcement(m), priority=True)
    assert len(queue) == 3  # the bulk RPC, one merged announcement, and the one that did not fit
    first = queue.pop()
    assert first is not None and list(first.control.idontwant[0].messageIDs) == ids(MERGED_DONT_WANT_IDS)
    assert queue.held_bytes == bulk.ByteSize() + announcement(ids(1, MERGED_DONT_WANT_IDS)[0]).ByteSize()
    # a GRAFT or anything but a bare announcement is never merged into
    graft = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID="t")]))
    queue.push(graft, priority=True)
    queue.push(announcement(ids(1, 999)[0]), priority=True)
    assert len(queue) == 4


# ---------------------------------------------------------------------------------------------- real hosts


async def _copies_per_receiver(policy: DontWantPolicy) -> tuple[float, int, int]:
    """4 nodes in a full mesh, each publishing two batches: copies read per batch and receiving node, how many
    batches some node did not deliver, and how many copies beyond the first were not dropped where read."""
    inboxes = [Inbox() for _ in range(4)]
    async with running_nodes(4, seed="dw", configure=lambda i, s: inboxes[i].attach(s), dont_want=policy) as nodes:
        await wait_for_mesh(nodes, minimum=3)
        before = [n.counters.messages_received for n in nodes]
        dups_before = [n.counters.duplicates for n in nodes]
        published: list[set[bytes]] = [set() for _ in nodes]
        for round_ in range(2):
            for i, node in enumerate(nodes):
                published[i].add(bytes(await node.publish(TopicKind.TXS, batch(10 * round_ + i), check=False)))

        def everywhere() -> bool:
            return all(published[j] <= inboxes[i].ids(TopicKind.TXS) for i in range(4) for j in range(4) if j != i)

        await wait_until(everywhere, within=20)
        # relays of the last batches leave up to bulk_relay_delay_s after they arrived
        await trio.sleep(policy.bulk_relay_delay_s + 0.5)
        copies = sum(n.counters.messages_received - b for n, b in zip(nodes, before, strict=True))
        missing = sum(len(published[j] - inboxes[i].ids(TopicKind.TXS)) for i in range(4) for j in range(4) if j != i)
        dropped = sum(n.counters.duplicates - b for n, b in zip(nodes, dups_before, strict=True))
        first_copies = sum(len(inboxes[i].messages[TopicKind.TXS]) for i in range(4))
        return copies / (len(nodes) * 2) / 3, missing, copies - first_copies - dropped


@pytest.mark.trio
async def test_in_a_full_mesh_a_large_message_reaches_each_node_about_once_and_copies_are_dropped_on_read() -> None:
    # Generous delay so that announcements win on a loaded machine; the default is 50 ms.
    with trio.fail_after(90):
        copies, missing, undropped = await _copies_per_receiver(
            DontWantPolicy(bulk_relay_delay_s=1.0, min_bytes=1024))
        assert missing == 0
        assert copies <= 1.5  # without announcements each node reads each batch three times (checked below)
        assert undropped == 0
        copies_off, missing_off, undropped_off = await _copies_per_receiver(DontWantPolicy(enabled=False))
        assert missing_off == 0
        assert copies_off > 2.5
        # every copy but the first is dropped where it is read (and counted), not after a task and signature checks
        assert undropped_off == 0


@pytest.mark.trio
async def test_a_peer_that_lies_in_idontwant_starves_only_itself() -> None:
    """Star: node 0 relays between leaves 1, 2 and 3. The liar (3) announces, before it exists, the id of the batch
    leaf 1 will publish, and floods the centre with ids. Leaf 2 still gets the batch through the centre; the liar
    does not (its announcement is honoured for itself alone); the centre's memory for the liar stays bounded."""
    inboxes = [Inbox() for _ in range(4)]
    policy = DontWantPolicy(min_bytes=1024)
    with trio.fail_after(60):
        async with running_nodes(4, seed="liar", full_mesh=False, configure=lambda i, s: inboxes[i].attach(s),
                                 dont_want=policy) as nodes:
            centre, origin, honest, liar = nodes
            await wait_for_mesh(nodes, minimum=1)
            await wait_until(lambda: len(centre.gossip.mesh_peers(TopicKind.TXS)) == 3)
            data = batch(7)
            msg_id = sha256(data)
            announced = announcement_id(centre.gossip.topic(TopicKind.TXS), msg_id)  # what a v1.2 peer of ours sends
            router = _router(liar)
            router.send_rpc(centre.peer_id, announcement(announced), priority=True)
            for chunk in range(20):  # 20 x 500 ids (20 RPCs fit the liar's 32-RPC queue): over what is kept
                router.send_rpc(centre.peer_id, announcement(*ids(500, start=500 * chunk)), priority=True)
            book = _router(centre).dont_want
            await wait_until(lambda: centre.counters.idontwant_received >= 20 * policy.max_ids_per_rpc)
            assert book.size(liar.peer_id) <= policy.max_per_peer
            assert not book.holds(liar.peer_id, announced, time.monotonic())  # pushed out by its own flood
            router.send_rpc(centre.peer_id, announcement(announced), priority=True)
            await wait_until(lambda: book.holds(liar.peer_id, announced, time.monotonic()))

            await origin.publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: msg_id in inboxes[2].ids(TopicKind.TXS), within=20)
            assert msg_id in inboxes[0].ids(TopicKind.TXS)
            await trio.sleep(policy.bulk_relay_delay_s + 1.0)
            assert msg_id not in inboxes[3].ids(TopicKind.TXS)
            assert centre.counters.relays_suppressed >= 1
            assert honest.counters.rejected.total() == 0


def _router(service: P2PService) -> DontWantGossipSub:
    router = service.gossip.router
    assert router is not None
    return router


@pytest.mark.trio
async def test_bytes_sent_on_the_wrong_topic_neither_cancel_nor_condemn_the_real_message() -> None:
    """A peer sends a proposal's bytes on the transactions topic (where they fail to decode) before the proposer
    publishes it. The receivers reject and announce that transactions message; the real proposal still reaches
    them and its forwarder is not blamed: announcements and the rejected, in-validation and delivered caches are
    per topic. With an announcement naming the id alone, the proposer skipped the node that announced it."""
    inboxes = [Inbox() for _ in range(3)]
    policy = DontWantPolicy(min_bytes=1024)
    with trio.fail_after(60):
        async with running_nodes(3, seed="topic", configure=lambda i, s: inboxes[i].attach(s),
                                 dont_want=policy) as nodes:
            receiver, proposer, faker = nodes
            await wait_for_mesh(nodes, minimum=2)
            data = proposal_block()
            assert len(data) >= policy.min_bytes
            await faker.publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: receiver.counters.rejected.total() >= 1
                             and proposer.counters.rejected.total() >= 1)
            await wait_until(lambda: receiver.counters.idontwant_sent >= 1)  # told the proposer it "holds" it
            await trio.sleep(0.5)  # the announcement reaches the proposer
            await proposer.publish(TopicKind.PROPOSALS, data)
            await wait_until(lambda: sha256(data) in inboxes[0].ids(TopicKind.PROPOSALS), within=20)
            # only the faker was blamed: one rejection each, none for the proposer's real message
            assert receiver.counters.rejected.total() == 1
            assert proposer.counters.rejected.total() == 1
