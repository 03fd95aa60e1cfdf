"""Request/response protocols: status, blocks with commits, vote catch-up, model bytes, transactions by hash,
pending transaction hashes, a validator's signed peer record.

Each exchange is one request and one response on a fresh stream (libp2p.request_response), every frame under
1 MiB. Long transfers are many exchanges: block ranges continue where the last response stopped, a block too
large for one response comes in parts (`blockpart`, checked once assembled), models go by 256 KiB chunks. The node registers providers; p2p does timeouts, size limits, rate limits and containment.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.request_response import (
    BytesCodec,
    RequestContext,
    RequestResponse,
    RequestResponseConfig,
    RequestResponseError,
)

from core.block import Block
from core.codec import Wire
from core.errors import DecodeError, InvalidBlock, LocalError, RemoteError
from core.limits import MAX_VALIDATORS
from core.peer_record import ValidatorPeerRecord
from core.tx import Transaction
from core.types import Hash32, Height
from core.votes import Commit, Vote
from p2p.config import P2PConfig
from p2p.counters import P2PCounters
from p2p.errors import BadResponse, NotFound, NotServed, RateLimited, RequestFailed, WrongChain
from p2p.limits import LIBP2P_FRAME_MAX, MODEL_CHUNK, MODEL_MAX, REQUEST_MAX, RESPONSE_MAX
from p2p.messages import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_PENDING_HASHES,
    MAX_TXS_PER_REQUEST,
    WHOLE_BLOCK_MAX,
    BlockPart,
    BlockPartRequest,
    BlocksRequest,
    BlocksResponse,
    ChainStatus,
    ModelChunkRequest,
    ModelChunkResponse,
    PendingRequest,
    PendingResponse,
    Response,
    ResponseCode,
    StatusRequest,
    StoredBlock,
    TxsRequest,
    TxsResponse,
    VotesRequest,
    VotesResponse,
    block_part_span,
    count_block_parts,
)
from p2p.ratelimit import ByteBudget, PeerRateLimiter
from p2p.scoring import Offense

logger = logging.getLogger(__name__)

StatusProvider = Callable[[], Awaitable[ChainStatus]]
BlockProvider = Callable[[Height], Awaitable[StoredBlock | None]]
VoteProvider = Callable[[VotesRequest], Awaitable[Sequence[Vote]]]
ModelProvider = Callable[[Hash32, int, int], Awaitable[ModelChunkResponse | None]]
TxProvider = Callable[[Sequence[Hash32]], Awaitable[Sequence[Transaction]]]
AskedHook = Callable[[ID, Sequence[Hash32]], None]
PendingProvider = Callable[[int], Awaitable[Sequence[Hash32]]]
Progress = Callable[[int, int], None]
OffenseSink = Callable[[ID, Offense, str], None]

W = TypeVar("W", bound=Wire)
T = TypeVar("T")

# Per stored block in a BlocksResponse: msgpack headers of the entry, its height and two byte strings.
_BLOCK_OVERHEAD = 32
# Decoding a large block response (thousands of transactions) runs in a worker thread.
_THREAD_THRESHOLD = 64 * 1024
# A peer that refuses for rate: wait this long (doubling, at most _RATE_RETRY_MAX_S) before asking again,
# at most _RATE_RETRIES times for one exchange of a long transfer.
_RATE_RETRY_S = 0.25
_RATE_RETRY_MAX_S = 2.0
_RATE_RETRIES = 30
# Beyond request_timeout_s, how long a request may take to let go of its stream before the caller stops
# waiting and the link is dropped as stalled (pitfall: a timed-out request can hang on a silent link).
_RELEASE_GRACE_S = 2.0
# A request to a peer with no connection waits this long for the peer manager's dial, then fails (never dials).
_CONNECT_WAIT_S = 2.0
_CONNECT_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class SyncedBlock:
    """A block and its commit as received; the commit is not yet verified against a validator set."""

    block: Block
    commit: Commit


def protocol_ids(chain_id: str) -> dict[str, TProtocol]:
    names = ("status", "blocks", "blockpart", "votes", "model", "txs", "pending", "synctxs", "peerrecord")
    return {name: TProtocol(f"/inferchain/{chain_id}/{name}/1") for name in names}


class ReqResp:
    def __init__(self, host: IHost, config: P2PConfig, counters: P2PCounters, on_offense: OffenseSink,
                 on_stalled: Callable[[ID], None] | None = None):
        self._host = host
        self._config = config
        self._counters = counters
        self._on_offense = on_offense
        self._on_stalled = on_stalled
        self._nursery: trio.Nursery | None = None
        self._rr = RequestResponse(host)
        self._protocols = protocol_ids(config.chain_id)
        rates = config.rates
        self._limiter = PeerRateLimiter(rates.requests_per_s, rates.request_burst, max_peers=rates.max_tracked_peers)
        self._served = ByteBudget(rates.served_bytes_per_s, rates.served_bytes_burst,
                                  max_peers=rates.max_tracked_peers)
        self._client_config = RequestResponseConfig(
            timeout=config.request_timeout_s, max_request_size=REQUEST_MAX, max_response_size=LIBP2P_FRAME_MAX
        )
        self._server_config = RequestResponseConfig(
            timeout=config.request_timeout_s, max_request_size=REQUEST_MAX,
            max_response_size=LIBP2P_FRAME_MAX, max_concurrent_inbound=32,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery outbound exchanges run in, so that a caller never waits on one past its bound."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # ------------------------------------------------------------------ serving (node registers providers)

    def serve_status(self, provider: StatusProvider) -> None:
        async def handle(request: StatusRequest, peer: ID) -> Wire:
            if request.chain_id != self._config.chain_id:
                raise WrongChain(f"status request for chain {request.chain_id!r}")
            return await provider()

        self._serve("status", StatusRequest, handle)

    def serve_blocks(self, provider: BlockProvider) -> None:
        """Block ranges (`blocks`) and the parts of a block too large for one response (`blockpart`)."""
        async def stored_at(height: int) -> StoredBlock | None:
            stored = await provider(Height(height))
            if stored is not None and stored.height != height:
                raise RuntimeError(f"block provider returned height {stored.height} for {height}")
            return stored

        async def handle(request: BlocksRequest, peer: ID) -> Wire:
            blocks: list[StoredBlock] = []
            size = 16
            for height in range(request.start, request.end + 1):
                stored = await stored_at(height)
                if stored is None:
                    break
                size += len(stored.block) + len(stored.commit) + _BLOCK_OVERHEAD
                if size > RESPONSE_MAX:
                    if blocks:  # the next request starts at this one
                        break
                    whole = len(stored.encode())
                    if whole > WHOLE_BLOCK_MAX:  # alone too large for a response: the requester asks in parts
                        return BlocksResponse((), whole)
                blocks.append(stored)
            if not blocks:
                raise NotFound(f"no blocks from height {request.start}")
            return BlocksResponse(tuple(blocks), 0)

        # The parts of one block are asked for one after the other: keep the last block's bytes.
        last: list[tuple[int, bytes]] = []

        async def handle_part(request: BlockPartRequest, peer: ID) -> Wire:
            height = int(request.height)
            raw = next((r for h, r in last if h == height), None)
            if raw is None:
                stored = await stored_at(height)
                if stored is None:
                    raise NotFound(f"no block at height {height}")
                raw = stored.encode()
                last[:] = [(height, raw)]
            start, end = block_part_span(len(raw), int(request.index))
            if start == end:
                raise RequestFailed(f"block {height} has {count_block_parts(len(raw))} parts")
            return BlockPart(request.height, request.index, len(raw), raw[start:end])

        self._serve("blocks", BlocksRequest, handle)
        self._serve("blockpart", BlockPartRequest, handle_part)

    def serve_votes(self, provider: VoteProvider) -> None:
        async def handle(request: VotesRequest, peer: ID) -> Wire:
            votes = tuple(await provider(request))
            return VotesResponse(votes[:MAX_VALIDATORS])

        self._serve("votes", VotesRequest, handle)

    def serve_models(self, provider: ModelProvider) -> None:
        async def handle(request: ModelChunkRequest, peer: ID) -> Wire:
            chunk = await provider(request.model_id, request.offset, request.length)
            if chunk is None:
                raise NotFound(f"no model {request.model_id.hex()[:16]}")
            if chunk.offset != request.offset or len(chunk.data) > request.length:
                raise RuntimeError("model provider returned a chunk other than the one asked for")
            return chunk

        self._serve("model", ModelChunkRequest, handle)

    def serve_txs(self, provider: TxProvider, *, asked: AskedHook | None = None) -> None:
        """Transactions by hash: those `provider` holds among the asked ones, in the asked order, as many as
        fit in one response; for a proposal's missing ones (`txs`) and for mempool reconciliation (`synctxs`,
        the same messages). `asked(peer, hashes)` hears who asked for what by `txs` only: a proposal that
        lacked them is evidence of gossip lag, a reconciliation is not (node.proposal_hold)."""
        async def answer(request: TxsRequest) -> TxsResponse:
            out: list[Transaction] = []
            size = 0
            for tx in await provider(request.hashes):
                size += len(tx.encode()) + 8
                if size > RESPONSE_MAX - 1024:
                    break
                out.append(tx)
            return TxsResponse(tuple(out))

        async def handle(request: TxsRequest, peer: ID) -> Wire:
            if asked is not None:
                asked(peer, request.hashes)
            return await answer(request)

        async def handle_sync(request: TxsRequest, peer: ID) -> Wire:
            return await answer(request)

        self._serve("txs", TxsRequest, handle)
        self._serve("synctxs", TxsRequest, handle_sync)

    def serve_pending(self, provider: PendingProvider) -> None:
        """Pending transaction hashes, best first: at most the asked limit (node.mempool_sync)."""
        async def handle(request: PendingRequest, peer: ID) -> Wire:
            hashes = tuple(await provider(int(request.limit)))
            return PendingResponse(hashes[:int(request.limit)])

        self._serve("pending", PendingRequest, handle)

    def serve_peer_record(self, record: ValidatorPeerRecord | None) -> None:
        """This node's validator peer record (core.peer_record), or NOT_FOUND where it is no validator."""
        async def handle(request: StatusRequest, peer: ID) -> Wire:
            await trio.lowlevel.checkpoint()
            if request.chain_id != self._config.chain_id:
                raise WrongChain(f"peer record request for chain {request.chain_id!r}")
            if record is None:
                raise NotFound("not a validator")
            return record

        self._serve("peerrecord", StatusRequest, handle)

    def _serve(self, name: str, request_type: type[W], handle: Callable[[Any, ID], Awaitable[Wire]]) -> None:
        async def handler(payload: bytes, context: RequestContext) -> bytes:
            peer = context.peer_id
            if not self._limiter.allow(str(peer), len(payload), trio.current_time()):
                self._counters.requests_refused[name] += 1
                self._on_offense(peer, Offense.RATE_LIMITED, f"{name} requests")
                return _response(ResponseCode.RATE_LIMITED, reason="rate limited")
            if not self._served.available(str(peer), trio.current_time()):
                # An honest syncing peer gets here too: refuse without blame, it waits and asks again.
                self._counters.requests_refused[name] += 1
                self._counters.served_budget_refusals += 1
                return _response(ResponseCode.RATE_LIMITED, reason="byte budget for this peer spent")
            response = await self._answer(name, request_type, handle, payload, peer)
            self._served.charge(str(peer), len(response), trio.current_time())
            self._counters.served_bytes += len(response)
            return response

        self._rr.set_handler(self._protocols[name], handler, BytesCodec(), self._server_config)

    async def _answer(self, name: str, request_type: type[W], handle: Callable[[Any, ID], Awaitable[Wire]],
                      payload: bytes, peer: ID) -> bytes:
        try:
            request = request_type.decode(payload)
        except DecodeError as exc:
            self._counters.requests_refused[name] += 1
            self._on_offense(peer, Offense.BAD_REQUEST, f"{name}: {exc}")
            return _response(ResponseCode.BAD_REQUEST, reason=str(exc))
        try:
            body = await handle(request, peer)
        except NotFound as exc:
            return _response(ResponseCode.NOT_FOUND, reason=str(exc))
        except WrongChain as exc:
            self._counters.requests_refused[name] += 1
            return _response(ResponseCode.BAD_REQUEST, reason=str(exc))
        except RemoteError as exc:  # a request this node refuses to serve
            self._counters.requests_refused[name] += 1
            return _response(ResponseCode.UNAVAILABLE, reason=str(exc))
        except LocalError as exc:  # our fault (e.g. the database): unavailable, never the peer's
            logger.warning("serving a %s request to %s failed on our side: %s", name, peer, exc)
            return _response(ResponseCode.UNAVAILABLE, reason=str(exc))
        self._counters.requests_served[name] += 1
        return _response(ResponseCode.OK, body.encode())

    # ------------------------------------------------------------------ requesting

    async def status(self, peer: ID) -> ChainStatus:
        body = await self._request(peer, "status", StatusRequest(self._config.chain_id))
        status = self._decode_body(peer, ChainStatus, body)
        if status.chain_id != self._config.chain_id:
            raise WrongChain(f"peer {peer} is on chain {status.chain_id!r}")
        return status

    async def blocks(self, peer: ID, start: int, end: int) -> list[SyncedBlock]:
        """One request: blocks from `start`, as many up to `end` as the peer fits in one response."""
        end = min(end, start + MAX_BLOCKS_PER_REQUEST - 1)
        body = await self._request(peer, "blocks", BlocksRequest(Height(start), Height(end)))
        if len(body) >= _THREAD_THRESHOLD:
            result = await trio.to_thread.run_sync(self._decode_blocks, start, end, body)
        else:
            result = self._decode_blocks(start, end, body)
        if isinstance(result, RemoteError):
            self._bad_response(peer, "blocks", result)
        if isinstance(result, int):  # block `start` alone is larger than a response
            return [await self.block_in_parts(peer, start, result)]
        return result

    async def block_in_parts(self, peer: ID, height: int, total: int) -> SyncedBlock:
        """Block `height` as a stored block of `total` bytes, fetched part by part and checked once assembled
        (its commit names it; the caller verifies the commit). Memory is bounded by `total`, which the wire
        caps (MAX_STORED_BLOCK_BYTES), and time by the parts' count times the request timeout. A part that
        is not the one asked for (height, index, total or length) is the peer's fault (BadResponse)."""
        parts: list[bytes] = []
        for index in range(count_block_parts(total)):
            request = BlockPartRequest(Height(height), index)
            body = await _patiently(functools.partial(self._request, peer, "blockpart", request))
            part = self._decode_body(peer, BlockPart, body)
            start, end = block_part_span(total, index)
            if (int(part.height), int(part.index), int(part.total), len(part.data)) != (height, index, total,
                                                                                       end - start):
                self._bad_response(peer, "blockpart", BadResponse(
                    f"part {index} of block {height} ({total} bytes) is not the one asked for"))
            parts.append(part.data)
        result = await trio.to_thread.run_sync(self._decode_stored, height, b"".join(parts))
        if isinstance(result, RemoteError):
            self._bad_response(peer, "blockpart", result)
        return result

    async def fetch_blocks(self, peer: ID, start: int, end: int,
                           on_blocks: Callable[[list[SyncedBlock]], Awaitable[None]]) -> int:
        """Blocks start..end in as many requests as needed, each chunk handed to `on_blocks` in order.

        Returns the number fetched; stops early (NotFound) when the peer has no more. A peer that refuses for
        rate (its byte budget for us) is asked again after a pause, a bounded number of times.
        """
        fetched = 0
        height = start
        while height <= end:
            try:
                chunk = await _patiently(functools.partial(self.blocks, peer, height, end))
            except NotFound:
                break
            await on_blocks(chunk)
            fetched += len(chunk)
            height += len(chunk)
        return fetched

    async def votes(self, peer: ID, request: VotesRequest) -> list[Vote]:
        """The signed votes of (height, round, type) the peer holds and `request.have` lacks."""
        body = await self._request(peer, "votes", request)
        response = self._decode_body(peer, VotesResponse, body)
        chain_id = self._config.chain_id
        for vote in response.votes:
            if (vote.height, vote.round, vote.type) != (request.height, request.round, request.type):
                self._bad_response(peer, "votes", BadResponse("vote for another height, round or type"))
            if not vote.verify_signature(chain_id):
                self._bad_response(peer, "votes", BadResponse("vote with a bad signature"))
        return list(response.votes)

    async def txs(self, peer: ID, hashes: Sequence[Hash32], *, for_sync: bool = False) -> list[Transaction]:
        """The transactions among `hashes` (at most MAX_TXS_PER_REQUEST) that the peer holds, for a proposal
        (`txs`) or, `for_sync`, for mempool reconciliation (`synctxs`). A response with a transaction not
        asked for, or out of the asked order, is the peer's fault (BadResponse)."""
        asked = tuple(hashes[:MAX_TXS_PER_REQUEST])
        name = "synctxs" if for_sync else "txs"
        body = await self._request(peer, name, TxsRequest(asked))
        if len(body) >= _THREAD_THRESHOLD:
            result = await trio.to_thread.run_sync(self._decode_txs, asked, body)
        else:
            result = self._decode_txs(asked, body)
        if isinstance(result, RemoteError):
            self._bad_response(peer, name, result)
        return result

    async def pending(self, peer: ID, limit: int = MAX_PENDING_HASHES) -> list[Hash32]:
        """Up to `limit` hashes of the transactions pending at the peer, best first. More than asked for is
        the peer's fault (BadResponse)."""
        limit = max(1, min(limit, MAX_PENDING_HASHES))
        body = await self._request(peer, "pending", PendingRequest(limit))
        response = self._decode_body(peer, PendingResponse, body)
        if len(response.hashes) > limit:
            self._bad_response(peer, "pending", BadResponse(f"{len(response.hashes)} hashes for a limit of {limit}"))
        return list(response.hashes)

    async def peer_record(self, peer: ID) -> ValidatorPeerRecord:
        """The validator record of `peer`: its validator key's signature over its peer id on our chain
        (NotFound where it is no validator). A record for another peer id (a replay) or with a bad signature
        is the peer's fault (BadResponse); whether the key is a validator's is the caller's check."""
        body = await self._request(peer, "peerrecord", StatusRequest(self._config.chain_id))
        record = self._decode_body(peer, ValidatorPeerRecord, body)
        if record.peer_id != peer.to_bytes():
            self._bad_response(peer, "peerrecord", BadResponse("a peer record for another peer id"))
        if not record.verify_signature(self._config.chain_id):
            self._bad_response(peer, "peerrecord", BadResponse("a peer record with a bad signature"))
        return record

    @staticmethod
    def _decode_txs(asked: tuple[Hash32, ...], body: bytes) -> list[Transaction] | RemoteError:
        try:
            response = TxsResponse.decode(body)
        except DecodeError as exc:
            return exc
        position = 0
        for tx in response.txs:
            tx_hash = tx.hash
            while position < len(asked) and asked[position] != tx_hash:
                position += 1
            if position == len(asked):
                return BadResponse(f"transaction {tx_hash.hex()[:16]} was not asked for (or is out of order)")
            position += 1
        return list(response.txs)

    async def fetch_model(self, peer: ID, model_id: Hash32, *, progress: Progress | None = None,
                          max_size: int = MODEL_MAX) -> bytes:
        """The model's bytes in chunks of 256 KiB; `progress(received, total)` after each chunk.

        The caller checks the bytes against the model id (the id also covers registration metadata).
        """
        parts: list[bytes] = []
        received = 0
        total: int | None = None
        while total is None or received < total:
            request = ModelChunkRequest(model_id, received, MODEL_CHUNK)
            body = await _patiently(functools.partial(self._request, peer, "model", request))
            chunk = self._decode_body(peer, ModelChunkResponse, body)
            if total is None:
                if chunk.total > max_size:
                    self._bad_response(peer, "model", BadResponse(f"model of {chunk.total} bytes exceeds {max_size}"))
                total = chunk.total
            if chunk.total != total or chunk.offset != received or received + len(chunk.data) > total:
                self._bad_response(peer, "model", BadResponse("model chunk inconsistent with the request"))
            if not chunk.data and received < total:
                self._bad_response(peer, "model", BadResponse("empty model chunk before the end"))
            parts.append(chunk.data)
            received += len(chunk.data)
            if progress is not None:
                progress(received, total)
        return b"".join(parts)

    # ------------------------------------------------------------------ internals

    def serves(self, peer: ID, name: str) -> bool:
        """Whether the peer may serve protocol `name`: it announced it (libp2p identify), or has announced
        nothing yet (identify still running). A foreign libp2p peer that announced other protocols does not."""
        try:
            announced = self._host.get_peerstore().get_protocols(peer)
        except Exception:  # an unknown peer: the peerstore raises rather than answer empty
            return True
        return not announced or self._protocols[name] in announced

    def forget_peer(self, peer: ID) -> None:
        """The peer disconnected: free its rate state."""
        self._limiter.forget(str(peer))
        self._served.forget(str(peer))

    def tracked_peers(self) -> int:
        return self._limiter.tracked() + self._served.tracked()

    async def _request(self, peer: ID, name: str, request: Wire) -> bytes:
        await self._wait_connected(peer, name)
        if not self.serves(peer, name):
            self._counters.requests_skipped[name] += 1
            raise NotServed(f"{peer} does not serve {self._protocols[name]}")
        try:
            payload = await self._exchange(peer, name, request.encode())
        except RequestResponseError as exc:
            self._counters.requests_failed[name] += 1
            raise RequestFailed(f"{name} request to {peer} failed: {type(exc).__name__}: {exc}") from exc
        try:
            response = Response.decode(payload)
        except DecodeError as exc:
            self._bad_response(peer, name, exc)
        if response.code is ResponseCode.NOT_FOUND:
            raise NotFound(f"{name}: {response.reason}")
        if response.code is ResponseCode.RATE_LIMITED:
            self._counters.requests_failed[name] += 1
            raise RateLimited(f"{name} request to {peer} refused: {response.reason}")
        if response.code is not ResponseCode.OK:
            self._counters.requests_failed[name] += 1
            raise RequestFailed(f"{name} request to {peer} refused: {response.code.name}: {response.reason}")
        return response.body

    async def _wait_connected(self, peer: ID, name: str) -> None:
        """Opening a stream to a peer without a connection would dial it at whatever addresses the peerstore
        holds (those it announced, or a message origin's peer record), around the configured ones: only the
        peer manager dials (docs/p2p.md, pitfall 18). So a request waits a little for the peer manager's
        connection (a node that just started), then fails without dialing."""
        network = self._host.get_network()
        with trio.move_on_after(min(_CONNECT_WAIT_S, self._config.request_timeout_s)):
            while not network.get_connections(peer):  # noqa: ASYNC110 - the swarm has no event to wait on
                await trio.sleep(_CONNECT_POLL_S)
            return
        self._counters.requests_failed[name] += 1
        raise RequestFailed(f"{name} request to {peer}: not connected")

    async def _exchange(self, peer: ID, name: str, payload: bytes) -> bytes:
        """Send one request and read its response, waiting at most request_timeout_s plus a grace.

        Upstream's own timeout does not bound the exchange on a link that went silent under load: the stream's
        reset after the timeout, and the shielded reset in `new_stream`'s clean-up, wait for Yamux's connection
        write lock, held by a write blocked in the kernel; no cancellation reaches them (docs/p2p.md, pitfall 17). So the
        exchange runs in a task of our nursery; past the bound the caller gets `RequestFailed` at once and the
        link is dropped as stalled (its socket closed, which frees the blocked task; the peer is redialed)."""
        nursery = self._nursery
        if nursery is None:  # not running (unit use): upstream's timeout is all there is
            return await self._rr.send_request(peer, [self._protocols[name]], payload, BytesCodec(),
                                               self._client_config)
        send, receive = trio.open_memory_channel[bytes | Exception](1)

        async def exchange() -> None:
            try:
                result: bytes | Exception = await self._rr.send_request(
                    peer, [self._protocols[name]], payload, BytesCodec(), self._client_config)
            except Exception as exc:  # handed to the caller, which maps it as before
                result = exc
            send.send_nowait(result)  # one slot, one message: never blocks, even when the caller gave up

        try:
            nursery.start_soon(exchange)
        except RuntimeError:  # our nursery closed: the service is stopping, and a caller may still be running
            self._counters.requests_failed[name] += 1
            raise RequestFailed(f"{name} request to {peer}: the request service is stopping") from None
        with trio.move_on_after(self._config.request_timeout_s + _RELEASE_GRACE_S):
            result = await receive.receive()
            if isinstance(result, Exception):
                raise result
            return result
        self._counters.requests_failed[name] += 1
        self._counters.requests_abandoned += 1
        logger.warning("%s request to %s: no answer and no release within %.0f s; dropping the link as stalled",
                       name, peer, self._config.request_timeout_s + _RELEASE_GRACE_S)
        if self._on_stalled is not None:
            self._on_stalled(peer)
        raise RequestFailed(f"{name} request to {peer}: no answer within {self._config.request_timeout_s:.0f} s")

    def _decode_body(self, peer: ID, cls: type[W], body: bytes) -> W:
        try:
            return cls.decode(body)
        except DecodeError as exc:
            self._bad_response(peer, cls.__name__, exc)

    def _decode_blocks(self, start: int, end: int, body: bytes) -> list[SyncedBlock] | int | RemoteError:
        """Decode and cross-check a block response: its blocks, or the size of block `start` when that one
        comes in parts; returns the error instead of raising (thread-safe)."""
        try:
            response = BlocksResponse.decode(body)
        except DecodeError as exc:
            return exc
        if not response.blocks and response.next_size:
            return int(response.next_size)
        if not response.blocks or len(response.blocks) > end - start + 1:
            return BadResponse(f"{len(response.blocks)} blocks for range {start}..{end}")
        out: list[SyncedBlock] = []
        for offset, stored in enumerate(response.blocks):
            synced = self._check_stored(start + offset, stored)
            if isinstance(synced, RemoteError):
                return synced
            out.append(synced)
        return out

    def _decode_stored(self, height: int, raw: bytes) -> SyncedBlock | RemoteError:
        """An assembled stored block, decoded, cross-checked and its body checked against its header: parts
        carry no proofs of their own, so a wrong part shows here, and it is the serving peer's (thread-safe)."""
        try:
            stored = StoredBlock.decode(raw)
        except DecodeError as exc:
            return exc
        synced = self._check_stored(height, stored)
        if isinstance(synced, SyncedBlock):
            try:
                synced.block.validate_basic()
            except InvalidBlock as exc:
                return BadResponse(f"assembled block {height}: {exc}")
        return synced

    def _check_stored(self, height: int, stored: StoredBlock) -> SyncedBlock | RemoteError:
        """The block and commit of `stored`, if they are of `height`, of our chain, and the commit names the
        block (its signatures are the caller's check)."""
        try:
            block, commit = Block.decode(stored.block), Commit.decode(stored.commit)
        except DecodeError as exc:
            return exc
        if stored.height != height or block.height != height or commit.height != height:
            return BadResponse(f"block response out of order at height {height}")
        if commit.block_id != block.id:
            return BadResponse(f"commit at height {height} is for another block")
        if block.header.chain_id != self._config.chain_id:
            return WrongChain(f"block {height} of chain {block.header.chain_id!r}")
        return SyncedBlock(block, commit)

    def _bad_response(self, peer: ID, name: str, error: RemoteError) -> NoReturn:
        self._counters.requests_failed[name] += 1
        self._on_offense(peer, Offense.BAD_RESPONSE, f"{name}: {error}")
        if isinstance(error, BadResponse | WrongChain):
            raise error
        raise BadResponse(f"{name} response from {peer}: {error}") from error


async def _patiently(request: Callable[[], Awaitable[T]]) -> T:
    """`request()`, asked again after a growing pause while the peer refuses it for rate."""
    delay = _RATE_RETRY_S
    for _ in range(_RATE_RETRIES):
        try:
            return await request()
        except RateLimited:
            await trio.sleep(delay)
            delay = min(2 * delay, _RATE_RETRY_MAX_S)
    return await request()


def _response(code: ResponseCode, body: bytes = b"", reason: str = "") -> bytes:
    return Response(code, body, reason.encode()[:200].decode(errors="ignore")).encode()
