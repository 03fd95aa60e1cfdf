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
async def test_a_forwarder_that_never_answers_cannot_stall_the_proposal() -> None:
    """Attack: the peer that relays a compact proposal holds the fetch of its transactions open forever.
    Defence: each peer gets `per_peer_s`, then the proposer is asked."""
    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            serve_honestly(service, BLOCK.txs)
        elif i == 1:
            serve_stalling(service)

    with trio.fail_after(60):
        async with running_nodes(3, configure=configure) as (proposer, staller, receiver):
            assembler = receiver_assembler(receiver, BLOCK.txs[:25])
            rebuilt = await assembler.assemble(COMPACT, forwarder=staller.peer_id, origin=proposer.peer_id)
            assert rebuilt == PROPOSAL
            assert assembler.fetched == 15


@pytest.mark.trio
async def test_a_forwarder_that_answers_with_other_transactions_is_penalized_and_bypassed() -> None:
    """Attack: the relaying peer answers the fetch with transactions that were not asked for. Defence: the
    response is refused (BadResponse, a penalty) and the proposer is asked."""
    def configure(i: int, service: P2PService) -> None:
        if i == 0:
            serve_honestly(service, BLOCK.txs)
        elif i == 1:
            serve_lies(service)

    with trio.fail_after(60):
        async with running_nodes(3, configure=configure) as (proposer, liar, receiver):
            assembler = receiver_assembler(receiver, BLOCK.txs[:25])
            rebuilt = await assembler.assemble(COMPACT, forwarder=liar.peer_id, origin=proposer.peer_id)
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
