"""Where the RPC entry (`Node.submit_txs`) verifies a client's batch's signatures: as one lot, by the gossip
hook's rule (`node.sigcache.verify_off_loop_if_many`): on the event loop when at most INLINE_SIGNATURES are new
to the node's cache, in one worker-thread trip when more, only the new ones; each transaction keeps its own
verdict, a badly signed one among good ones included, and is verified once. Real node, real LevelDB, real
Ed25519."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from core.tx import Transaction
from core.types import SignatureBytes
from node.service import Node
from node.sigcache import INLINE_SIGNATURES
from tests.node.helpers import account, genesis_doc, local_node, make_home, transfer

pytestmark = pytest.mark.node

SENDERS = 4  # accounts 4..7: funded by the genesis, no validator's
FORGER = 1  # funded; its one transaction is the forged one: no later nonce of its depends on it


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = local_node(make_home(tmp_path, "n0", genesis_doc(4), validator=0))
    yield n
    n.close()


@pytest.fixture
def calls(node: Node, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(thread id, signatures checked) of each lot the node's cache verified for a client's batch."""
    seen: list[tuple[int, int]] = []
    invalid_among = node.sig_cache.invalid_among

    def recording(checks: Sequence[tuple[Transaction, bytes]]) -> set[bytes]:
        seen.append((threading.get_ident(), len(checks)))
        return invalid_among(checks)

    monkeypatch.setattr(node.sig_cache, "invalid_among", recording)
    return seen


def _txs(node: Node, count: int, first_nonce: int = 0) -> list[Transaction]:
    return [transfer(node.chain_id, account(4 + i % SENDERS), account(0), 5, first_nonce + i // SENDERS)
            for i in range(count)]


@pytest.mark.trio
async def test_a_small_batch_is_verified_on_the_loop_and_a_large_one_in_one_worker_trip(
        node: Node, calls: list[tuple[int, int]]) -> None:
    loop = threading.get_ident()
    small = _txs(node, INLINE_SIGNATURES)
    assert all(v.accepted for v in await node.submit_txs(small))
    assert calls == [(loop, INLINE_SIGNATURES)]
    large = _txs(node, INLINE_SIGNATURES + SENDERS, first_nonce=INLINE_SIGNATURES // SENDERS)
    assert all(v.accepted for v in await node.submit_txs(large))
    assert len(calls) == 2 and calls[1][0] != loop and calls[1][1] == len(large)
    assert all(tx.hash in node.mempool for tx in small + large)
    assert node.sig_cache.verifications == len(small) + len(large)


@pytest.mark.trio
async def test_only_signatures_new_to_the_cache_are_verified(node: Node, calls: list[tuple[int, int]]) -> None:
    txs = _txs(node, 2 * INLINE_SIGNATURES)
    for tx in txs[:-3]:  # verified before (an earlier gossiped batch carried them)
        node.sig_cache.mark_verified(tx.hash)
    assert all(v.accepted for v in await node.submit_txs(txs))
    # 3 new signatures: inline, though the batch is over the bound; the cached ones count as hits
    assert calls == [(threading.get_ident(), 3)]
    assert node.sig_cache.verifications == 3 and node.sig_cache.hits >= len(txs) - 3
    # the same batch again: every one already in the mempool, nothing verified, no trip
    assert all(v.accepted for v in await node.submit_txs(txs))
    assert node.sig_cache.verifications == 3


@pytest.mark.trio
@pytest.mark.parametrize("count", [8, INLINE_SIGNATURES + 8])
async def test_a_forged_transaction_is_refused_alone_inline_or_in_a_thread(
        node: Node, calls: list[tuple[int, int]], count: int) -> None:
    txs = _txs(node, count)
    forged = transfer(node.chain_id, account(FORGER), account(0), 5, 0).replace(
        signature=SignatureBytes(b"\x01" * 64))
    txs.insert(count // 2, forged)
    verdicts = await node.submit_txs(txs)
    assert [v.accepted for v in verdicts] == [tx is not forged for tx in txs]
    assert verdicts[count // 2].reason == "invalid signature" and verdicts[count // 2].tx_hash == forged.hash
    assert forged.hash not in node.mempool and len(node.mempool) == count
    assert (calls[0][0] == threading.get_ident()) is (count + 1 <= INLINE_SIGNATURES)
    # each signature verified once (the forgery too: the mempool does not check it again); the forgery is not
    # remembered, the others are
    assert node.sig_cache.verifications == count + 1
    assert bytes(forged.hash) not in node.sig_cache
    assert all(bytes(tx.hash) in node.sig_cache for tx in txs if tx is not forged)
