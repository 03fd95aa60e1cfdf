"""Gossip between real hosts on 127.0.0.1: mesh formation, delivery to every node, the validator pipeline."""

from __future__ import annotations

import pytest
import trio

from core.block import ProposalBlock
from core.evidence import EvidenceEnvelope, duplicate_vote
from core.hashing import sha256
from core.types import Round, Timestamp
from core.votes import Proposal
from p2p.batcher import TxBatcher, encode_tx_batch
from p2p.scoring import Offense
from p2p.testing.chain import build_chain, make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, GossipVerdict
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEYS = validator_keys(4)


def proposal_block(height: int = 2) -> bytes:
    block = build_chain(CHAIN, height, txs_per_block=3).blocks[-1]
    key = KEYS[0]
    unsigned = Proposal(block.height, Round(0), -1, block.id, Timestamp(1), key.public_key,
                        make_vote(CHAIN, key, 1).signature)
    return ProposalBlock(unsigned.signed(key, CHAIN), block).encode()


def evidence() -> bytes:
    a = make_vote(CHAIN, KEYS[1], 5, block_id=sha256(b"a"))
    b = make_vote(CHAIN, KEYS[1], 5, block_id=sha256(b"b"))
    return EvidenceEnvelope(duplicate_vote(a, b)).encode()


@pytest.mark.trio
async def test_four_nodes_form_a_mesh_and_every_message_reaches_every_node() -> None:
    inboxes = [Inbox() for _ in range(4)]
    with trio.fail_after(60):
        async with running_nodes(4, configure=lambda i, s: inboxes[i].attach(s)) as nodes:
            await wait_for_mesh(nodes, minimum=2)
            own: list[dict[TopicKind, set[bytes]]] = [{k: set() for k in TopicKind} for _ in nodes]

            async def publish(i: int, kind: TopicKind, data: bytes) -> None:
                own[i][kind].add(bytes(await nodes[i].publish(kind, data)))

            for i in range(4):
                for n in range(5):
                    await publish(i, TopicKind.VOTES, make_vote(CHAIN, KEYS[i], height=1 + n).encode())
                batch = encode_tx_batch([make_tx(CHAIN, 100 * i + n).encode() for n in range(20)])
                await publish(i, TopicKind.TXS, batch)
            await publish(1, TopicKind.PROPOSALS, proposal_block())
            await publish(2, TopicKind.EVIDENCE, evidence())

            def delivered_everywhere() -> bool:
                for i in range(4):
                    for kind in TopicKind:
                        others = set().union(*(own[j][kind] for j in range(4) if j != i))
                        if not others <= inboxes[i].ids(kind):
                            return False
                return True

            await wait_until(delivered_everywhere, within=15)
            for i in range(4):
                for kind in TopicKind:
                    # a node's own publishes are not looped back to its handlers, and nothing arrives twice
                    assert not own[i][kind] & inboxes[i].ids(kind)
                    assert len(inboxes[i].messages[kind]) == len(inboxes[i].ids(kind))
                assert sum(nodes[i].counters.rejected.values()) == 0
                assert nodes[i].counters.outbound_dropped == 0
            vote = inboxes[0].messages[TopicKind.VOTES][0]
            assert vote.value.verify_signature(CHAIN)
            assert vote.msg_id == sha256(vote.data)
            assert vote.origin in {n.peer_id for n in nodes[1:]}


@pytest.mark.trio
async def test_batcher_carries_many_transactions_in_few_messages() -> None:
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inbox.attach(s) if i == 1 else None) as nodes:
            await wait_for_mesh(nodes)
            batcher = TxBatcher(lambda data: nodes[0].publish(TopicKind.TXS, data), max_delay_s=0.05)
            txs = [make_tx(CHAIN, n, payload_bytes=400) for n in range(2000)]
            async with trio.open_nursery() as nursery:
                await nursery.start(batcher.run)
                for tx in txs:
                    await batcher.add(tx)
                await wait_until(lambda: sum(len(m.value.txs) for m in inbox.messages[TopicKind.TXS]) == 2000)
                nursery.cancel_scope.cancel()
            received = [tx for m in inbox.messages[TopicKind.TXS] for tx in m.value.txs]
            assert sorted(tx.hash for tx in received) == sorted(tx.hash for tx in txs)
            assert batcher.batches == len(inbox.messages[TopicKind.TXS]) <= 8  # ~1 MB in ~256 KiB batches
            assert all(len(m.data) <= 256 * 1024 for m in inbox.messages[TopicKind.TXS])


@pytest.mark.trio
async def test_state_hook_rejection_is_not_relayed_and_penalizes_the_sender() -> None:
    """Star 1-0-2: node 0 runs a hook refusing votes of height 666; node 2 must never see them."""
    inbox = Inbox()
    refused: list[GossipMessage] = []

    async def hook(message: GossipMessage) -> GossipVerdict:
        await trio.lowlevel.checkpoint()
        if message.value.height == 666:
            refused.append(message)
            return GossipVerdict.REJECT
        if message.value.height == 777:
            return GossipVerdict.IGNORE
        return GossipVerdict.ACCEPT

    def configure(i: int, service: object) -> None:
        if i == 0:
            service.gossip.set_hook(TopicKind.VOTES, hook)  # type: ignore[attr-defined]
        if i == 2:
            inbox.attach(service)  # type: ignore[arg-type]

    with trio.fail_after(60):
        async with running_nodes(3, full_mesh=False, configure=configure) as nodes:
            await wait_for_mesh(nodes)
            bad = await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEYS[1], 666).encode())
            stale = await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEYS[1], 777).encode())
            good = await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEYS[1], 7).encode())
            await wait_until(lambda: bytes(good) in inbox.ids(TopicKind.VOTES))
            assert bytes(bad) not in inbox.ids(TopicKind.VOTES)
            assert bytes(stale) not in inbox.ids(TopicKind.VOTES)
            assert [m.msg_id for m in refused] == [bad]
            assert nodes[0].counters.rejected[Offense.INVALID.value] == 1
            assert nodes[0].counters.ignored[TopicKind.VOTES.value] == 1
            assert nodes[0].peers.scores.score(str(nodes[1].peer_id), trio.current_time()) < 0
            assert nodes[0].peers.scores.score(str(nodes[2].peer_id), trio.current_time()) == 0


@pytest.mark.trio
async def test_connections_beyond_max_peers_are_closed() -> None:
    with trio.fail_after(60):
        async with running_nodes(1, seed="hub", max_peers=1) as (hub,), \
                running_nodes(3, seed="spoke", full_mesh=False) as spokes:
            for spoke in spokes:
                spoke.add_peer(hub.addr)
            await wait_until(lambda: hub.counters.peers_refused >= 2)
            await wait_until(lambda: len(hub.connected_peers()) <= 1)
            assert len(hub.connected_peers()) <= 1


@pytest.mark.trio
async def test_a_bug_in_the_node_handler_drops_that_message_and_the_topic_keeps_working() -> None:
    """A handler that raises a non-InferchainError (a bug of ours) must not end the topic's drain task."""
    handled: list[int] = []

    async def handler(message: GossipMessage) -> None:
        await trio.lowlevel.checkpoint()
        if message.value.height == 13:
            raise RuntimeError("simulated bug")
        handled.append(int(message.value.height))

    def configure(i: int, service: object) -> None:
        if i == 0:
            service.gossip.set_handler(TopicKind.VOTES, handler)  # type: ignore[attr-defined]

    with trio.fail_after(60):
        async with running_nodes(2, configure=configure) as nodes:
            await wait_for_mesh(nodes)
            await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEYS[1], 13).encode())
            await wait_until(lambda: nodes[0].counters.handler_errors[TopicKind.VOTES.value] == 1)
            await nodes[1].publish(TopicKind.VOTES, make_vote(CHAIN, KEYS[1], 14).encode())
            await wait_until(lambda: handled == [14])
