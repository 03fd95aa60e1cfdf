"""`tx_status` on a real node (one validator in process: real LevelDB, real mempool, real RPC server): a
client that was told "accepted" can learn every later fate of its transaction from the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from bench.devnet_fate import classify
from core.types import Hash32
from node.client import Client
from node.config import MempoolSection, RPCSection
from tests.node.helpers import account, genesis_doc, local_node, make_home, running, transfer, wait_until
from vm.txs import Transfer, build_tx

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_tx_status_follows_an_accepted_transaction_to_its_fate(tmp_path: Path) -> None:
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    # A mempool of 2, so its own clients may fill 1 (node.mempool.CLIENT_SHARE): a second, ready, evicts a
    # gapped one.
    config = home.load_config().replace(rpc=RPCSection(address="127.0.0.1:0"), mempool=MempoolSection(max_txs=2))
    node = local_node(home, config=config)
    with trio.fail_after(120):
        async with running(node):
            assert node.rpc is not None and node.rpc.url is not None
            await wait_until(lambda: node.height >= 1, 60)
            url = node.rpc.url
            client = Client(url, timeout=30)

            async def statuses(*txs: Any) -> list[dict[str, Any]]:
                hashes = [tx.hash.hex() for tx in txs]
                got: list[dict[str, Any]] = await trio.to_thread.run_sync(
                    lambda: client.call("tx_status", {"hashes": hashes}))
                assert [g["hash"] for g in got] == hashes
                return got

            async def submit(tx: Any) -> None:
                answer = await trio.to_thread.run_sync(lambda: client.call("broadcast_tx", {"tx": tx.encode().hex()}))
                assert answer["accepted"] is True, answer

            try:
                sender, receiver = account(0), account(5)
                nonce = (await trio.to_thread.run_sync(lambda: client.account(sender.address))).nonce
                landed = transfer(node.chain_id, sender, receiver, 1, nonce)
                # Two nonces ahead: it waits behind a gap (nonce + 1 is never sent), then is replaced.
                gapped = transfer(node.chain_id, sender, receiver, 2, nonce + 2)
                replacement = build_tx(sender, Transfer(receiver.address, 2), chain_id=node.chain_id, nonce=nonce + 2,
                                       gas_limit=10_000, fee=20_000)  # twice the fee per gas
                never_sent = transfer(node.chain_id, sender, receiver, 3, nonce + 1)
                await submit(landed)
                await wait_until(lambda: node.blockstore.tx_location(landed.hash) is not None, 60)
                await submit(gapped)
                assert await statuses(gapped) == [{"hash": gapped.hash.hex(), "status": "pending", "gapped": True}]
                await submit(replacement)
                got = await statuses(landed, gapped, replacement, never_sent)
                loc = node.blockstore.tx_location(landed.hash)
                assert loc is not None
                assert got[0] == {"hash": landed.hash.hex(), "status": "committed", "height": int(loc.height),
                                  "index": loc.index}
                assert got[1]["status"] == "rejected" and got[1]["reason"].startswith("replaced"), got[1]
                assert got[2] == {"hash": replacement.hash.hex(), "status": "pending", "gapped": True}
                assert got[3] == {"hash": never_sent.hash.hex(), "status": "unknown"}

                # A ready transaction of another sender past the clients' share evicts the gapped one: the node
                # said "accepted" and then dropped it, and says so.
                other = account(1)
                other_nonce = (await trio.to_thread.run_sync(lambda: client.account(other.address))).nonce
                others = transfer(node.chain_id, other, receiver, 1, other_nonce)
                await submit(others)
                (evicted,) = await statuses(replacement)
                assert evicted == {"hash": replacement.hash.hex(), "status": "rejected",
                                   "reason": "evicted: mempool full"}
                # Its own clients' rejections outlive the node's general memory of rejections, which an
                # overloaded node fills with gossiped transactions' (here: the real hub, shrunk, then flooded).
                node.events.outcome_memory = 4
                for i in range(10):
                    node.events.tx_rejected(Hash32(bytes([0xA0 + i]) * 32), "expired: not included in time")
                assert await statuses(replacement) == [evicted]
                # Committed own transactions are not kept among the pending ones (the block store answers). The
                # block store's index is written (in the commit's thread) just before the commit's listeners run
                # on the event loop, so both are waited for.
                await wait_until(lambda: node.blockstore.tx_location(others.hash) is not None
                                 and node.events.own_pending == 0, 60)

                # The devnet bench's accounting reads the same answers (bench/devnet_fate.py).
                hashes = [bytes(t.hash) for t in (landed, gapped, replacement, never_sent)]
                fates = await trio.to_thread.run_sync(lambda: classify([url], {}, hashes))
                assert (fates.observer_missed, fates.pending_ready, fates.pending_gapped, fates.lost) == (1, 0, 0, 1)
                assert fates.rejected == {f"rejected: {got[1]['reason']}": 1, "rejected: evicted: mempool full": 1}
                assert fates.total == 4 and "LOST (no node holds or remembers it) 1" in fates.line()
            finally:
                client.close()
