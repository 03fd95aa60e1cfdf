"""The driver tells its proposal sizer the round each committed height was decided in (node/proposal_size.py:
the probe past the wall estimate grows from blocks decided in round 0), on a real solo validator."""

from __future__ import annotations

import pytest
import trio

from node.proposal_size import ProposalSizer
from tests.node.helpers import account, genesis_doc, local_node, make_home, running, transfer, wait_until

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_every_committed_height_reaches_the_sizer_with_its_size_and_round(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    calls: list[tuple[int, int, int]] = []  # (height committed, transactions, round)

    class Recording(ProposalSizer):
        def decided(self, txs: int, round_: int) -> None:
            calls.append((int(node.height), txs, round_))
            super().decided(txs, round_)

    with trio.fail_after(60):
        async with running(node):
            driver = node.driver
            assert driver is not None
            driver.sizer = Recording()
            start = int(node.height)
            for sender in range(2, 5):
                for nonce in range(50):
                    assert node.mempool.add(transfer(node.chain_id, account(sender), account(1), 1, nonce)).added
            await wait_until(lambda: sum(txs for _, txs, _ in calls) >= 150 and len(calls) >= 3, 30)
            sizer = driver.sizer
            seen = list(calls)
            for height, txs, round_ in seen:
                assert height > start
                block, commit = node.blockstore.block(height), node.blockstore.commit(height)
                assert block is not None and commit is not None
                assert (txs, round_) == (len(block.txs), int(commit.round))
    assert sum(txs for _, txs, _ in seen) == 150  # every transfer committed, each height reported once
    assert [h for h, _, _ in seen] == list(range(seen[0][0], seen[-1][0] + 1))
    assert sizer.proven_txs == calls[-1][1]  # a solo validator decides every height in round 0
