"""Consensus messages overtake a backlog of transaction batches on a real host (p2p/inbound.py).

A sender floods the receiver with large batches of validly signed transactions, each of which costs the
receiver about a thousand signature checks, then publishes a proposal and a vote once the receiver has read
most of the batches. The receiver's handlers must get the proposal and the vote while most of the batches read
before them are still waiting: before the fix, every inbound message was its own task and a proposal's
envelope check queued for the same two worker threads as every batch already read, so it was delivered only
after nearly all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from core.block import ProposalBlock
from core.types import Round, Timestamp
from core.votes import Proposal
from p2p.batcher import encode_tx_batch
from p2p.service import P2PService
from p2p.testing.chain import account_key, build_chain, make_tx, make_vote, validator_keys
from p2p.topics import TopicKind
from p2p.validation import THREAD_THRESHOLD, GossipMessage
from tests.p2p.helpers import CHAIN, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEYS = validator_keys(4)
BATCHES = 24
TXS_PER_BATCH = 1000


def large_proposal() -> bytes:
    """A signed proposal over the envelope check's thread threshold (it is checked in a worker thread)."""
    block = build_chain(CHAIN, 2, txs_per_block=40, tx_payload=300).blocks[-1]
    key = KEYS[0]
    unsigned = Proposal(block.height, Round(0), -1, block.id, Timestamp(1), key.public_key,
                        make_vote(CHAIN, key, 1).signature)
    data = ProposalBlock(unsigned.signed(key, CHAIN), block).encode()
    assert len(data) > THREAD_THRESHOLD
    return data


def batches() -> list[bytes]:
    """Distinct batches of distinct, validly signed transactions (one key per batch, nonces in order)."""
    return [encode_tx_batch([make_tx(CHAIN, n, payload_bytes=60, key=account_key(b)).encode()
                             for n in range(TXS_PER_BATCH)]) for b in range(BATCHES)]


class Order:
    """The order in which the receiver's handlers were called, over all topics."""

    def __init__(self) -> None:
        self.seen: list[tuple[TopicKind, bytes]] = []

    def attach(self, service: P2PService) -> None:
        for kind in TopicKind:
            service.gossip.set_handler(kind, self._handler(kind))

    def _handler(self, kind: TopicKind) -> Callable[[GossipMessage], Awaitable[None]]:
        async def handle(message: GossipMessage) -> None:
            self.seen.append((kind, bytes(message.msg_id)))
            await trio.lowlevel.checkpoint()

        return handle

    def batches_before(self, kind: TopicKind) -> int:
        """Transaction batches delivered before the first message of `kind`."""
        kinds = [k for k, _ in self.seen]
        return kinds[: kinds.index(kind)].count(TopicKind.TXS)


@pytest.mark.trio
async def test_a_proposal_and_a_vote_overtake_the_batches_read_before_them() -> None:
    flood, proposal, vote = batches(), large_proposal(), make_vote(CHAIN, KEYS[1], 2).encode()
    order = Order()
    with trio.fail_after(120):
        async with running_nodes(2, configure=lambda i, s: order.attach(s) if i == 0 else None) as nodes:
            receiver, sender = nodes
            await wait_for_mesh(nodes, minimum=1)
            for data in flood:
                await sender.publish(TopicKind.TXS, data, check=False)
            # The receiver has read most of the flood (not yet checked it): a backlog of batches waits.
            await wait_until(lambda: receiver.counters.messages_received >= BATCHES - 4, within=60)
            await sender.publish(TopicKind.PROPOSALS, proposal, check=False)
            await sender.publish(TopicKind.VOTES, vote, check=False)
            await wait_until(lambda: len(order.seen) == BATCHES + 2, within=90)
            before_proposal = order.batches_before(TopicKind.PROPOSALS)
            before_vote = order.batches_before(TopicKind.VOTES)
            print(f"batches delivered before the proposal: {before_proposal}, before the vote: {before_vote} "
                  f"(of {BATCHES}, {receiver.counters.messages_received} read)")
            # Most of the batches read before them were still waiting when they were delivered.
            assert before_proposal <= BATCHES // 2
            assert before_vote <= BATCHES // 2
            assert receiver.counters.inbound_bulk_dropped == 0
            assert sum(receiver.counters.rejected.values()) == 0
