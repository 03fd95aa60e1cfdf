"""An accepted proposal is announced (IDONTWANT) before it is relayed, so mesh peers leave out their copies.

In a full mesh of four, each node reads a large proposal from its origin and from each of the two other
receivers' relays: megabytes of consensus traffic per height that votes, in the same priority lane, queue
behind. A proposal is announced only once accepted (not on receipt as transaction batches are: one IGNOREd
for now must stay receivable from a later copy), so the other receivers' relays that had not been written
yet when our announcement came are left out. Real hosts on 127.0.0.1.
"""

from __future__ import annotations

import pytest
import trio

from core.block import ProposalBlock
from core.types import Round, Timestamp
from core.votes import Proposal
from p2p.dontwant import DontWantPolicy
from p2p.testing.chain import build_chain, make_vote, validator_keys
from p2p.topics import TopicKind
from tests.p2p.helpers import CHAIN, Inbox, running_nodes, wait_for_mesh, wait_until

pytestmark = [pytest.mark.p2p]

KEYS = validator_keys(4)
PROPOSALS = 8


def proposals() -> list[bytes]:
    """Distinct signed proposals of ~20 KiB (the test announces from 1 KiB; the default threshold is 64 KiB)."""
    chain = build_chain(CHAIN, PROPOSALS + 1, txs_per_block=10, tx_payload=2000)
    out = []
    for block in chain.blocks[1:]:
        unsigned = Proposal(block.height, Round(0), -1, block.id, Timestamp(1), KEYS[0].public_key,
                            make_vote(CHAIN, KEYS[0], 1).signature)
        out.append(ProposalBlock(unsigned.signed(KEYS[0], CHAIN), block).encode())
    return out


@pytest.mark.trio
async def test_receivers_of_a_proposal_leave_out_the_relays_the_others_announced_they_hold() -> None:
    inboxes = [Inbox() for _ in range(4)]
    data = proposals()
    with trio.fail_after(90):
        async with running_nodes(4, seed="dwp", configure=lambda i, s: inboxes[i].attach(s),
                                 dont_want=DontWantPolicy(min_bytes=1024)) as nodes:
            await wait_for_mesh(nodes, minimum=3)
            published = {bytes(await nodes[0].publish(TopicKind.PROPOSALS, d, check=False)) for d in data}
            await wait_until(lambda: all(published <= inboxes[i].ids(TopicKind.PROPOSALS) for i in (1, 2, 3)),
                             within=30)
            await trio.sleep(1.0)  # relays still queued are written or left out by now
            receivers = nodes[1:]
            suppressed = sum(n.counters.relays_suppressed for n in receivers)
            announced = sum(n.counters.idontwant_sent for n in receivers)
            read = sum(n.counters.messages_received for n in receivers)
            print(f"{PROPOSALS} proposals to 3 receivers: {read} copies read, {announced} announcements, "
                  f"{suppressed} relays left out")
            # every receiver told the two others once per proposal (the origin was the forwarder)
            assert announced == PROPOSALS * 3 * 2
            assert suppressed > 0
            # Each copy is read or left out. At most three per receiver and proposal, not exactly: gossipsub never
            # relays a message back to the peer it came from, so a receiver whose first copy was another
            # receiver's relay (the origin's frame coalesced behind others, p2p/coalesce.py) sends one copy fewer.
            assert read + suppressed <= PROPOSALS * 3 * 3
            assert all(len(inboxes[i].messages[TopicKind.PROPOSALS]) == PROPOSALS for i in (1, 2, 3))
