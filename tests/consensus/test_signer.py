"""The double-sign guard: persisted before release, same HRS returns the stored message, lower refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.params import Step
from consensus.signer import FileSignState, MemorySignState, Signer, SignRecord
from core.block import ProposalBlock
from core.errors import DoubleSignError, StorageError
from core.hashing import sha256
from core.keys import PrivateKey
from core.types import Address, Hash32, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Proposal, Vote, VoteType
from tests.consensus.sim.app import StandInApp
from tests.consensus.sim.cluster import CHAIN_ID, GENESIS_TIME
from tests.consensus.test_state import block_for, make_world

pytestmark = pytest.mark.consensus

KEY = PrivateKey.derive("t", "signer", 0)


def poi(height: Height, address: Address) -> Hash32:
    return sha256(b"poi" + int(height).to_bytes(8, "big") + bytes(address))


def vote(t: VoteType, h: int, r: int, block: bytes | None, ts: int = 1) -> Vote:
    return Vote(t, Height(h), Round(r), None if block is None else sha256(block), Timestamp(ts), KEY.public_key,
                None, ZERO_SIGNATURE)


def test_precommits_carry_the_poi_commitment_inside_the_signature() -> None:
    signer = Signer(KEY, CHAIN_ID, MemorySignState(), poi)
    pc = signer.sign_vote(vote(VoteType.PRECOMMIT, 5, 0, b"x"))
    assert pc.poi == poi(Height(5), KEY.address) and pc.verify_signature(CHAIN_ID)
    assert not pc.replace(poi=sha256(b"other")).verify_signature(CHAIN_ID)
    pv = signer.sign_vote(vote(VoteType.PREVOTE, 6, 0, b"x"))
    assert pv.poi is None


def test_same_step_returns_stored_message_whatever_the_new_bytes() -> None:
    state = MemorySignState()
    signer = Signer(KEY, CHAIN_ID, state, poi)
    first = signer.sign_vote(vote(VoteType.PREVOTE, 3, 1, b"a", ts=10))
    again = signer.sign_vote(vote(VoteType.PREVOTE, 3, 1, b"b", ts=99))
    assert again == first
    assert state.saves == 1


def test_lower_height_round_or_step_is_refused() -> None:
    signer = Signer(KEY, CHAIN_ID, MemorySignState(), poi)
    signer.sign_vote(vote(VoteType.PRECOMMIT, 3, 1, b"a"))
    for t, h, r in [(VoteType.PREVOTE, 3, 1), (VoteType.PRECOMMIT, 3, 0), (VoteType.PREVOTE, 2, 9)]:
        with pytest.raises(DoubleSignError):
            signer.sign_vote(vote(t, h, r, b"a"))
    signer.sign_vote(vote(VoteType.PREVOTE, 3, 2, b"a"))  # a later round is fine


def test_signing_for_another_key_is_refused() -> None:
    signer = Signer(KEY, CHAIN_ID, MemorySignState(), poi)
    other = vote(VoteType.PREVOTE, 1, 0, b"a").replace(validator=PrivateKey.derive("t", "x", 1).public_key)
    with pytest.raises(DoubleSignError):
        signer.sign_vote(other)


def test_proposal_with_block_survives_restart_from_file(tmp_path: Path) -> None:
    world = make_world([1, 1, 1, 1])
    app = StandInApp(CHAIN_ID, world.validators, GENESIS_TIME)
    block = block_for(app, world, 1, 0, GENESIS_TIME + 5)
    path = tmp_path / "sign_state"
    key = world.keys[0]
    signer = Signer(key, CHAIN_ID, FileSignState(path), poi)
    unsigned = ProposalBlock(Proposal(Height(1), Round(0), -1, block.id, Timestamp(7), key.public_key,
                                      ZERO_SIGNATURE), block)
    signed = signer.sign_proposal(unsigned)
    assert signed.proposal.verify_signature(CHAIN_ID)
    # A restarted signer asked for another block at the same height/round hands back the stored one.
    other = block_for(app, world, 1, 0, GENESIS_TIME + 6)
    restarted = Signer(key, CHAIN_ID, FileSignState(path), poi)
    again = restarted.sign_proposal(ProposalBlock(unsigned.proposal.replace(block_id=other.id), other))
    assert again == signed
    assert restarted.last is not None and restarted.last.hrs == (1, 0, int(Step.PROPOSE))
    with pytest.raises(DoubleSignError):  # a prevote of round 0 comes after the proposal: allowed
        restarted.sign_vote(Vote(VoteType.PREVOTE, Height(0), Round(0), None, Timestamp(1), key.public_key,
                                 None, ZERO_SIGNATURE))


def test_file_sign_state_is_atomic_and_rejects_corruption(tmp_path: Path) -> None:
    path = tmp_path / "ss"
    fs = FileSignState(path)
    assert fs.load() is None
    rec = SignRecord(Height(4), Round(2), Step.PREVOTE, vote(VoteType.PREVOTE, 4, 2, None).encode())
    fs.save(rec)
    assert fs.load() == rec
    assert not (tmp_path / "ss.tmp").exists()
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(StorageError):
        fs.load()
