"""Request/response between real hosts: status, chunked block ranges, vote catch-up, model download."""

from __future__ import annotations

import pytest
import trio

from core.hashing import ZERO_HASH, sha256
from core.types import Hash32, Height, Round
from core.votes import Vote, VoteType
from p2p.errors import BadResponse, NotFound, RequestFailed
from p2p.limits import MODEL_CHUNK, RESPONSE_MAX
from p2p.messages import ChainStatus, ModelChunkResponse, StoredBlock, VotesRequest, bitset
from p2p.reqresp import SyncedBlock
from p2p.scoring import Offense
from p2p.service import P2PService
from p2p.testing.chain import build_chain, make_vote, validator_keys
from tests.p2p.helpers import CHAIN, running_nodes

pytestmark = [pytest.mark.p2p]

KEYS = sorted(validator_keys(4), key=lambda k: k.address)  # validator-set order: by address
CHAIN_DATA = build_chain(CHAIN, 40, txs_per_block=100, tx_payload=1000)  # ~110 KiB per block
MODEL = bytes(range(256)) * 4000 + b"tail"  # 1,024,004 bytes: three full 256 KiB chunks and a short one
MODEL_ID = sha256(MODEL)


def serve(service: P2PService) -> None:
    async def status() -> ChainStatus:
        await trio.lowlevel.checkpoint()
        return ChainStatus(CHAIN, Height(len(CHAIN_DATA.blocks)), CHAIN_DATA.head.id, Height(1))

    async def block(height: Height) -> StoredBlock | None:
        await trio.lowlevel.checkpoint()
        return CHAIN_DATA.stored(height)

    async def votes(request: VotesRequest) -> list[Vote]:
        await trio.lowlevel.checkpoint()
        held = [make_vote(CHAIN, k, request.height, request.round, request.type) for k in KEYS]
        return [v for i, v in enumerate(held) if not request.holds(i)]

    async def model(model_id: Hash32, offset: int, length: int) -> ModelChunkResponse | None:
        await trio.lowlevel.checkpoint()
        if model_id != MODEL_ID:
            return None
        return ModelChunkResponse(len(MODEL), offset, MODEL[offset:offset + length])

    service.reqresp.serve_status(status)
    service.reqresp.serve_blocks(block)
    service.reqresp.serve_votes(votes)
    service.reqresp.serve_models(model)


@pytest.mark.trio
async def test_status_and_a_block_range_in_chunks_under_the_frame_limit() -> None:
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve(s) if i == 0 else None) as (server, client):
            status = await client.reqresp.status(server.peer_id)
            assert (status.height, status.head_hash) == (40, CHAIN_DATA.head.id)

            first = await client.reqresp.blocks(server.peer_id, 1, 40)
            assert 1 < len(first) < 40  # one response holds only what fits under 2 MiB
            assert sum(len(b.block.encode()) for b in first) < RESPONSE_MAX

            chunks: list[list[SyncedBlock]] = []

            async def on_blocks(blocks: list[SyncedBlock]) -> None:
                chunks.append(blocks)
                await trio.lowlevel.checkpoint()

            fetched = await client.reqresp.fetch_blocks(server.peer_id, 1, 100, on_blocks)
            assert fetched == 40 and len(chunks) >= 3  # ~4.4 MB in responses of at most 2 MiB
            received = [b for chunk in chunks for b in chunk]
            assert [b.block.id for b in received] == [b.id for b in CHAIN_DATA.blocks]
            assert all(b.commit.block_id == b.block.id for b in received)
            assert all(v.verify_signature(CHAIN) for v in received[-1].commit.precommits)
            with pytest.raises(NotFound):
                await client.reqresp.blocks(server.peer_id, 41, 50)
            assert server.counters.requests_served["blocks"] == 1 + len(chunks)


@pytest.mark.trio
async def test_vote_catch_up_returns_only_the_votes_the_requester_lacks() -> None:
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve(s) if i == 0 else None) as (server, client):
            request = VotesRequest(Height(9), Round(2), VoteType.PRECOMMIT, bitset({0, 2}))
            votes = await client.reqresp.votes(server.peer_id, request)
            assert [v.validator for v in votes] == [KEYS[1].public_key, KEYS[3].public_key]
            assert all((v.height, v.round, v.type) == (9, 2, VoteType.PRECOMMIT) for v in votes)
            assert await client.reqresp.votes(server.peer_id, request.replace(have=bitset(range(4)))) == []


@pytest.mark.trio
async def test_model_download_in_chunks_with_progress() -> None:
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve(s) if i == 0 else None) as (server, client):
            progress: list[tuple[int, int]] = []
            data = await client.reqresp.fetch_model(server.peer_id, MODEL_ID,
                                                    progress=lambda got, total: progress.append((got, total)))
            assert data == MODEL
            assert progress == [(min(n * MODEL_CHUNK, len(MODEL)), len(MODEL)) for n in range(1, 4 + 1)]
            with pytest.raises(NotFound):
                await client.reqresp.fetch_model(server.peer_id, Hash32(ZERO_HASH))
            with pytest.raises(BadResponse):
                await client.reqresp.fetch_model(server.peer_id, MODEL_ID, max_size=1000)
            assert client.peers.scores.score(str(server.peer_id), trio.current_time()) < 0


@pytest.mark.trio
async def test_requests_without_a_provider_or_to_a_lying_peer_fail_cleanly() -> None:
    async def lying_votes(request: VotesRequest) -> list[Vote]:
        await trio.lowlevel.checkpoint()
        return [make_vote(CHAIN, KEYS[0], request.height + 1, request.round, request.type)]

    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            service.reqresp.serve_votes(lying_votes)

    with trio.fail_after(60):
        async with running_nodes(2, configure=configure) as (server, client):
            with pytest.raises(RequestFailed):  # no status provider: the protocol is not even offered
                await client.reqresp.status(server.peer_id)
            with pytest.raises(BadResponse):
                await client.reqresp.votes(server.peer_id, VotesRequest(Height(3), Round(0), VoteType.PREVOTE, b""))
            assert client.counters.requests_failed["votes"] == 1
            assert client.peers.scores.score(str(server.peer_id), trio.current_time()) == pytest.approx(
                -Offense.BAD_RESPONSE.penalty, abs=0.5)
            # both sides are unharmed: the server keeps answering (and keeps lying)
            with pytest.raises(BadResponse):
                await client.reqresp.votes(server.peer_id, VotesRequest(Height(4), Round(0), VoteType.PREVOTE, b""))
            assert server.counters.requests_served["votes"] == 2


@pytest.mark.trio
async def test_a_request_made_while_the_service_stops_fails_typed() -> None:
    """A node's task may still ask a peer while p2p stops (mempool reconciliation did, in CI): the request
    service's nursery is closed by then, and the caller gets `RequestFailed` (which every caller handles as a
    peer's failure), not trio's RuntimeError, which ended the node's nursery."""
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve(s) if i == 0 else None) as (server, client):
            assert (await client.reqresp.status(server.peer_id)).height == 40
            async with trio.open_nursery() as closed:
                pass
            client.reqresp._nursery = closed  # as a stopping service leaves it: closed to new tasks
            with pytest.raises(RequestFailed, match="stopping"):
                await client.reqresp.status(server.peer_id)
