"""The inbound lanes' knob (`InboundPolicy.bulk_workers`, node config `p2p.inbound_bulk_workers`) on real hosts.

With 0 workers a transaction batch is admitted at once in a task of its own (upstream's way, the A/B side of
docs/performance-throughput.md "Tiny inference on the devnet"): nothing waits in the bulk queues, and every batch still
reaches the handler. With the default, every batch passes through the queues.
"""

from __future__ import annotations

import pytest
import trio

from p2p.batcher import encode_tx_batch
from p2p.inbound import InboundPolicy
from p2p.service import P2PService
from p2p.testing.chain import account_key, make_tx
from p2p.topics import TopicKind
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

BATCHES = 6


def queued(service: P2PService) -> int:
    """The most batches the service's inbound bulk queues have held at once."""
    pubsub = service.gossip.pubsub
    assert pubsub is not None
    return pubsub.bulk.peak_messages


@pytest.mark.trio
@pytest.mark.parametrize("workers", [0, InboundPolicy().bulk_workers])
async def test_batches_are_delivered_with_the_lanes_on_or_off(workers: int) -> None:
    flood = [encode_tx_batch([make_tx(CHAIN, n, payload_bytes=60, key=account_key(b)).encode() for n in range(4)])
             for b in range(BATCHES)]
    inbox = Inbox()
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: inbox.attach(s) if i == 0 else None,
                                 inbound=InboundPolicy(bulk_workers=workers)) as nodes:
            receiver, sender = nodes
            await wait_for_mesh(nodes, minimum=1)
            for data in flood:
                await sender.publish(TopicKind.TXS, data, check=False)
            await wait_until(lambda: len(inbox.messages[TopicKind.TXS]) == BATCHES, within=30)
            if workers:
                assert queued(receiver) >= 1  # each batch was offered to the queues
            else:
                assert queued(receiver) == 0  # none waited: each was admitted at once
            assert receiver.counters.inbound_bulk_dropped == 0


def test_the_policy_refuses_negative_workers() -> None:
    with pytest.raises(ValueError, match="workers"):
        InboundPolicy(bulk_workers=-1)
