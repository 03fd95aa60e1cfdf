"""A single-validator node in-process: real LevelDB, real libp2p host, a real VMApplication running ONNX.

It commits blocks, executes a transfer and an inference submitted through the read side, serves proofs
that check without trusting it, and resumes from its home after a restart.
"""

from __future__ import annotations

import pytest
import trio

from consensus.commit import verify_commit
from core.header import TxStatus
from core.merkle import verify_merkle_proof
from core.state import verify_proof
from node.events import TxState
from node.service import Node
from tests.node.helpers import (
    account,
    genesis_doc,
    infer_digits_int8,
    make_home,
    running,
    transfer,
    wait_until,
)

pytestmark = pytest.mark.node


@pytest.mark.trio
async def test_single_validator_commits_blocks_with_transactions_and_serves_proofs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    node = Node(home, workers=1)  # the VM's real worker pool: models run in a separate process
    chain_id = node.chain_id
    alice, bob = account(1), account(2)
    with trio.fail_after(120):
        async with running(node):
            await wait_until(lambda: node.height >= 2, 30)
            start_balance = node.queries.account(bob.address, None).balance
            pay = transfer(chain_id, alice, bob, 12345, nonce=0)
            infer = infer_digits_int8(chain_id, alice, nonce=1)
            verdicts = await node.queries.submit_txs([pay, infer])
            assert [v.accepted for v in verdicts] == [True, True], verdicts
            forged = await node.queries.submit_tx(pay.replace(fee=pay.fee + 1))
            assert not forged.accepted and forged.reason == "invalid signature"
            outcomes = [await node.queries.wait_for_tx(t.hash) for t in (pay, infer)]
            assert all(o.state is TxState.COMMITTED for o in outcomes)
            assert outcomes[0].result is not None and outcomes[0].result.status == TxStatus.OK
            assert outcomes[1].result is not None and outcomes[1].result.status == TxStatus.OK
            assert outcomes[1].result.outputs, "the inference committed its outputs"

            # The account, with a state proof against the committed state root.
            view = node.queries.account(bob.address, None)
            assert view.balance == start_balance + 12345
            assert verify_proof(view.state_root, view.key, view.value, view.proof)
            header = node.queries.block(view.height)
            assert header is not None and header[0].header.state_root == view.state_root

            # The inference, with Merkle proofs against its header and the commit that finalizes it.
            inf = node.queries.inference(infer.hash)
            assert inf is not None and inf.result == outcomes[1].result
            assert verify_merkle_proof(inf.header.results_root, inf.result.encode(), inf.result_proof)
            assert verify_merkle_proof(inf.header.txs_root, inf.tx.hash, inf.tx_proof)
            vset = node.app.validator_set(inf.height)
            verify_commit(vset, inf.header.block_id, inf.commit, chain_id)

            status = node.queries.status()
            assert status.height >= inf.height and status.is_validator and not status.catching_up
            assert status.mempool_size == 0
            validators = node.queries.validators(None)
            assert [v.address for v in validators.validators] == [node.validator_address]
            assert any(m.record is not None for m in node.queries.models())
            height_before = node.height
    # Restart from the same home: the chain continues from where it stopped.
    again = Node(home, workers=1)
    assert again.height == height_before
    with trio.fail_after(60):
        async with running(again):
            await wait_until(lambda: again.height >= height_before + 2, 30)
            assert again.queries.tx(pay.hash) is not None


@pytest.mark.trio
async def test_handshake_replays_stored_blocks_into_a_state_that_is_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.store import KeySpace
    from node.leveldb import LevelDBStore
    from tests.node.helpers import local_node

    genesis = genesis_doc(1)
    source_home = make_home(tmp_path, "source", genesis, validator=0)
    source = local_node(source_home)
    chain_id = source.chain_id
    with trio.fail_after(60):
        async with running(source):
            await source.submit_txs([transfer(chain_id, account(1), account(2), 99, nonce=0)])
            await wait_until(lambda: source.height >= 4 and len(source.mempool) == 0, 30)
    # A home whose database holds the block store but only the genesis state (e.g. state wiped).
    home = make_home(tmp_path, "rebuilt", genesis, validator=0)
    chain_spaces = {KeySpace.BLOCKS_BY_HEIGHT, KeySpace.BLOCK_HASH_INDEX, KeySpace.COMMITS, KeySpace.TX_INDEX}
    local_node(home).close()  # initialises the genesis state
    with LevelDBStore(source_home.data_dir) as src, LevelDBStore(home.data_dir) as dst, \
            dst.write_batch(sync=True) as batch:
        for key, value in src.iterate():
            if key[0] in chain_spaces or (key[0] == KeySpace.META and not key[1:].startswith(b"vm/")):
                batch.put(key, value)
        stored_height = int.from_bytes(src.get(bytes([KeySpace.META]) + b"head")[:8], "big")  # type: ignore[index]
    node = local_node(home)
    try:
        assert node.app.info().last_height == 0 and node.height == stored_height
        assert await trio.to_thread.run_sync(node.chain.handshake) == stored_height
        head = node.blockstore.block(stored_height)
        assert head is not None
        assert node.app.info().state_root == head.header.state_root and node.app.info().last_block_id == head.id
        assert node.queries.account(account(2).address, None).balance == genesis["accounts"][2]["balance"] + 99
    finally:
        node.close()
