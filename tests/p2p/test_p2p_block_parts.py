"""Block sync in parts between real hosts: a block larger than one response arrives as several bounded parts,
checked once assembled; a peer that serves a wrong, oversized or never-ending part is penalized."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import pytest
import trio

from core.codec import U32, MaxLen, Wire, wire
from core.types import Height
from p2p.errors import BadResponse, RequestFailed
from p2p.limits import BLOCK_PART_BYTES, MAX_STORED_BLOCK_BYTES, RESPONSE_MAX
from p2p.messages import BlockPart, BlockPartRequest, StoredBlock
from p2p.reqresp import SyncedBlock
from p2p.scoring import Offense
from p2p.service import P2PService
from p2p.testing.chain import build_chain
from tests.p2p.helpers import CHAIN, running_nodes

pytestmark = [pytest.mark.p2p]

# Three blocks of ~2.4 MB each (over one 2 MiB response): five parts of at most 512 KiB apiece.
CHAIN_DATA = build_chain(CHAIN, 3, txs_per_block=48, tx_payload=50_000)


async def honest_block(height: Height) -> StoredBlock | None:
    await trio.lowlevel.checkpoint()
    return CHAIN_DATA.stored(height)


async def tampered_block(height: Height) -> StoredBlock | None:
    """The real block with one byte of a transaction's payload flipped deep in its second part: every part
    is well formed, the commit still names the header, only the assembled body betrays it."""
    stored = CHAIN_DATA.stored(height)
    if stored is None:
        return None
    raw = bytearray(stored.block)
    raw[BLOCK_PART_BYTES + 1000] ^= 0xFF
    await trio.lowlevel.checkpoint()
    return stored.replace(block=bytes(raw))


@wire(max_bytes=2 * BLOCK_PART_BYTES)
class LoosePart(Wire):
    """BlockPart's layout without its length cap: what a peer that does not follow the wire rules sends."""

    height: Height
    index: U32
    total: U32
    data: Annotated[bytes, MaxLen(2 * BLOCK_PART_BYTES)]


PartHandler = Callable[[BlockPartRequest], Awaitable[Wire]]


async def oversized_part(request: BlockPartRequest) -> Wire:
    await trio.lowlevel.checkpoint()
    return LoosePart(request.height, request.index, 2_000_000, b"\0" * (BLOCK_PART_BYTES + 4096))


async def never_ending_part(request: BlockPartRequest) -> Wire:
    """Parts that claim the block goes on past the size announced (and past any block's cap)."""
    await trio.lowlevel.checkpoint()
    return BlockPart(request.height, request.index, MAX_STORED_BLOCK_BYTES + 1, b"\0" * BLOCK_PART_BYTES)


async def silent_part(request: BlockPartRequest) -> Wire:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


def serving(provider: Callable[[Height], Awaitable[StoredBlock | None]], part: PartHandler | None = None
            ) -> Callable[[P2PService], None]:
    def configure(service: P2PService) -> None:
        service.reqresp.serve_blocks(provider)
        if part is not None:  # replace the honest part handler with the attacker's
            service.reqresp._serve("blockpart", BlockPartRequest, lambda request, peer: part(request))

    return configure


@pytest.mark.trio
async def test_blocks_larger_than_a_response_arrive_in_parts() -> None:
    sizes = [len(CHAIN_DATA.stored(Height(h)).encode()) for h in (1, 2, 3)]  # type: ignore[union-attr]
    assert all(size > RESPONSE_MAX for size in sizes)
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serving(honest_block)(s) if i == 0 else None
                                 ) as (server, client):
            chunks: list[list[SyncedBlock]] = []

            async def on_blocks(blocks: list[SyncedBlock]) -> None:
                chunks.append(blocks)
                await trio.lowlevel.checkpoint()

            assert await client.reqresp.fetch_blocks(server.peer_id, 1, 3, on_blocks) == 3
            received = [b for chunk in chunks for b in chunk]
            assert [b.block.id for b in received] == [b.id for b in CHAIN_DATA.blocks]
            assert [b.block.encode() for b in received] == [b.encode() for b in CHAIN_DATA.blocks]
            assert server.counters.requests_served["blockpart"] == sum(-(-s // BLOCK_PART_BYTES) for s in sizes)
            assert server.counters.requests_served["blocks"] == 3  # each range answer names the next block's size
            assert client.peers.scores.score(str(server.peer_id), trio.current_time()) >= 0


@pytest.mark.trio
@pytest.mark.parametrize(("attack", "error"), [
    (serving(tampered_block), BadResponse),
    (serving(honest_block, oversized_part), BadResponse),
    (serving(honest_block, never_ending_part), BadResponse),
    (serving(honest_block, silent_part), RequestFailed),
], ids=["wrong-part", "oversized-part", "never-ending-part", "silent-part"])
async def test_a_peer_serving_bad_parts_is_penalized_and_another_serves_the_block(
        attack: Callable[[P2PService], None], error: type[Exception]) -> None:
    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            serving(honest_block)(service)
        elif i == 1:
            attack(service)

    with trio.fail_after(60):
        async with running_nodes(3, configure=configure, request_timeout_s=2.0) as (honest, attacker, client):
            with pytest.raises(error):
                await client.reqresp.blocks(attacker.peer_id, 2, 2)
            score = client.peers.scores.score(str(attacker.peer_id), trio.current_time())
            if error is BadResponse:
                assert score == pytest.approx(-Offense.BAD_RESPONSE.penalty, abs=0.5)
            # The same block from an honest peer, whole and verified against its header.
            (synced,) = await client.reqresp.blocks(honest.peer_id, 2, 2)
            assert synced.block.encode() == CHAIN_DATA.blocks[1].encode()
            synced.block.validate_basic()
