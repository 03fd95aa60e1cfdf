"""The state machine, one rule at a time: a machine under test, hand-fed events, signed by real keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consensus.actions import (
    Action,
    Broadcast,
    BuildBlock,
    CommitBlock,
    RaiseAlarm,
    ReportEvidence,
    ScheduleTimeout,
    Sign,
    ValidateBlock,
)
from consensus.commit import verify_commit
from consensus.events import (
    BlockBuilt,
    BlockValidated,
    CommitFetched,
    EvidenceReceived,
    NewHeight,
    ProposalReceived,
    Resume,
    TimeoutFired,
    VoteReceived,
    VotesFetched,
    decode_event,
    encode_event,
)
from consensus.evidence import validate_evidence
from consensus.params import Step
from consensus.proposer import ProposerPriorities
from consensus.signer import MemorySignState, Signer
from consensus.state import ConsensusState
from core.app import BlockTemplate, Verdict
from core.block import Block, ProposalBlock
from core.errors import DecodeError
from core.evidence import DuplicateProposal, DuplicateVote, WrongInference
from core.hashing import ZERO_HASH, sha256
from core.keys import PrivateKey
from core.types import Address, Hash32, Height, Round, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import ZERO_SIGNATURE, Commit, Proposal, Vote, VoteType
from tests.consensus.sim.app import StandInApp, honest_poi
from tests.consensus.sim.cluster import CHAIN_ID, GENESIS_TIME, SIM_PARAMS

pytestmark = pytest.mark.consensus

T0 = GENESIS_TIME + 1000


@dataclass
class World:
    keys: list[PrivateKey]
    validators: ValidatorSet

    def key_of(self, address: Address) -> PrivateKey:
        return next(k for k in self.keys if k.address == address)

    def others(self, me: PrivateKey) -> list[PrivateKey]:
        return [k for k in self.keys if k.address != me.address]


def make_world(powers: list[int]) -> World:
    keys = [PrivateKey.derive("t", "world", i) for i in range(len(powers))]
    return World(keys, ValidatorSet([ValidatorEntry(k.public_key, p) for k, p in zip(keys, powers, strict=True)]))


def block_for(app: StandInApp, world: World, height: int, round_: int, time: int,
              last_commit: Commit | None = None, proposer: Address | None = None) -> Block:
    return app.build_block(BlockTemplate(CHAIN_ID, Height(height), Round(round_), Timestamp(time),
                                         proposer or world.keys[0].address, ZERO_HASH, last_commit, ()), ())


def signed_vote(key: PrivateKey, t: VoteType, h: int, r: int, block_id: Hash32 | None, ts: int = T0) -> Vote:
    poi = honest_poi(h, key.address) if t == VoteType.PRECOMMIT else None
    return Vote(t, Height(h), Round(r), block_id, Timestamp(ts), key.public_key, poi,
                ZERO_SIGNATURE).signed(key, CHAIN_ID)


def signed_proposal(key: PrivateKey, block: Block, r: int, pol: int = -1) -> ProposalBlock:
    p = Proposal(block.height, Round(r), pol, block.id, Timestamp(T0), key.public_key, ZERO_SIGNATURE)
    return ProposalBlock(p.signed(key, CHAIN_ID), block)


class Harness:
    """One machine at height 1 with the stand-in app; `me` is a chosen validator."""

    def __init__(self, powers: list[int], *, me_is_proposer: bool) -> None:
        self.world = make_world(powers)
        self.prio = ProposerPriorities.genesis(self.world.validators)
        proposer = self.prio.proposer(0)
        self.proposer_key = self.world.key_of(proposer)
        self.me = self.proposer_key if me_is_proposer else self.world.others(self.proposer_key)[0]
        self.app = StandInApp(CHAIN_ID, self.world.validators, GENESIS_TIME)
        self.state = ConsensusState(CHAIN_ID, self.me.public_key, SIM_PARAMS)
        self.signer = Signer(self.me, CHAIN_ID, MemorySignState(), self.app.poi_commitment)
        self.now = T0

    def feed(self, event: object) -> list[Action]:
        assert decode_event(encode_event(event)) == event  # type: ignore[arg-type]  # every event is WAL-able
        return self.state.handle(event)  # type: ignore[arg-type]

    def start(self) -> list[Action]:
        vs = self.world.validators
        out = self.feed(NewHeight(Timestamp(self.now), Height(1), self.prio, vs.entries, (), ZERO_HASH,
                                  Timestamp(GENESIS_TIME), None))
        return out + self.feed(TimeoutFired(Timestamp(self.now), Height(1), Round(0), Step.COMMIT))

    def sign_and_feed(self, actions: list[Action]) -> list[Action]:
        """Do what the driver does with Sign actions (sign, feed back) and collect what follows."""
        out: list[Action] = []
        for a in actions:
            if isinstance(a, Sign):
                signed = self.signer.sign(a.message)
                ev = (VoteReceived(Timestamp(self.now), signed) if isinstance(signed, Vote)
                      else ProposalReceived(Timestamp(self.now), signed))
                out += self.sign_and_feed(self.feed(ev))
            else:
                out.append(a)
        return out

    def proposal(self, r: int = 0, time: int = T0, pol: int = -1, key: PrivateKey | None = None) -> ProposalBlock:
        key = key or self.world.key_of(self.prio.proposer(r))
        block = block_for(self.app, self.world, 1, r, time, proposer=key.address)
        return signed_proposal(key, block, r, pol)

    def votes(self, t: VoteType, r: int, block_id: Hash32 | None, keys: list[PrivateKey]) -> list[Action]:
        out: list[Action] = []
        for k in keys:
            out += self.sign_and_feed(self.feed(VoteReceived(Timestamp(self.now), signed_vote(k, t, 1, r, block_id))))
        return out


def only(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def signed_votes(actions: list[Action], t: VoteType) -> list[Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, Vote)
            and a.message.type == t]


def test_proposer_builds_from_a_template_and_signs_and_broadcasts_its_proposal() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=True)
    out = h.start()
    build = only(out, BuildBlock)
    assert len(build) == 1
    template = build[0].template
    assert template.time == T0 and template.last_commit is None and template.proposer == h.me.address
    block = h.app.build_block(template, ())
    out = h.sign_and_feed(h.feed(BlockBuilt(Timestamp(T0), Height(1), Round(0), block)))
    props = [a.message for a in out if isinstance(a, Broadcast) and isinstance(a.message, ProposalBlock)]
    assert len(props) == 1 and props[0].block == block and props[0].proposal.verify_signature(CHAIN_ID)
    # It trusts its own block: no validation, and it prevotes for it at once.
    assert not only(out, ValidateBlock)
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [block.id]


def test_template_time_is_after_the_last_block_even_if_the_clock_is_behind() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=True)
    h.now = GENESIS_TIME - 50
    template = only(h.start(), BuildBlock)[0].template
    assert template.time == GENESIS_TIME + 1


def test_validator_validates_then_prevotes_for_a_valid_proposal() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    out = h.feed(ProposalReceived(Timestamp(T0), pb))
    assert [a.block for a in only(out, ValidateBlock)] == [pb.block]
    assert not only(out, Sign)  # no prevote before the verdict
    out = h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, Verdict.valid())))
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [pb.block.id]


@pytest.mark.parametrize("verdict", [Verdict.invalid("bad tx", [0]), Verdict.local_fault("worker died")])
def test_invalid_or_unjudgeable_block_gets_a_nil_prevote(verdict: Verdict) -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    out = h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, verdict)))
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]
    assert bool(only(out, RaiseAlarm)) == (not verdict.bad_txs)


def test_block_time_too_far_ahead_of_the_local_clock_gets_a_nil_prevote() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal(time=T0 + SIM_PARAMS.max_clock_drift_ms + 1)
    out = h.sign_and_feed(h.feed(ProposalReceived(Timestamp(T0), pb)))
    assert not only(out, ValidateBlock)  # no need to re-execute it
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]


def test_proposal_from_someone_who_is_not_the_rounds_proposer_is_ignored() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    impostor = next(k for k in h.world.keys if k.address != h.prio.proposer(0))
    out = h.feed(ProposalReceived(Timestamp(T0), h.proposal(key=impostor)))
    assert out == []


def test_badly_signed_votes_do_not_count() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    others = h.world.others(h.me)
    for k in others:
        v = signed_vote(k, VoteType.PREVOTE, 1, 0, None)
        h.feed(VoteReceived(Timestamp(T0), v.replace(timestamp=Timestamp(T0 + 1))))
    assert not any(h.state.vote_bits(1, 0, VoteType.PREVOTE))


def test_timeouts_move_propose_to_prevote_nil_to_precommit_nil_to_next_round() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    out = h.start()
    assert any(isinstance(a, ScheduleTimeout) and a.step == Step.PROPOSE for a in out)
    out = h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PROPOSE)))
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]
    others = h.world.others(h.me)
    # 2f+1 prevotes for different things: the prevote timeout is scheduled, then precommit nil.
    out = h.votes(VoteType.PREVOTE, 0, sha256(b"x"), others[:1]) + h.votes(VoteType.PREVOTE, 0, None, others[1:2])
    timeouts = [a for a in out if isinstance(a, ScheduleTimeout)]
    assert [(t.step, t.duration_ms) for t in timeouts] == [(Step.PREVOTE, SIM_PARAMS.timeout_prevote_ms)]
    out = h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PREVOTE)))
    assert [v.block_id for v in signed_votes(out, VoteType.PRECOMMIT)] == [None]
    out = h.votes(VoteType.PRECOMMIT, 0, sha256(b"x"), others[:2])
    assert any(isinstance(a, ScheduleTimeout) and a.step == Step.PRECOMMIT for a in out)
    out = h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PRECOMMIT))
    assert h.state.round == 1
    # Round 1 timeouts are longer.
    t1 = [a for a in out if isinstance(a, ScheduleTimeout) and a.step == Step.PROPOSE]
    assert t1 and t1[0].duration_ms == SIM_PARAMS.timeout_propose_ms + SIM_PARAMS.timeout_propose_delta_ms


def test_stale_timeouts_are_ignored() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    assert h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(3), Step.PROPOSE)) == []
    assert h.feed(TimeoutFired(Timestamp(T0), Height(7), Round(0), Step.PROPOSE)) == []


def test_polka_locks_and_precommits_then_quorum_commits_with_nil_precommits_kept() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, Verdict.valid())))
    others = h.world.others(h.me)
    out = h.votes(VoteType.PREVOTE, 0, pb.block.id, others[:2])
    assert [v.block_id for v in signed_votes(out, VoteType.PRECOMMIT)] == [pb.block.id]
    assert h.state.locked == (0, pb.block.id)
    out = h.votes(VoteType.PRECOMMIT, 0, None, others[2:3]) + h.votes(VoteType.PRECOMMIT, 0, pb.block.id, others[:2])
    commits = only(out, CommitBlock)
    assert len(commits) == 1
    commit = commits[0].commit
    assert commits[0].block == pb.block
    assert len(commit.precommits) == 4 and sum(v.block_id is None for v in commit.precommits) == 1
    assert verify_commit(h.world.validators, pb.block.id, commit, CHAIN_ID) == 3
    assert all(v.poi == honest_poi(1, v.validator_address) for v in commit.precommits)
    assert commits[0].next_proposers == h.prio.advance(h.world.validators)


def test_locked_validator_prevotes_nil_on_a_new_value_but_follows_a_later_polka() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    others = h.world.others(h.me)
    pb0 = h.proposal(0)
    h.feed(ProposalReceived(Timestamp(T0), pb0))
    h.sign_and_feed(h.feed(BlockValidated.of(T0, pb0.block.id, Verdict.valid())))
    h.votes(VoteType.PREVOTE, 0, pb0.block.id, others[:2])
    assert h.state.locked == (0, pb0.block.id)
    h.votes(VoteType.PRECOMMIT, 0, None, others)
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(0), Step.PRECOMMIT)))
    assert h.state.round == 1
    # Round 1 proposes another block without a proof of lock: nil.
    pb1 = h.proposal(1, time=T0 + 1)
    assert h.prio.proposer(1) != h.me.address, "the harness must not make us the round 1 proposer"
    h.feed(ProposalReceived(Timestamp(T0), pb1))
    out = h.sign_and_feed(h.feed(BlockValidated.of(T0, pb1.block.id, Verdict.valid())))
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]
    # We time out to precommit nil; only then does the others' polka on pb1 reach us.
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(1), Step.PREVOTE)))
    h.votes(VoteType.PREVOTE, 1, pb1.block.id, others)
    assert h.state.locked == (0, pb0.block.id)  # past the prevote step: valid value only, no re-lock
    assert h.state._valid_round == 1
    h.votes(VoteType.PRECOMMIT, 1, None, others)
    h.sign_and_feed(h.feed(TimeoutFired(Timestamp(T0), Height(1), Round(1), Step.PRECOMMIT)))
    proposer2 = h.world.key_of(h.prio.proposer(2))
    assert proposer2.address != h.me.address, "the harness must not make us the round 2 proposer"
    out = h.sign_and_feed(h.feed(ProposalReceived(Timestamp(T0), signed_proposal(proposer2, pb1.block, 2, 1))))
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [pb1.block.id]


def test_f_plus_one_votes_of_a_later_round_make_the_node_skip_ahead() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    others = h.world.others(h.me)
    h.votes(VoteType.PREVOTE, 5, None, others[:1])
    assert h.state.round == 0
    h.votes(VoteType.PRECOMMIT, 5, None, others[1:2])
    assert h.state.round == 5


def test_conflicting_votes_become_duplicate_vote_evidence_and_both_count() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    bad = h.world.others(h.me)[0]
    a = signed_vote(bad, VoteType.PREVOTE, 1, 0, sha256(b"a"))
    b = signed_vote(bad, VoteType.PREVOTE, 1, 0, sha256(b"b"))
    assert h.feed(VoteReceived(Timestamp(T0), a)) == []
    out = h.feed(VoteReceived(Timestamp(T0), b))
    ev = [x.evidence for x in only(out, ReportEvidence)]
    assert len(ev) == 1 and isinstance(ev[0], DuplicateVote)
    validate_evidence(ev[0], CHAIN_ID, 1, 10)
    assert {ev[0].vote_a, ev[0].vote_b} == {a, b}
    # The same offence again (re-gossiped evidence) is not reported twice.
    assert only(h.feed(EvidenceReceived(Timestamp(T0), ev[0])), ReportEvidence) == []


def test_evidence_delivers_the_twin_vote_a_polka_rests_on() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, Verdict.valid())))
    others = h.world.others(h.me)
    bad, good = others[0], others[1]
    nil_twin = signed_vote(bad, VoteType.PREVOTE, 1, 0, None)
    for_block = signed_vote(bad, VoteType.PREVOTE, 1, 0, pb.block.id)
    h.feed(VoteReceived(Timestamp(T0), nil_twin))
    h.votes(VoteType.PREVOTE, 0, pb.block.id, [good])
    assert h.state.locked == (-1, None)  # we, good: 2 of 4 for the block
    out = h.sign_and_feed(h.feed(EvidenceReceived(Timestamp(T0), DuplicateVote(*sorted(
        [nil_twin, for_block], key=lambda v: v.encode())))))
    assert h.state.locked == (0, pb.block.id)
    assert [v.block_id for v in signed_votes(out, VoteType.PRECOMMIT)] == [pb.block.id]


def test_conflicting_proposals_become_duplicate_proposal_evidence() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    a, b = h.proposal(time=T0), h.proposal(time=T0 + 1)
    h.feed(ProposalReceived(Timestamp(T0), a))
    out = h.feed(ProposalReceived(Timestamp(T0), b))
    ev = [x.evidence for x in only(out, ReportEvidence)]
    assert len(ev) == 1 and isinstance(ev[0], DuplicateProposal)
    validate_evidence(ev[0], CHAIN_ID, 1, 10)
    # The twin block is validated too: the others may polka on it.
    assert [x.block.id for x in only(out, ValidateBlock)] == [b.block.id]


def test_wrong_exact_output_becomes_wrong_inference_evidence() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    liar = StandInApp(CHAIN_ID, h.world.validators, GENESIS_TIME, bad_outputs=True)
    key = h.world.key_of(h.prio.proposer(0))
    template = BlockTemplate(CHAIN_ID, Height(1), Round(0), Timestamp(T0), key.address, ZERO_HASH, None, ())
    # Height 1 carries one transaction in the stand-in app.
    block = liar.build_block(template, ())
    assert block.txs
    pb = signed_proposal(key, block, 0)
    h.feed(ProposalReceived(Timestamp(T0), pb))
    verdict = h.app.validate_block(block)
    assert verdict.wrong_outputs == (0,)
    out = h.sign_and_feed(h.feed(BlockValidated.of(T0, block.id, verdict)))
    ev = [x.evidence for x in only(out, ReportEvidence)]
    assert len(ev) == 1 and isinstance(ev[0], WrongInference)
    validate_evidence(ev[0], CHAIN_ID, 1, 10)
    assert h.app.is_valid_evidence(ev[0])
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]


def test_catch_up_bits_and_serving_missing_votes() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    others = h.world.others(h.me)
    h.votes(VoteType.PREVOTE, 0, None, others[:2])
    bits = h.state.vote_bits(1, 0, VoteType.PREVOTE)
    held = {h.world.validators.index_of(k.address) for k in others[:2]}
    assert {i for i in range(4) if bits[0] >> i & 1} == held
    served = h.state.votes_for_peer(1, 0, VoteType.PREVOTE, bytes([1 << min(held)]))
    assert len(served) == 1
    queries = h.state.catch_up_queries()
    assert any(q.round == 0 and q.type == VoteType.PREVOTE and q.have == bits for q in queries)
    # A peer's answer fills the gap in one event.
    votes = tuple(signed_vote(k, VoteType.PREVOTE, 1, 0, None) for k in others)
    h.sign_and_feed(h.feed(VotesFetched(Timestamp(T0), votes)))
    expected = sum(1 << h.world.validators.index_of(k.address) for k in others)
    assert h.state.vote_bits(1, 0, VoteType.PREVOTE)[0] == expected


def test_commit_fetched_from_a_peer_decides_without_the_proposal() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    precommits = tuple(sorted((signed_vote(k, VoteType.PRECOMMIT, 1, 0, pb.block.id) for k in h.world.keys[:3]),
                              key=lambda v: v.validator_address))
    commit = Commit(Height(1), Round(0), pb.block.id, precommits)
    out = h.feed(CommitFetched(Timestamp(T0), pb.block, commit))
    assert [c.block for c in only(out, CommitBlock)] == [pb.block]


def test_an_own_precommit_handed_back_by_the_signer_locks_its_block() -> None:
    """After a crash the signer may return the precommit it signed before; the machine acts on it."""
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    h.sign_and_feed(h.feed(BlockValidated.of(T0, pb.block.id, Verdict.valid())))  # our prevote
    assert h.state.step == Step.PREVOTE and h.state.locked == (-1, None)
    stored = h.signer.sign_vote(Vote(VoteType.PRECOMMIT, Height(1), Round(0), pb.block.id, Timestamp(T0),
                                     h.me.public_key, None, ZERO_SIGNATURE))
    out = h.feed(VoteReceived(Timestamp(T0), stored))
    assert h.state.locked == (0, pb.block.id) and h.state.step == Step.PRECOMMIT
    assert [a.message for a in only(out, Broadcast)] == [stored]


def test_resume_reissues_outstanding_work() -> None:
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    pb = h.proposal()
    h.feed(ProposalReceived(Timestamp(T0), pb))
    out = h.feed(Resume(Timestamp(T0)))
    assert [a.block for a in only(out, ValidateBlock)] == [pb.block]
    assert any(isinstance(a, ScheduleTimeout) and a.step == Step.PROPOSE for a in out)


def test_verify_commit_rejects_short_forged_or_foreign_commits() -> None:
    from core.errors import InvalidBlock

    world = make_world([1, 1, 1, 1])
    bid = sha256(b"block")
    votes = sorted((signed_vote(k, VoteType.PRECOMMIT, 1, 0, bid) for k in world.keys),
                   key=lambda v: v.validator_address)
    good = Commit(Height(1), Round(0), bid, tuple(votes))
    assert verify_commit(world.validators, bid, good, CHAIN_ID) == 4
    with pytest.raises(InvalidBlock):  # two of four is not more than two thirds
        verify_commit(world.validators, bid, good.replace(precommits=tuple(votes[:2])), CHAIN_ID)
    with pytest.raises(InvalidBlock):
        verify_commit(world.validators, sha256(b"other"), good, CHAIN_ID)
    with pytest.raises(InvalidBlock):
        forged = votes[0].replace(poi=sha256(b"changed answer"))
        verify_commit(world.validators, bid, good.replace(precommits=(forged, *votes[1:])), CHAIN_ID)
    with pytest.raises(InvalidBlock):
        verify_commit(world.validators, bid, good, "another-chain")
    stranger = PrivateKey.derive("t", "stranger", 0)
    with pytest.raises(InvalidBlock):
        verify_commit(world.validators, bid, good.replace(
            precommits=(*votes, signed_vote(stranger, VoteType.PRECOMMIT, 1, 0, bid))), CHAIN_ID)


def test_each_machine_owns_its_validator_sets_and_reuses_them_from_height_to_height() -> None:
    """Two machines in one process share no cached set; one machine does not rebuild a set that recurs."""
    a = Harness([1, 1, 1, 1], me_is_proposer=True)
    b = Harness([1, 1, 1, 1], me_is_proposer=False)
    a.start()
    b.start()
    assert a.state.validators == b.state.validators
    assert a.state.validators is not b.state.validators
    first = a.state.validators
    vs = a.world.validators
    a.feed(NewHeight(Timestamp(a.now + 1), Height(2), a.prio, vs.entries, vs.entries, ZERO_HASH,
                     Timestamp(T0), None))
    assert a.state.height == 2
    assert a.state.validators is first


def test_evidence_against_a_validator_that_has_left_the_set_is_still_pooled() -> None:
    """Issue 9.6: an offence committed while in the set stays punishable after the offender leaves it; a
    key this machine never saw in a set within the evidence window is not pooled."""
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    leaver = h.world.others(h.me)[0]
    remaining = ValidatorSet([e for e in h.world.validators if e.address != leaver.address])
    h.feed(NewHeight(Timestamp(T0), Height(2), ProposerPriorities.genesis(h.world.validators), remaining.entries,
                     h.world.validators.entries, sha256(b"block 1"), Timestamp(T0), None))
    h.feed(NewHeight(Timestamp(T0), Height(3), ProposerPriorities.genesis(remaining), remaining.entries,
                     remaining.entries, sha256(b"block 2"), Timestamp(T0 + 1), None))
    assert leaver.address not in h.state.validators
    twins = [signed_vote(leaver, VoteType.PREVOTE, 1, 0, sha256(x)) for x in (b"a", b"b")]
    evidence = DuplicateVote(*sorted(twins, key=lambda v: v.encode()))
    out = h.feed(EvidenceReceived(Timestamp(T0), evidence))
    assert [a.evidence for a in only(out, ReportEvidence)] == [evidence]
    assert h.state.knows_evidence(evidence)
    assert h.state.pending_evidence() == (evidence,)
    stranger = PrivateKey.derive("t", "stranger", 0)
    twins = [signed_vote(stranger, VoteType.PREVOTE, 1, 0, sha256(x)) for x in (b"a", b"b")]
    assert only(h.feed(EvidenceReceived(Timestamp(T0), DuplicateVote(*sorted(twins, key=lambda v: v.encode())))),
                ReportEvidence) == []


def test_a_proposal_whose_header_names_another_validator_is_refused_before_validation() -> None:
    """Issue 9.5: the round's proposer signs a block whose header names someone else (to credit its fees
    elsewhere, or to spread 'disagreements' over several names): no ValidateBlock, a nil prevote."""
    h = Harness([1, 1, 1, 1], me_is_proposer=False)
    h.start()
    proposer = h.world.key_of(h.prio.proposer(0))
    other = h.world.others(proposer)[0]
    block = block_for(h.app, h.world, 1, 0, T0, proposer=other.address)
    out = h.sign_and_feed(h.feed(ProposalReceived(Timestamp(T0), signed_proposal(proposer, block, 0))))
    assert only(out, ValidateBlock) == []
    assert [v.block_id for v in signed_votes(out, VoteType.PREVOTE)] == [None]
    assert "not the proposer of its round 0" in (h.state._block_problem[block.id] or "")
    # A fresh proposal carrying a block built in another round is dropped outright (by the machine, and by
    # the wire: such a ProposalBlock does not decode, so it never reaches the WAL from gossip).
    later = signed_proposal(proposer, block_for(h.app, h.world, 1, 1, T0, proposer=h.prio.proposer(1)), 0)
    assert h.state.handle(ProposalReceived(Timestamp(T0), later)) == []
    with pytest.raises(DecodeError, match="carries a block built in round 1"):
        ProposalBlock.decode(later.encode())
