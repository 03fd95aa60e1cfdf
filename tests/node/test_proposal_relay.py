"""Compact proposals between real libp2p hosts on 127.0.0.1: a receiver rebuilds the block from what it holds
and fetches the rest; a peer that stalls or lies about transactions cannot stall the proposal (attacks listed
in docs/security.md)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from core.block import ProposalBlock
from core.compact import CompactProposal, compact_of
from core.hashing import ZERO_HASH
from core.tx import Transaction
from core.types import Hash32, Height, Round, Timestamp
from core.votes import Proposal
from node.proposal_relay import FetchLimits, ProposalAssembler
from p2p.service import P2PService
from p2p.testing.chain import build_chain, make_tx, validator_keys
from tests.p2p.helpers import CHAIN, running_nodes

pytestmark = pytest.mark.node

BLOCK = build_chain(CHAIN, 1, txs_per_block=40, tx_payload=200).head
KEY = validator_keys(4)[1]
PROPOSAL = ProposalBlock(
    Proposal(Height(1), Round(0), -1, BLOCK.id, Timestamp(1), KEY.public_key, b"\0" * 64)
    .signed(KEY, CHAIN), BLOCK)
COMPACT = compact_of(PROPOSAL)
LIMITS = FetchLimits(per_peer_s=1.0, total_s=4.0)


def holding(txs: Sequence[Transaction]) -> dict[bytes, Transaction]:
    return {bytes(tx.hash): tx for tx in txs}


def serve_honestly(service: P2PService, txs: Sequence[Transaction]) -> None:
    held = holding(txs)

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        return [held[h] for h in hashes if h in held]

    service.reqresp.serve_txs(provide)


def serve_stalling(service: P2PService) -> None:
    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    service.reqresp.serve_txs(provide)


def serve_lies(service: P2PService) -> None:
    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.lowlevel.checkpoint()
        return [make_tx(CHAIN, 10_000 + i, 200) for i in range(len(hashes))]  # not the ones asked for

    service.reqresp.serve_txs(provide)


def receiver_assembler(service: P2PService, held: Sequence[Transaction]) -> ProposalAssembler:
    local = holding(held)
    return ProposalAssembler(local.get, service.reqresp.txs, lambda: [], LIMITS)


def test_the_compact_form_names_every_transaction_and_rebuilds_the_same_proposal() -> None:
    assert CompactProposal.decode(COMPACT.encode()) == COMPACT
    assert len(COMPACT.encode()) < len(PROPOSAL.encode()) / 4
    assert COMPACT.rebuild(BLOCK.txs) == PROPOSAL
    found, missing = COMPACT.missing(holding(BLOCK.txs[::2]).get)
    assert missing == [tx.hash for tx in BLOCK.txs[1::2]]
    assert sum(tx is not None for tx in found) == 20


@pytest.mark.trio
async def test_missing_transactions_come_from_the_forwarder() -> None:
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve_honestly(s, BLOCK.txs) if i == 0 else None) \
                as (proposer, receiver):
            assembler = receiver_assembler(receiver, BLOCK.txs[:30])
            rebuilt = await assembler.assemble(COMPACT, forwarder=proposer.peer_id, origin=proposer.peer_id)
            assert rebuilt == PROPOSAL
            assert (assembler.rebuilt, assembler.fetched, assembler.dropped) == (1, 10, 0)
            # What it rebuilt it now serves, though its mempool (here: the dict) lacks those ten.
            served = await assembler.serve([tx.hash for tx in BLOCK.txs[30:]])
            assert served == list(BLOCK.txs[30:])


@pytest.mark.trio
async def test_a_peer_that_never_answers_cannot_stall_the_proposal() -> None:
    """Attack: the proposer (asked first) holds the fetch of its proposal's transactions open forever.
    Defence: each peer gets `per_peer_s`, then the next one (here the forwarder) is asked."""
    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            serve_honestly(service, BLOCK.txs)
        elif i == 1:
            serve_stalling(service)

    with trio.fail_after(60):
        async with running_nodes(3, configure=configure) as (forwarder, staller, receiver):
            assembler = receiver_assembler(receiver, BLOCK.txs[:25])
            rebuilt = await assembler.assemble(COMPACT, forwarder=forwarder.peer_id, origin=staller.peer_id)
            assert rebuilt == PROPOSAL
            assert assembler.fetched == 15


@pytest.mark.trio
async def test_a_peer_that_answers_with_other_transactions_is_penalized_and_bypassed() -> None:
    """Attack: the peer asked first answers the fetch with transactions that were not asked for. Defence: the
    response is refused (BadResponse, a penalty) and the next peer is asked."""
    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            serve_honestly(service, BLOCK.txs)
        elif i == 1:
            serve_lies(service)

    with trio.fail_after(60):
        async with running_nodes(3, configure=configure) as (forwarder, liar, receiver):
            assembler = receiver_assembler(receiver, BLOCK.txs[:25])
            rebuilt = await assembler.assemble(COMPACT, forwarder=forwarder.peer_id, origin=liar.peer_id)
            assert rebuilt == PROPOSAL
            assert receiver.peers.scores.score(str(liar.peer_id), trio.current_time()) < 0
            assert receiver.counters.requests_failed["txs"] >= 1


@pytest.mark.trio
async def test_a_proposal_whose_transactions_nobody_serves_is_dropped_within_the_limit() -> None:
    """Attack: a proposer names transactions it never gossips and then stalls every fetch. Defence: after
    `total_s` the proposal is dropped (consensus times the propose step out as for a lost proposal)."""
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve_stalling(s) if i == 0 else None) \
                as (proposer, receiver):
            assembler = ProposalAssembler(holding(BLOCK.txs[:5]).get, receiver.reqresp.txs, lambda: [],
                                          FetchLimits(per_peer_s=0.5, total_s=1.0))
            rebuilt = await assembler.assemble(COMPACT, forwarder=proposer.peer_id, origin=proposer.peer_id)
            assert rebuilt is None
            assert (assembler.rebuilt, assembler.dropped) == (0, 1)


def reproposal(round_: int) -> CompactProposal:
    """The same block proposed again in a later round (as a proposer holding it as its valid block does)."""
    return compact_of(ProposalBlock(
        Proposal(Height(1), Round(round_), 0, BLOCK.id, Timestamp(1), KEY.public_key, b"\0" * 64)
        .signed(KEY, CHAIN), BLOCK))


def serve_slowly(service: P2PService, txs: Sequence[Transaction], delay_s: float) -> None:
    """A loaded proposer: it holds every transaction but answers only after `delay_s`."""
    held = holding(txs)

    async def provide(hashes: Sequence[Hash32]) -> list[Transaction]:
        await trio.sleep(delay_s)
        return [held[h] for h in hashes if h in held]

    service.reqresp.serve_txs(provide)


@pytest.mark.trio
async def test_a_proposer_slower_than_the_first_rounds_limit_gets_a_later_rounds_proposal_rebuilt() -> None:
    """The stall under load (docs/performance-cpu.md, "Stall under load"): the proposer is the one peer holding the transactions its
    own RPC took (gossip never brought them), and it answers slower than the fetch limit. With a limit fixed
    for every round, every round's proposal was dropped and the chain never committed; the limit grows with
    the round as `timeout_propose` does, so a later round's copy is rebuilt (a staller still costs at most the
    round's limit)."""
    limits = FetchLimits(per_peer_s=1.0, total_s=1.0, per_round_s=1.5, max_total_s=2.5)
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve_slowly(s, BLOCK.txs, 1.5) if i == 0 else None) \
                as (proposer, receiver):
            assembler = ProposalAssembler(holding(BLOCK.txs[:20]).get, receiver.reqresp.txs, lambda: [], limits)
            assert await assembler.assemble(COMPACT, forwarder=proposer.peer_id, origin=proposer.peer_id) is None
            started = trio.current_time()
            rebuilt = await assembler.assemble(reproposal(1), forwarder=proposer.peer_id, origin=proposer.peer_id)
            assert rebuilt is not None and rebuilt.block == BLOCK
            assert (assembler.dropped, assembler.rebuilt, assembler.fetched) == (1, 1, 20)
            assert trio.current_time() - started <= limits.total_for(1) + 0.5  # bounded by the round's limit
            assert limits.total_for(64) == 2.5


@pytest.mark.trio
async def test_transactions_fetched_for_a_dropped_proposal_serve_the_next_rounds_copy() -> None:
    """A fetch that brings only part of a proposal's transactions in time is not wasted: the next round's
    proposal (which names mostly the same transactions) needs only the rest. Here the only peer holds half of
    the missing ones: the first copy is dropped, and the second is rebuilt once the rest arrive by gossip
    (the mempool), with no transaction fetched twice."""
    local = holding(BLOCK.txs[:20])
    limits = FetchLimits(per_peer_s=0.5, total_s=1.0)
    with trio.fail_after(60):
        async with running_nodes(2, configure=lambda i, s: serve_honestly(s, BLOCK.txs[20:30]) if i == 0 else None) \
                as (peer, receiver):
            assembler = ProposalAssembler(local.get, receiver.reqresp.txs, lambda: [], limits)
            assert await assembler.assemble(COMPACT, forwarder=peer.peer_id, origin=peer.peer_id) is None
            assert (assembler.dropped, assembler.fetched) == (1, 10)
            local.update(holding(BLOCK.txs[30:]))  # the rest arrive by gossip; the fetched ten do not
            rebuilt = await assembler.assemble(reproposal(1), forwarder=peer.peer_id, origin=peer.peer_id)
            assert rebuilt is not None and rebuilt.block == BLOCK
            assert (assembler.rebuilt, assembler.fetched) == (1, 10)


def test_a_compact_proposal_whose_hashes_do_not_match_its_header_is_refused() -> None:
    from core.errors import InvalidBlock
    from p2p.envelope import decode_proposal

    assert isinstance(decode_proposal(COMPACT.encode(), CHAIN), CompactProposal)
    assert isinstance(decode_proposal(PROPOSAL.encode(), CHAIN), ProposalBlock)
    swapped = COMPACT.replace(tx_hashes=(ZERO_HASH, *COMPACT.tx_hashes[1:]))
    with pytest.raises(InvalidBlock):
        decode_proposal(swapped.encode(), CHAIN)
    with pytest.raises(InvalidBlock):
        COMPACT.rebuild((BLOCK.txs[1], BLOCK.txs[0], *BLOCK.txs[2:]))


def test_fetch_limits_follow_the_chains_timeout_propose() -> None:
    genesis = FetchLimits.for_timeouts(3000, 500)
    assert (genesis.total_for(0), genesis.total_for(1), genesis.total_for(64)) == (2.5, 3.0, 8.0)
    slower = FetchLimits.for_timeouts(6_000, 1_000)  # a chain that governance gave a longer timeout_propose
    assert (slower.total_for(0), slower.total_for(1), slower.total_for(64)) == (5.0, 6.0, 8.0)
    slowest = FetchLimits.for_timeouts(12_000, 1_000)
    assert (slowest.total_for(0), slowest.total_for(64)) == (10.0, 10.0)  # never under round 0's own figure
