"""Where the transactions hook verifies a gossiped batch's signatures (node.gossip_hooks.TxAdmission): on the
event loop when at most INLINE_SIGNATURES are new to the node's cache, in one worker-thread trip when more, and
nowhere when all are cached; a bad signature still REJECTs the batch either way. Real node, real LevelDB,
real Ed25519."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from core.errors import InvalidSignature
from core.hashing import sha256
from core.tx import Transaction
from core.types import SignatureBytes
from node.gossip_hooks import TxAdmission
from node.service import Node, _MempoolState
from node.sigcache import INLINE_SIGNATURES, SigCache
from p2p.messages import TxBatch
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, GossipVerdict
from tests.node.helpers import account, genesis_doc, local_node, make_home, transfer

pytestmark = pytest.mark.node

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
SENDERS = 4  # accounts 4..7: funded by the genesis, no validator's


class _RecordingCache(SigCache):
    """The node's cache, noting which thread verified how many signatures."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []  # (thread id, signatures checked)

    def verify_new(self, checks: Sequence[tuple[Transaction, bytes]]) -> bool:
        self.calls.append((threading.get_ident(), len(checks)))
        return super().verify_new(checks)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = local_node(make_home(tmp_path, "n0", genesis_doc(4), validator=0))
    yield n
    n.close()


def _txs(node: Node, count: int, first_nonce: int = 0) -> list[Transaction]:
    return [transfer(node.chain_id, account(4 + i % SENDERS), account(0), 5, first_nonce + i // SENDERS)
            for i in range(count)]


def _message(txs: list[Transaction]) -> GossipMessage:
    batch = TxBatch(tuple(txs))
    data = batch.encode()
    return GossipMessage(TopicKind.TXS, data, batch, sha256(data), PEER, PEER)


def _admission(node: Node, cache: SigCache) -> TxAdmission:
    return TxAdmission(_MempoolState(node.app).account, node.mempool, cache)


@pytest.mark.trio
async def test_a_small_batch_is_verified_on_the_loop_and_a_large_one_in_one_worker_trip(node: Node) -> None:
    cache = _RecordingCache()
    admission = _admission(node, cache)
    loop = threading.get_ident()
    small = _txs(node, INLINE_SIGNATURES)
    assert await admission(_message(small)) is GossipVerdict.ACCEPT
    assert cache.calls == [(loop, INLINE_SIGNATURES)]
    large = _txs(node, INLINE_SIGNATURES + SENDERS, first_nonce=INLINE_SIGNATURES // SENDERS)
    assert await admission(_message(large)) is GossipVerdict.ACCEPT
    assert len(cache.calls) == 2 and cache.calls[1][0] != loop and cache.calls[1][1] == len(large)
    assert all(tx.hash in node.mempool for tx in small + large)
    assert cache.verifications == len(small) + len(large) and all(bytes(tx.hash) in cache for tx in large)


@pytest.mark.trio
async def test_cached_signatures_take_no_trip_and_only_new_ones_are_verified(node: Node) -> None:
    cache = _RecordingCache()
    admission = _admission(node, cache)
    txs = _txs(node, 2 * INLINE_SIGNATURES)
    for tx in txs[:-3]:  # verified before (the RPC entry, an earlier batch)
        cache.mark_verified(tx.hash)
    assert await admission(_message(txs)) is GossipVerdict.ACCEPT
    # 3 new signatures: inline, though the batch is over the bound; the cached ones count as hits
    assert cache.calls == [(threading.get_ident(), 3)]
    assert cache.verifications == 3 and cache.hits == len(txs) - 3
    assert admission.signatures_checked == len(txs)


@pytest.mark.trio
@pytest.mark.parametrize("count", [8, INLINE_SIGNATURES + 8])
async def test_a_bad_signature_rejects_the_batch_inline_or_in_a_thread(node: Node, count: int) -> None:
    cache = _RecordingCache()
    admission = _admission(node, cache)
    txs = _txs(node, count)
    txs[count // 2] = txs[count // 2].replace(signature=SignatureBytes(b"\x01" * 64))
    with pytest.raises(InvalidSignature):
        await admission(_message(txs))
    assert len(node.mempool) == 0
    assert (cache.calls[0][0] == threading.get_ident()) is (count <= INLINE_SIGNATURES)
    # the ones before the forgery verified and are remembered; the forgery is not
    assert all(bytes(tx.hash) in cache for tx in txs[:count // 2]) and bytes(txs[count // 2].hash) not in cache
    await trio.lowlevel.checkpoint()
