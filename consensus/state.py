"""The Tendermint state machine (arXiv 1807.04938), pure: `handle(event) -> actions`.

No clock, network, disk or randomness inside: time arrives as `event.now`, validator sets and proposer
priorities arrive in NewHeight, and everything the machine wants done comes back as actions for the driver
(node/driver.py in the node, tests/consensus/sim in the simulator). See docs/consensus.md for the contract.
Comments `L22` etc. name the lines of Algorithm 1 in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    Event,
    EvidenceReceived,
    NewHeight,
    ProposalReceived,
    Resume,
    TimeoutFired,
    VoteReceived,
    VotesFetched,
)
from consensus.evidence import EvidencePool, validate_block_evidence, validate_evidence
from consensus.params import ConsensusParams, Step
from consensus.proposer import ProposerPriorities
from consensus.voteset import Added, VoteSet
from core.app import BlockTemplate, Verdict, VerdictKind
from core.block import Block, ProposalBlock
from core.errors import InvalidBlock, InvalidEvidence, RemoteError
from core.evidence import (
    DuplicateVote,
    Evidence,
    WrongInference,
    duplicate_proposal,
    duplicate_vote,
    evidence_height,
    offence_id,
)
from core.header import HeaderRules, is_build_round_ok, validate_header
from core.keys import verify
from core.merkle import merkle_proof
from core.types import Address, Hash32, Height, PublicKeyBytes, Round, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import ZERO_SIGNATURE, Commit, Proposal, Vote, VoteType

# verify(public_key, message, signature) -> bool (core.keys.verify by default).
Verifier = Callable[[bytes, bytes, bytes], bool]
# Signed message -> signature valid; each vote or proposal is verified once however often it arrives. The node
# may share one across its services (and the simulator across its nodes: the answer is the same everywhere).
SignatureCache = dict[object, bool]
# Block -> None, raising InvalidBlock unless the header's hashes match the body (Block.validate_basic by default).
# A full block takes tens of milliseconds; the node injects one that answers from blocks it already checked
# off the event loop, the way it shares its vote verifier.
BlockChecker = Callable[[Block], None]
SIGNATURE_CACHE_LIMIT = 100_000


class _ValidatorSets:
    """The validator sets one machine has seen, with each set's member map; owned by one ConsensusState.

    Sets recur from height to height (a height names its set, the next and the last, mostly the same one):
    building a set hashes every key, and the member map (public key -> (address, power)) lets a vote be
    placed without hashing. Keeps the last few of each, per instance, so machines in one process share
    nothing.
    """

    __slots__ = ("_members", "_sets")
    LIMIT = 8

    def __init__(self) -> None:
        self._sets: dict[tuple[ValidatorEntry, ...], ValidatorSet] = {}
        self._members: dict[Hash32, dict[bytes, tuple[Address, int]]] = {}

    def validator_set(self, entries: tuple[ValidatorEntry, ...]) -> ValidatorSet:
        vs = self._sets.get(entries)
        if vs is None:
            if len(self._sets) >= self.LIMIT:
                self._sets.clear()
            vs = self._sets[entries] = ValidatorSet(entries)
        return vs

    def members(self, vs: ValidatorSet) -> dict[bytes, tuple[Address, int]]:
        m = self._members.get(vs.hash)
        if m is None:
            if len(self._members) >= self.LIMIT:
                self._members.clear()
            m = self._members[vs.hash] = {bytes(e.public_key): (e.address, int(e.power)) for e in vs}
        return m


# Messages for rounds further ahead than this are dropped (bounds memory against a flooding validator).
MAX_ROUND_AHEAD = 1000
# Proposals further ahead than this are dropped (finding their proposer costs O(round)).
MAX_PROPOSAL_ROUND_AHEAD = 64


@dataclass(frozen=True, slots=True)
class VoteQuery:
    """A catch-up query: the votes of (height, round, type) this node lacks; `have` is the p2p bitset
    (bit i = validator i of the height's set in address order, byte i//8, bit i%8 from the low end)."""

    height: Height
    round: Round
    type: VoteType
    have: bytes


class ConsensusState:
    """One validator's (or an observer's, with `me=None`) view of consensus. Feed it events, one at a time."""

    # Set by the first NewHeight; nothing reads them before (every handler checks `_started`).
    _proposers: ProposerPriorities
    _proposer_cache: list[Address]
    _vs: ValidatorSet
    _members: dict[bytes, tuple[Address, int]]
    _addresses: tuple[Address, ...]
    _last_members: dict[bytes, tuple[Address, int]]
    _next_vs: ValidatorSet
    _last_vs: ValidatorSet | None
    _last_block_id: Hash32
    _last_block_time: Timestamp

    def __init__(self, chain_id: str, me: PublicKeyBytes | None, params: ConsensusParams | None = None, *,
                 verifier: Verifier = verify, signature_cache: SignatureCache | None = None,
                 block_checker: BlockChecker | None = None) -> None:
        self.chain_id = chain_id
        self.me = me
        self.params = params or ConsensusParams()
        self._verify = verifier
        self._validate_block_basic: BlockChecker = Block.validate_basic if block_checker is None else block_checker
        self._sig_cache: SignatureCache = {} if signature_cache is None else signature_cache
        self._pool = EvidencePool(self.params.max_evidence_age)
        # Public key -> the latest height whose set this machine saw it in, for the evidence window: evidence
        # against a validator that has left the set since its offence is still taken (the application
        # decides membership at the offence height from its state; this is the machine's cheap guard).
        self._member_heights: dict[bytes, int] = {}
        self._known_sets = _ValidatorSets()
        self._future: list[ProposalReceived | VoteReceived] = []
        self._started = False  # a NewHeight was handled
        self._last_now = 0
        self._height = Height(0)
        self._last_round = -1
        self._last_precommits: VoteSet | None = None
        self._reset_height()
        self._me_address: Address | None = None
        if me is not None:
            from core.address import address_from_public_key

            self._me_address = address_from_public_key(me)

    # ------------------------------------------------------------------------------------------ queries

    @property
    def height(self) -> Height:
        return self._height

    @property
    def round(self) -> Round:
        return Round(self._round)

    @property
    def step(self) -> Step:
        return self._step

    @property
    def locked(self) -> tuple[int, Hash32 | None]:
        return self._locked_round, self._locked_id

    @property
    def validators(self) -> ValidatorSet:
        return self._vs

    def proposer(self, round_: int) -> Address:
        while len(self._proposer_cache) <= round_:
            more = max(8, len(self._proposer_cache))
            self._proposer_cache = self._proposers.proposers(len(self._proposer_cache) + more, self._addresses)
        return self._proposer_cache[round_]

    def knows_evidence(self, evidence: Evidence) -> bool:
        """Its offence (`core.evidence.offence_id`) is already pending or committed here: a copy needs no check."""
        return self._pool.knows(evidence)

    def pending_evidence(self) -> tuple[Evidence, ...]:
        return self._pool.pending(self.params.max_block_evidence, int(self._height))

    def vote_bits(self, height: int, round_: int, vote_type: VoteType) -> bytes:
        """The `have` bitset of the votes held for (height, round, type)."""
        vs = self._set_for(height, round_, vote_type)
        return vs.bits() if vs is not None else b""

    def votes_for_peer(self, height: int, round_: int, vote_type: VoteType, have: bytes) -> tuple[Vote, ...]:
        """Serve a peer's catch-up query: the held votes of (height, round, type) whose bit is not set."""
        vs = self._set_for(height, round_, vote_type)
        return vs.missing_from(have) if vs is not None else ()

    def catch_up_queries(self) -> tuple[VoteQuery, ...]:
        """What to ask a peer for now (call periodically; answers come back as VotesFetched)."""
        if not self._started:
            return ()
        h = self._height
        wanted: list[tuple[int, int, VoteType]] = []
        if self._last_precommits is not None and self._last_round >= 0 and (
                not self._round_started or self._decided is not None):
            wanted.append((h - 1, self._last_round, VoteType.PRECOMMIT))
        if self._decided is None:
            r = self._round
            wanted += [(h, r, VoteType.PREVOTE), (h, r, VoteType.PRECOMMIT),
                       (h, r + 1, VoteType.PREVOTE), (h, r + 1, VoteType.PRECOMMIT)]
            prop = self._proposals.get(r)
            if prop is not None and prop.proposal.pol_round >= 0:
                wanted.append((h, int(prop.proposal.pol_round), VoteType.PREVOTE))
            # Earlier rounds where some block has precommits but we hold no quorum: a commit may hide there.
            for pr in sorted(self._precommits, reverse=True)[:4]:
                if pr < r and any(b is not None for b in self._precommits[pr].by_block):
                    wanted.append((h, pr, VoteType.PRECOMMIT))
        out: list[VoteQuery] = []
        seen: set[tuple[int, int, VoteType]] = set()
        for hh, rr, tt in wanted:
            if (hh, rr, tt) in seen or rr > Round.MAX:
                continue
            seen.add((hh, rr, tt))
            out.append(VoteQuery(Height(hh), Round(rr), tt, self.vote_bits(hh, rr, tt)))
        return tuple(out)

    def _set_for(self, height: int, round_: int, vote_type: VoteType) -> VoteSet | None:
        if not self._started:
            return None
        if height == self._height:
            sets = self._prevotes if vote_type == VoteType.PREVOTE else self._precommits
            return sets.get(round_)
        if height == self._height - 1 and vote_type == VoteType.PRECOMMIT and round_ == self._last_round:
            return self._last_precommits
        return None

    # ------------------------------------------------------------------------------------------ handle

    def handle(self, event: Event) -> list[Action]:
        """Apply one input; return the actions to perform, in order."""
        out: list[Action] = []
        self._last_now = int(event.now)
        if isinstance(event, NewHeight):
            self._on_new_height(event, out)
            return out
        if not self._started:
            return out  # nothing to do before the first NewHeight
        if isinstance(event, VoteReceived):
            self._on_vote(event.vote, event.now, out)
        elif isinstance(event, VotesFetched):
            for vote in event.votes:
                self._on_vote(vote, event.now, out)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.proposal_block, event.now, out)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event, out)
        elif isinstance(event, BlockBuilt):
            self._on_block_built(event, out)
        elif isinstance(event, BlockValidated):
            self._on_block_validated(event, out)
        elif isinstance(event, EvidenceReceived):
            self._on_evidence(event.evidence, out)
        elif isinstance(event, CommitFetched):
            self._on_commit_fetched(event, out)
        elif isinstance(event, Resume):
            self._on_resume(event.now, out)
        self._progress(event.now, out)
        return out

    # ------------------------------------------------------------------------------------------ heights

    def _reset_height(self) -> None:
        self._round = 0
        self._step = Step.COMMIT
        self._round_started = False
        self._locked_round = -1
        self._locked_id: Hash32 | None = None
        self._valid_round = -1
        self._valid_id: Hash32 | None = None
        self._blocks: dict[Hash32, Block] = {}
        self._block_problem: dict[Hash32, str | None] = {}  # None: structurally fine
        self._timely: set[Hash32] = set()  # block time within the drift of some receipt's clock
        self._verdicts: dict[Hash32, Verdict] = {}
        self._validating: set[Hash32] = set()
        self._proposals: dict[int, ProposalBlock] = {}  # the first proposal of each round
        self._twins: dict[int, ProposalBlock] = {}  # a conflicting second one (equivocating proposer)
        self._prevotes: dict[int, VoteSet] = {}
        self._precommits: dict[int, VoteSet] = {}
        self._round_power: dict[int, dict[Address, int]] = {}
        self._done: set[tuple[int, str]] = set()  # "for the first time" rules already fired
        self._scheduled: dict[tuple[int, Step], int] = {}
        self._pending_sign: dict[tuple[int, Step], Vote | ProposalBlock] = {}
        self._building: int | None = None  # round of an outstanding BuildBlock
        self._built: set[Hash32] = set()
        self._decided: Block | None = None
        self._decided_id: Hash32 | None = None
        self._decided_round = -1

    def _on_new_height(self, ev: NewHeight, out: list[Action]) -> None:
        if self._started and ev.height < self._height:
            return
        prev_precommits = None
        prev_round = -1
        prev_id = self._decided_id
        if self._started and self._decided is not None and ev.height == self._height + 1:
            prev_round = self._decided_round
            prev_precommits = self._precommits.get(prev_round)
        self._height = ev.height
        self._reset_height()
        self._started = True
        self._proposers = ev.proposers
        self._vs = self._known_sets.validator_set(ev.proposers.validators)
        self._members = self._known_sets.members(self._vs)
        self._addresses = tuple(self._members[bytes(e.public_key)][0] for e in ev.proposers.validators)
        self._proposer_cache = []
        self._next_vs = self._known_sets.validator_set(ev.next_validators) if ev.next_validators else self._vs
        self._last_vs = self._known_sets.validator_set(ev.last_validators) if ev.last_validators else None
        self._last_members = self._known_sets.members(self._last_vs) if self._last_vs is not None else {}
        self._last_block_id = ev.last_block_id
        self._last_block_time = ev.last_block_time
        self._last_round = -1
        self._last_precommits = None
        if prev_precommits is not None and ev.last_block_id == prev_id:
            self._last_round = prev_round
            self._last_precommits = prev_precommits
        elif ev.last_commit is not None and self._last_vs is not None:
            self._last_round = int(ev.last_commit.round)
            self._last_precommits = VoteSet(self._last_vs)
            for vote in ev.last_commit.precommits:
                member = self._last_members.get(bytes(vote.validator))
                if member is not None:
                    self._last_precommits.add(vote, *member)
        self._pool.prune(int(ev.height))
        self._note_members(int(ev.height))
        self._wait_for_round_zero(int(ev.now), out)
        buffered, self._future = self._future, []
        for item in buffered:
            if isinstance(item, VoteReceived) and item.vote.height == ev.height:
                self._on_vote(item.vote, item.now, out)
            elif isinstance(item, ProposalReceived) and item.proposal_block.proposal.height == ev.height:
                self._on_proposal(item.proposal_block, item.now, out)
        self._progress(ev.now, out)

    def _wait_for_round_zero(self, now: int, out: list[Action]) -> None:
        """After a commit: wait `timeout_commit` for the last height's missing precommits (PoI answers, the
        proposer's bonus). With none missing (or no last height) only `next_block_delay` since the last block's
        time is left, and round 0 starts at once when that has passed (CometBFT's skip_timeout_commit)."""
        if not self._last_precommits_complete():
            self._schedule(0, Step.COMMIT, out)
            return
        wait = self._last_block_time + self.params.next_block_delay_ms - now
        wait = min(wait, self.params.timeout_commit_ms)
        if wait <= 0:
            self._start_round(0, now, out)
        else:
            self._schedule(0, Step.COMMIT, out, wait)

    def _last_precommits_complete(self) -> bool:
        """Whether every validator of the last height has a precommit here (vacuously at height 1)."""
        if self._height == 1:
            return True
        lp = self._last_precommits
        return lp is not None and lp.power >= lp.validators.total_power

    def _note_members(self, height: int) -> None:
        for key in self._last_members:
            self._member_heights[key] = max(self._member_heights.get(key, 0), height - 1)
        for key in self._members:
            self._member_heights[key] = height
        oldest = height - self.params.max_evidence_age
        for key in [k for k, h in self._member_heights.items() if h < oldest]:
            del self._member_heights[key]

    def _start_round(self, r: int, now: int, out: list[Action]) -> None:
        """StartRound(r) (L11)."""
        self._round = r
        self._step = Step.PROPOSE
        self._round_started = True
        self._schedule(r, Step.PROPOSE, out)
        if self._me_address is not None and self.proposer(r) == self._me_address:
            if self._valid_id is not None:
                self._sign_proposal(r, self._valid_round, self._blocks[self._valid_id], self._valid_id, now, out)
            else:
                self._building = r
                out.append(BuildBlock(self._template(r, now)))

    def _template(self, r: int, now: int) -> BlockTemplate:
        assert self._me_address is not None
        return BlockTemplate(
            chain_id=self.chain_id,
            height=self._height,
            round=Round(r),
            time=Timestamp(max(now, self._last_block_time + 1)),
            proposer=self._me_address,
            last_block_id=self._last_block_id,
            last_commit=self._last_commit(),
            evidence=self.pending_evidence(),
        )

    def _last_commit(self) -> Commit | None:
        if self._height <= 1 or self._last_precommits is None:
            return None
        return Commit(Height(self._height - 1), Round(self._last_round), self._last_block_id,
                      self._last_precommits.commit_votes(self._last_block_id))

    def _schedule(self, r: int, step: Step, out: list[Action], ms: int | None = None) -> None:
        ms = self.params.timeout_ms(step, r) if ms is None else ms
        self._scheduled[(r, step)] = ms
        out.append(ScheduleTimeout(self._height, Round(r), step, ms))

    # ------------------------------------------------------------------------------------------ signing

    def _sign_proposal(self, r: int, pol_round: int, block: Block, bid: Hash32, now: int,
                       out: list[Action]) -> None:
        assert self.me is not None
        proposal = Proposal(self._height, Round(r), pol_round, bid, Timestamp(now), self.me, ZERO_SIGNATURE)
        pb = ProposalBlock(proposal, block)
        self._pending_sign[(r, Step.PROPOSE)] = pb
        out.append(Sign(pb))

    def _cast(self, vote_type: VoteType, block_id: Hash32 | None, now: int, out: list[Action]) -> None:
        """Ask the signer for our vote; the step changes now, the vote counts when it comes back signed."""
        if self.me is None or bytes(self.me) not in self._members:
            return
        vote = Vote(vote_type, self._height, Round(self._round), block_id, Timestamp(now), self.me, None,
                    ZERO_SIGNATURE)
        step = Step.PREVOTE if vote_type == VoteType.PREVOTE else Step.PRECOMMIT
        self._pending_sign[(self._round, step)] = vote
        out.append(Sign(vote))

    def _prevote(self, block_id: Hash32 | None, now: int, out: list[Action]) -> None:
        self._cast(VoteType.PREVOTE, block_id, now, out)
        self._step = Step.PREVOTE

    def _precommit(self, block_id: Hash32 | None, now: int, out: list[Action]) -> None:
        self._cast(VoteType.PRECOMMIT, block_id, now, out)
        self._step = Step.PRECOMMIT

    # ------------------------------------------------------------------------------------------ inputs

    def _buffer_future(self, item: ProposalReceived | VoteReceived) -> None:
        if len(self._future) < self.params.future_buffer:
            self._future.append(item)

    def _on_vote(self, vote: Vote, now: int, out: list[Action]) -> None:
        if vote.height == self._height + 1:
            self._buffer_future(VoteReceived(Timestamp(now), vote))
            return
        if vote.height == self._height - 1:
            self._on_last_precommit(vote, out)
            return
        if vote.height != self._height or vote.round > self._round + MAX_ROUND_AHEAD:
            return
        member = self._members.get(bytes(vote.validator))
        if member is None or (vote.type == VoteType.PREVOTE and vote.poi is not None):
            return
        if not self._signature_ok(vote):
            return
        address, power = member
        sets = self._prevotes if vote.type == VoteType.PREVOTE else self._precommits
        vs = sets.get(vote.round)
        if vs is None:
            vs = sets[vote.round] = VoteSet(self._vs)
        added, held = vs.add(vote, address, power)
        if added is Added.CONFLICT and held is not None:
            self._add_evidence(duplicate_vote(held, vote), out)  # the twin still counts toward its id
        if added is not Added.NEW:
            return
        self._round_power.setdefault(vote.round, {})[address] = power
        if vote.validator == self.me:
            self._adopt_own_vote(vote)
            out.append(Broadcast(vote))

    def _adopt_own_vote(self, vote: Vote) -> None:
        """Our own signed vote came back. Normally it is the one we asked for; after a crash the signer may
        hand back the vote it signed before (same height/round/step), and we act as if we had cast it: a
        precommit for a block locks it, and the round's step does not fall behind the vote."""
        step = Step.PREVOTE if vote.type == VoteType.PREVOTE else Step.PRECOMMIT
        self._pending_sign.pop((int(vote.round), step), None)
        if vote.type == VoteType.PRECOMMIT and vote.block_id is not None and vote.round > self._locked_round:
            self._locked_round, self._locked_id = int(vote.round), vote.block_id
        if vote.round == self._round and self._round_started and self._decided is None and self._step < step:
            self._step = step

    def _on_last_precommit(self, vote: Vote, out: list[Action]) -> None:
        """A late precommit of the previous height: more PoI answers for the last commit."""
        lp, vs = self._last_precommits, self._last_vs
        if lp is None or vs is None or vote.type != VoteType.PRECOMMIT or vote.round != self._last_round:
            return
        member = self._last_members.get(bytes(vote.validator))
        if member is None or not self._signature_ok(vote):
            return
        added, held = lp.add(vote, *member)
        if added is Added.CONFLICT and held is not None:
            self._add_evidence(duplicate_vote(held, vote), out)
        elif added is Added.NEW and not self._round_started and self._last_precommits_complete():
            self._wait_for_round_zero(int(self._last_now), out)  # the last one came in: no more to gather

    def _on_proposal(self, pb: ProposalBlock, now: int, out: list[Action]) -> None:
        p = pb.proposal
        if p.height == self._height + 1:
            self._buffer_future(ProposalReceived(Timestamp(now), pb))
            return
        if p.height != self._height or p.round > self._round + MAX_PROPOSAL_ROUND_AHEAD:
            return
        if pb.block.height != p.height or not -1 <= p.pol_round < p.round:
            return
        if not is_build_round_ok(int(pb.block.header.round), int(p.round), int(p.pol_round)):
            return  # a fresh proposal's block is built in its round, a re-proposal's by its POL round
        member = self._members.get(bytes(p.proposer))
        if member is None or member[0] != self.proposer(p.round):
            return
        if not self._signature_ok(p):
            return
        bid = p.block_id
        if bid not in self._blocks and pb.block.id != bid:
            return
        held = self._proposals.get(p.round)
        if held is not None:
            if held.proposal.block_id == p.block_id:
                return
            self._add_evidence(duplicate_proposal(held.proposal, p), out)
            if p.round in self._twins:
                return
            # Keep one twin: if the others polka on it, this node can still lock on it and commit it.
            self._twins[p.round] = pb
        else:
            self._proposals[p.round] = pb
        block = pb.block
        self._note_block(block, out, bid, int(p.round))
        if block.header.time <= now + self.params.max_clock_drift_ms:
            self._timely.add(bid)
        if p.proposer == self.me:
            self._pending_sign.pop((p.round, Step.PROPOSE), None)
            out.append(Broadcast(pb))
        if self._block_problem.get(bid) is None and bid in self._timely and bid not in self._verdicts \
                and bid not in self._validating:
            if bid in self._built or bid == self._valid_id or bid == self._locked_id:
                self._verdicts[bid] = Verdict.valid()
            else:
                self._validating.add(bid)
                out.append(ValidateBlock(block))
        if p.round == 0 and not self._round_started:
            # Only the proposer gathers late precommits (into its block's last commit): the others vote now.
            self._start_round(0, now, out)

    def _note_block(self, block: Block, out: list[Action], bid: Hash32, max_round: int) -> None:
        """Remember a block of this height and judge what consensus itself must check; `max_round` is the
        round of the proposal or commit that carries it (the block was built in that round or before)."""
        if bid in self._blocks:
            return
        self._blocks[bid] = block
        self._block_problem[bid] = self._structural_problem(block, out, max_round)

    def _structural_problem(self, block: Block, out: list[Action], max_round: int) -> str | None:
        h = block.header
        try:
            self._validate_block_basic(block)
            validate_header(h, HeaderRules(self.chain_id, int(self._height), self._last_block_id,
                                           int(self._last_block_time), self._vs, self._next_vs.hash,
                                           self.proposer, max_round))
        except InvalidBlock as exc:
            return str(exc)
        if self._height > 1:
            if block.last_commit is None or self._last_vs is None:
                return "missing last commit"
            try:
                verify_commit(self._last_vs, self._last_block_id, block.last_commit, self.chain_id,
                              signature_ok=self._signature_ok)
            except InvalidBlock as exc:
                return str(exc)
            self._cross_check_last_commit(block.last_commit, out)
        if len(block.evidence) > self.params.max_block_evidence:
            return "too much evidence"
        keys = set()
        for ev in block.evidence:
            try:
                validate_block_evidence(ev, self.chain_id, int(self._height), self.params.max_evidence_age,
                                        self._verify)
            except InvalidEvidence as exc:
                return f"evidence: {exc}"
            key = offence_id(ev)
            if key in keys:
                return "evidence: one offence twice"
            keys.add(key)
        return None

    def _cross_check_last_commit(self, commit: Commit, out: list[Action]) -> None:
        """A precommit in someone's commit that conflicts with one we hold is equivocation evidence."""
        lp, vs = self._last_precommits, self._last_vs
        if lp is None or vs is None or commit.round != self._last_round:
            return
        for vote in commit.precommits:
            member = self._last_members.get(bytes(vote.validator))
            if member is None:
                continue
            held = lp.votes.get(member[0])
            if held is not None and held.block_id != vote.block_id and self._signature_ok(vote):
                lp.add(vote, *member)
                self._add_evidence(duplicate_vote(held, vote), out)

    def _on_block_built(self, ev: BlockBuilt, out: list[Action]) -> None:
        if ev.height != self._height or self._building != ev.round:
            return
        self._building = None
        if ev.round != self._round or self._step != Step.PROPOSE or self._decided is not None:
            return
        bid = ev.block.id
        self._built.add(bid)
        self._sign_proposal(self._round, -1, ev.block, bid, int(ev.now), out)

    def _on_block_validated(self, ev: BlockValidated, out: list[Action]) -> None:
        bid = ev.block_id
        if bid not in self._validating:
            return
        self._validating.discard(bid)
        verdict = ev.verdict
        self._verdicts[bid] = verdict
        if verdict.kind is VerdictKind.LOCAL_FAULT:
            out.append(RaiseAlarm(f"cannot judge block {bid.hex()[:16]} at height {self._height}: "
                                  f"{verdict.reason}"))
        elif verdict.kind is VerdictKind.INVALID and verdict.wrong_outputs:
            self._wrong_inference(bid, verdict, out)

    def _wrong_inference(self, bid: Hash32, verdict: Verdict, out: list[Action]) -> None:
        block = self._blocks[bid]
        signed = next((pb.proposal for pb in [*self._proposals.values(), *self._twins.values()]
                       if pb.proposal.block_id == bid), None)
        if signed is None:
            return
        tx_hashes = [tx.hash for tx in block.txs]
        results = [r.encode() for r in block.results]
        for i in verdict.wrong_outputs[:4]:
            if not 0 <= i < len(block.txs):
                continue
            self._add_evidence(WrongInference(signed, block.header, i, block.txs[i], block.results[i],
                                              merkle_proof(tx_hashes, i), merkle_proof(results, i)), out)

    def _signature_ok(self, message: Vote | Proposal) -> bool:
        cache = self._sig_cache
        ok = cache.get(message)
        if ok is None:
            if isinstance(message, Vote):
                ok = self._verify(message.validator, message.sign_bytes(self.chain_id), message.signature)
            else:
                ok = self._verify(message.proposer, message.sign_bytes(self.chain_id), message.signature)
            if len(cache) >= SIGNATURE_CACHE_LIMIT:
                cache.clear()
            cache[message] = ok
        return ok

    def _add_evidence(self, evidence: Evidence, out: list[Action]) -> None:
        if self._pool.knows(evidence):
            return
        try:
            validate_evidence(evidence, self.chain_id, int(self._height), self.params.max_evidence_age,
                           self._verify)
        except InvalidEvidence:
            return
        if self._pool.add(evidence, int(self._height)):
            out.append(ReportEvidence(evidence))

    def _on_evidence(self, evidence: Evidence, out: list[Action]) -> None:
        last_seen = self._member_heights.get(bytes(evidence.offender))
        if last_seen is None or last_seen < evidence_height(evidence) or self._pool.knows(evidence):
            return
        self._add_evidence(evidence, out)
        if isinstance(evidence, DuplicateVote):
            # Both twins count where they belong: a polka or commit may rest on the one this node lacked.
            for vote in (evidence.vote_a, evidence.vote_b):
                self._on_vote(vote, int(self._last_now), out)

    def _on_commit_fetched(self, ev: CommitFetched, out: list[Action]) -> None:
        block, commit = ev.block, ev.commit
        if block.height != self._height or self._decided is not None or commit.height != self._height:
            return
        if block.id != commit.block_id:
            return
        try:
            verify_commit(self._vs, commit.block_id, commit, self.chain_id, signature_ok=self._signature_ok)
        except RemoteError:
            return
        self._note_block(block, out, commit.block_id, int(commit.round))
        for vote in commit.precommits:
            self._on_vote(vote, int(ev.now), out)

    def _on_timeout(self, ev: TimeoutFired, out: list[Action]) -> None:
        if ev.height != self._height or self._decided is not None:
            return
        r, step = int(ev.round), ev.step
        if step == Step.COMMIT:
            if not self._round_started:
                self._start_round(0, int(ev.now), out)
        elif r != self._round or not self._round_started:
            return
        elif step == Step.PROPOSE and self._step == Step.PROPOSE:
            self._prevote(None, int(ev.now), out)  # L57
        elif step == Step.PREVOTE and self._step == Step.PREVOTE:
            self._precommit(None, int(ev.now), out)  # L61
        elif step == Step.PRECOMMIT:
            self._start_round(r + 1, int(ev.now), out)  # L65

    def _on_resume(self, now: int, out: list[Action]) -> None:
        """After replay: everything outstanding again; the driver dropped the replayed actions."""
        if self._decided is not None:
            return
        if not self._round_started:
            self._schedule(0, Step.COMMIT, out)
            return
        for (r, step), _ms in list(self._scheduled.items()):
            if r == self._round and step != Step.COMMIT:
                self._schedule(r, step, out)
        if self._building == self._round:
            out.append(BuildBlock(self._template(self._round, now)))
        for bid in sorted(self._validating):
            out.append(ValidateBlock(self._blocks[bid]))
        for key in sorted(self._pending_sign):
            out.append(Sign(self._pending_sign[key]))
        own = self._proposals.get(self._round)
        if own is not None and own.proposal.proposer == self.me:
            out.append(Broadcast(own))
        if self._me_address is not None:
            for sets in (self._prevotes, self._precommits):
                vs = sets.get(self._round)
                mine = vs.votes.get(self._me_address) if vs is not None else None
                if mine is not None:
                    out.append(Broadcast(mine))

    # ------------------------------------------------------------------------------------------ rules

    def _valid(self, bid: Hash32) -> bool:
        """valid(v) of the paper: consensus's own checks, the clock bound, and the application's verdict."""
        if self._block_problem.get(bid, "unknown") is not None or bid not in self._timely:
            return False
        verdict = self._verdicts.get(bid)
        return verdict is not None and verdict.is_valid

    def _judged(self, bid: Hash32) -> bool:
        """Whether valid(v) is known yet (false while the application is still validating)."""
        if self._block_problem.get(bid, "unknown") is not None or bid not in self._timely:
            return True
        return bid in self._verdicts

    def _first(self, r: int, rule: str) -> bool:
        if (r, rule) in self._done:
            return False
        self._done.add((r, rule))
        return True

    def _progress(self, now: int, out: list[Action]) -> None:
        """Fire every rule of Algorithm 1 whose condition holds, until none does."""
        while self._decided is None:
            if self._try_commit(out):
                return
            if not self._round_started:
                return
            if not self._step_once(now, out):
                return

    def _try_commit(self, out: list[Action]) -> bool:
        """L49: a proposal (any round) with 2f+1 precommits for it decides. The block must pass consensus's
        own checks; the application's verdict is not required (a quorum already re-executed it)."""
        for r, pcs in self._precommits.items():
            bid = next((b for b in pcs.quorum_blocks()
                        if b is not None and b in self._blocks and self._block_problem.get(b) is None), None)
            if bid is None:
                continue
            block = self._blocks[bid]
            step = self._step if self._round_started else Step.PROPOSE  # this node's step in its round
            self._decided = block
            self._decided_id = bid
            self._decided_round = r
            self._step = Step.COMMIT
            commit = Commit(self._height, Round(r), bid, pcs.commit_votes(bid))
            self._pool.mark_committed(block.evidence)
            verdict = self._verdicts.get(bid)
            if verdict is not None and verdict.kind is VerdictKind.INVALID:
                out.append(RaiseAlarm(f"committing block {bid.hex()[:16]} at height {self._height} that this "
                                      f"node judged invalid: {verdict.reason}"))
            else:
                self._precommit_decided(r, step, bid, pcs, out)
            out.append(CommitBlock(block, commit, self._proposers.advance(self._next_vs)))
            return True
        return False

    def _precommit_decided(self, r: int, step: Step, bid: Hash32, pcs: VoteSet, out: list[Action]) -> None:
        """The block was decided by the others' precommits before this validator cast its own in that round
        (still validating it, or waiting for the polka): precommit it now, before the commit, so the next
        proposer has this validator's PoI answer and need not wait `timeout_commit` for a precommit that
        would otherwise never come (a miss for an honest validator that was merely slower than the quorum).
        Safe: the height is decided, a precommit for the decided block can help no other block, and only a
        round with no precommit of ours signed or asked for qualifies (a lower round would be refused by the
        signer). The next height's last commit then carries it like any other precommit."""
        if self._me_address is None or r != self._round or (r, Step.PRECOMMIT) in self._pending_sign:
            return
        if step >= Step.PRECOMMIT or self._me_address in pcs.votes:
            return
        self._cast(VoteType.PRECOMMIT, bid, self._last_now, out)

    def _step_once(self, now: int, out: list[Action]) -> bool:
        r = self._round
        # L55: f+1 power in a later round: skip ahead to the latest such round.
        total = self._vs.total_power
        later = [rr for rr, powers in self._round_power.items() if rr > r and 3 * sum(powers.values()) > total]
        if later:
            self._start_round(max(later), now, out)
            return True
        prop = self._proposals.get(r)
        prevotes = self._prevotes.get(r)
        if self._step == Step.PROPOSE and prop is not None:
            bid = prop.proposal.block_id
            vr = int(prop.proposal.pol_round)
            if vr == -1:  # L22
                if self._judged(bid):
                    ok = self._valid(bid) and (self._locked_round == -1 or self._locked_id == bid)
                    self._prevote(bid if ok else None, now, out)
                    return True
            else:
                pol = self._prevotes.get(vr)
                if pol is not None and pol.has_quorum_for(bid) and self._judged(bid):  # L28
                    ok = self._valid(bid) and (self._locked_round <= vr or self._locked_id == bid)
                    self._prevote(bid if ok else None, now, out)
                    return True
        if self._step == Step.PREVOTE and prevotes is not None and prevotes.has_quorum_any() \
                and self._first(r, "prevote-timeout"):  # L34
            self._schedule(r, Step.PREVOTE, out)
            return True
        if self._step >= Step.PREVOTE and prevotes is not None and (r, "polka") not in self._done:  # L36
            polka = next((pb.proposal.block_id for pb in (prop, self._twins.get(r)) if pb is not None
                          and prevotes.has_quorum_for(pb.proposal.block_id) and self._valid(pb.proposal.block_id)),
                         None)
            if polka is not None and self._first(r, "polka"):
                bid = polka
                if self._step == Step.PREVOTE:
                    self._locked_id, self._locked_round = bid, r
                    self._precommit(bid, now, out)
                self._valid_id, self._valid_round = bid, r
                return True
        if self._step == Step.PREVOTE and prevotes is not None and prevotes.has_quorum_for(None):  # L44
            self._precommit(None, now, out)
            return True
        precommits = self._precommits.get(r)
        if precommits is not None and precommits.has_quorum_any() and self._first(r, "precommit-timeout"):  # L47
            self._schedule(r, Step.PRECOMMIT, out)
            return True
        return False
