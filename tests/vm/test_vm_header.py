"""One set of header rules (issue 9.5): `core.header.validate_header`, and its three callers agreeing on a
real block of the real VM: the consensus machine (before judging a proposal), the VM (before re-executing
it) and block sync (before committing a fetched block with its commit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.actions import ValidateBlock
from consensus.events import NewHeight, ProposalReceived
from consensus.proposer import ProposerPriorities
from consensus.state import ConsensusState
from core.block import Block, ProposalBlock
from core.errors import DecodeError, InvalidBlock
from core.hashing import ZERO_HASH, sha256
from core.header import HeaderRules, is_build_round_ok, validate_header
from core.types import Address, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Proposal
from node.blockstore import BlockStore
from node.chain import Chain
from node.sync import verify_synced_block
from p2p.reqresp import SyncedBlock
from tests.vm.devnet import Devnet
from vm.genesis import Genesis

pytestmark = pytest.mark.vm


@pytest.fixture
def fresh(tmp_path: Path, genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, genesis, nodes=2)
    yield devnet
    devnet.close()


def schedule(net: Devnet) -> ProposerPriorities:
    return ProposerPriorities.genesis(net.apps[0].validator_set(Height(1)))


def rules(net: Devnet, max_round: int = 0) -> HeaderRules:
    app = net.apps[1]
    return HeaderRules(net.genesis.chain_id, 1, ZERO_HASH, int(net.genesis.genesis_time),
                       app.validator_set(Height(1)), app.validator_set(Height(2)).hash, schedule(net).proposer,
                       max_round)


def first_block(net: Devnet) -> Block:
    """Block 1 as the scheduled proposer of round 0 builds it on node 0."""
    return net.propose(proposer=schedule(net).proposer(0))


def with_header(block: Block, **changes: object) -> Block:
    return replace(block, header=replace(block.header, **changes))


def outsider() -> Address:
    return Address(sha256(b"not a validator")[:20])


def other_validator(net: Devnet, block: Block) -> Address:
    return next(a for a in net.keys if a != block.header.proposer)


# name -> (mutation of a good block 1, whether the VM (which does not know consensus's schedule) sees it)
MUTATIONS: dict[str, tuple[Callable[[Devnet, Block], Block], bool]] = {
    "time equal to genesis": (lambda net, b: with_header(b, time=Timestamp(net.genesis.genesis_time)), True),
    "time before genesis": (lambda net, b: with_header(b, time=Timestamp(net.genesis.genesis_time - 1)), True),
    "protocol version": (lambda net, b: with_header(b, version=b.header.version + 1), True),
    "chain id": (lambda net, b: with_header(b, chain_id="another-chain"), True),
    "last block id": (lambda net, b: with_header(b, last_block_id=sha256(b"elsewhere")), True),
    "validators hash": (lambda net, b: with_header(b, validators_hash=sha256(b"x")), True),
    "next validators hash": (lambda net, b: with_header(b, next_validators_hash=sha256(b"x")), True),
    "proposer not a validator": (lambda net, b: with_header(b, proposer=outsider()), True),
    "proposer another validator": (lambda net, b: with_header(b, proposer=other_validator(net, b)), False),
    "built in a later round": (lambda net, b: with_header(b, round=Round(1)), False),
}


def consensus_judges(net: Devnet, block: Block) -> str | None:
    """Feed block 1 to a consensus machine as the round-0 proposal of its scheduled proposer; the
    machine's own verdict on it (None: it asks the application to validate it)."""
    app = net.apps[1]
    state = ConsensusState(net.genesis.chain_id, None)
    state.handle(NewHeight(Timestamp(net.genesis.genesis_time), Height(1), schedule(net),
                           app.validator_set(Height(2)).entries, (), ZERO_HASH, Timestamp(net.genesis.genesis_time),
                           None))
    key = net.keys[schedule(net).proposer(0)]
    proposal = Proposal(Height(1), Round(0), -1, block.id, block.header.time, key.public_key,
                        ZERO_SIGNATURE).signed(key, net.genesis.chain_id)
    actions = state.handle(ProposalReceived(Timestamp(block.header.time), ProposalBlock(proposal, block)))
    problem = state._block_problem.get(block.id, "never noted")
    asked = any(isinstance(a, ValidateBlock) for a in actions)
    assert asked == (problem is None)
    return problem


def sync_judges(net: Devnet, block: Block) -> str | None:
    app = net.apps[1]
    chain = Chain(app.store, BlockStore(app.store, net.genesis.chain_id), app)
    try:
        verify_synced_block(chain, SyncedBlock(block, net.precommits(block)), net.genesis.chain_id)
    except InvalidBlock as exc:
        return str(exc)
    return None


def vm_judges(net: Devnet, block: Block) -> str | None:
    verdict = net.apps[1].validate_block(block)
    return None if verdict.is_valid else verdict.reason


def test_a_good_header_passes_every_caller(fresh: Devnet) -> None:
    block = first_block(fresh)
    validate_header(block.header, rules(fresh))
    assert consensus_judges(fresh, block) is None
    assert vm_judges(fresh, block) is None
    assert sync_judges(fresh, block) is None


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_caller_refuses_a_header_that_breaks_a_rule(fresh: Devnet, name: str) -> None:
    mutate, vm_sees_it = MUTATIONS[name]
    block = mutate(fresh, first_block(fresh))
    with pytest.raises(InvalidBlock) as raised:
        validate_header(block.header, rules(fresh))
    reason = str(raised.value)
    if name == "built in a later round":
        # The machine drops the proposal before noting its block: a fresh proposal's block is built in its
        # own round (`is_build_round_ok`), so it never asks the application about it.
        assert consensus_judges(fresh, block) == "never noted"
    else:
        assert consensus_judges(fresh, block) == reason
    assert sync_judges(fresh, block) == reason
    if vm_sees_it:
        assert vm_judges(fresh, block) == reason


def test_a_block_built_in_an_earlier_round_names_that_rounds_proposer(fresh: Devnet) -> None:
    """A re-proposal carries a block built in an earlier round: its header names the proposer of the round
    it was built in, and a commit in a later round still verifies it."""
    proposers = schedule(fresh)
    later = next(r for r in range(1, 16) if proposers.proposer(r) != proposers.proposer(0))
    block = first_block(fresh)
    validate_header(block.header, rules(fresh, max_round=later))
    moved = with_header(block, round=Round(later))  # the same proposer, claimed for a later round
    with pytest.raises(InvalidBlock, match="not the proposer of its round"):
        validate_header(moved.header, rules(fresh, max_round=later))


def test_proposal_build_round_rule() -> None:
    """A fresh proposal carries a block of its own round; a re-proposal one of its POL round or before."""
    assert is_build_round_ok(3, 3, -1)
    assert not is_build_round_ok(2, 3, -1)
    assert not is_build_round_ok(4, 3, -1)
    assert is_build_round_ok(1, 3, 1) and is_build_round_ok(0, 3, 2)
    assert not is_build_round_ok(2, 3, 1)


def test_a_proposal_block_with_a_block_of_another_round_does_not_decode(fresh: Devnet) -> None:
    block = with_header(first_block(fresh), round=Round(1))
    key = fresh.keys[block.header.proposer]
    proposal = Proposal(Height(1), Round(2), -1, block.id, block.header.time, key.public_key,
                        ZERO_SIGNATURE).signed(key, fresh.genesis.chain_id)
    raw = ProposalBlock(proposal, block).encode()
    with pytest.raises(DecodeError, match="carries a block built in round 1"):
        ProposalBlock.decode(raw)
