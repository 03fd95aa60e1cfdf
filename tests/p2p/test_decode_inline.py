"""Where the gossip pipeline runs a topic's envelope check (p2p.validation.TopicPipeline.decode): a
decode-only check (`DecodeOnly`: no signature) on the event loop below DECODE_INLINE_BYTES and in a worker
thread from there; any other check in a worker thread from THREAD_THRESHOLD; typed refusals either way.
Real transaction batches, real decoding."""

from __future__ import annotations

import functools
import threading

import pytest
from libp2p.peer.id import ID

from core.errors import DecodeError
from core.hashing import sha256
from core.tx import Transaction
from p2p.batcher import encode_tx_batch
from p2p.envelope import decode_tx_batch
from p2p.errors import Oversized
from p2p.messages import TxBatch
from p2p.scoring import Offense
from p2p.testing.chain import make_tx
from p2p.topics import TopicKind
from p2p.validation import DECODE_INLINE_BYTES, THREAD_THRESHOLD, DecodeOnly, GossipVerdict, TopicPipeline
from tests.p2p.helpers import CHAIN

pytestmark = [pytest.mark.p2p]

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))


def _batch_of(size: int) -> bytes:
    """A batch of real transactions of about `size` bytes."""
    txs: list[Transaction] = []
    data = b""
    while len(data) < size:
        txs.append(make_tx(CHAIN, len(txs), payload_bytes=900))
        data = encode_tx_batch([tx.encode() for tx in txs])
    return data


class _Where:
    """An envelope check noting the thread it ran in."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self._decode = functools.partial(decode_tx_batch, chain_id=CHAIN, verify=lambda tx, tx_hash: True)

    def __call__(self, data: bytes) -> TxBatch:
        self.threads.append(threading.get_ident())
        return self._decode(data)


@pytest.mark.trio
async def test_a_decode_only_check_runs_on_the_loop_below_the_bound_and_in_a_thread_from_it() -> None:
    where = _Where()
    pipeline = TopicPipeline(TopicKind.TXS, 4 * DECODE_INLINE_BYTES, DecodeOnly(where))
    middle, big = _batch_of(2 * THREAD_THRESHOLD), _batch_of(DECODE_INLINE_BYTES)
    assert THREAD_THRESHOLD < len(middle) < DECODE_INLINE_BYTES <= len(big)
    assert len((await pipeline.decode(middle)).txs) > 1 and len((await pipeline.decode(big)).txs) > 1
    loop = threading.get_ident()
    assert where.threads[0] == loop and where.threads[1] != loop


@pytest.mark.trio
async def test_any_other_check_runs_in_a_thread_from_the_thread_threshold() -> None:
    where = _Where()
    pipeline = TopicPipeline(TopicKind.TXS, 4 * DECODE_INLINE_BYTES, where)
    await pipeline.decode(_batch_of(2 * THREAD_THRESHOLD))
    assert where.threads[0] != threading.get_ident()


@pytest.mark.trio
async def test_inline_refusals_stay_typed() -> None:
    pipeline = TopicPipeline(TopicKind.TXS, 2 * THREAD_THRESHOLD, DecodeOnly(_Where()))
    data = b"\xc1" * (THREAD_THRESHOLD + 10)
    garbage = await pipeline.run(data, sha256(data), PEER, PEER)
    assert garbage.verdict is GossipVerdict.REJECT and garbage.offense is Offense.UNDECODABLE
    with pytest.raises(DecodeError):
        await pipeline.decode(b"\xc1" * (THREAD_THRESHOLD + 10))
    with pytest.raises(Oversized):
        await pipeline.decode(b"\0" * (2 * THREAD_THRESHOLD + 1))
