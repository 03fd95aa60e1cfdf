"""Runs a scenario: a seeded scheduler, a lossy network, and one sim driver per validator.

`SimNode` is a model of node/driver.py that follows docs/consensus.md exactly: every input is appended to
the WAL before `handle`, own signed messages are fsynced, actions are performed in order, a restart replays
the WAL (performing only CommitBlock/ReportEvidence) and then feeds Resume. Lost messages come back only
through vote catch-up and commit fetching, as on the real network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from consensus.params import ConsensusParams
from consensus.proposer import ProposerPriorities
from consensus.signer import FileSignState, MemorySignState, Signer
from consensus.state import ConsensusState
from consensus.wal import MemoryWAL
from core.block import Block, ProposalBlock
from core.errors import DoubleSignError
from core.evidence import (
    DuplicateProposal,
    DuplicateVote,
    Evidence,
    OffenceKind,
    WrongInference,
    compute_offence_id,
    evidence_hash,
    offence_id,
)
from core.hashing import ZERO_HASH, sha256_concat
from core.keys import PrivateKey
from core.limits import MAX_VALIDATORS
from core.types import Hash32, Height, Round, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import ZERO_SIGNATURE, Commit, Proposal, Vote, VoteType
from tests.consensus.sim.app import StandInApp
from tests.consensus.sim.disk import DiskWAL, disk_storage
from tests.consensus.sim.scenario import Behaviour, Scenario

CHAIN_ID = "sim-chain"
GENESIS_TIME = 1_700_000_000_000

SIM_PARAMS = ConsensusParams(
    timeout_propose_ms=400, timeout_propose_delta_ms=100,
    timeout_prevote_ms=150, timeout_prevote_delta_ms=50,
    timeout_precommit_ms=150, timeout_precommit_delta_ms=50,
    timeout_commit_ms=100, max_clock_drift_ms=5_000)
CATCHUP_MS = 200

_KEYS: dict[int, PrivateKey] = {}


def validator_key(i: int) -> PrivateKey:
    key = _KEYS.get(i)
    if key is None:
        key = _KEYS[i] = PrivateKey.derive("inferchain sim", "validator", i)
    return key


class Crashed(Exception):
    """Unwinds a node's feed loop at a crash point."""


@dataclass
class Stored:
    block: Block
    commit: Commit
    next_proposers: ProposerPriorities


@dataclass
class Failure:
    what: str


@dataclass
class RunResult:
    scenario: Scenario
    end_ms: int
    committed: dict[int, dict[int, int]]  # node -> height -> commit time
    failures: list[str] = field(default_factory=list)
    reached: set[Hash32] = field(default_factory=set)  # frozen when heights were reached
    committed_evidence: set[Hash32] = field(default_factory=set)
    signatures: dict[tuple[int, int, int, int], set[object]] = field(default_factory=dict)
    messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


class Cluster:
    def __init__(self, scenario: Scenario, *, params: ConsensusParams = SIM_PARAMS,
                 crash_at_boundary: tuple[int, int, bool] | None = None, trace: bool = False,
                 encode_wal: bool = False, disk: Path | None = None) -> None:
        self.sc = scenario
        self.params = params
        self.rng = random.Random(scenario.seed * 7919 + 1)
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.signature_cache: dict[object, bool] = {}
        self.encode_wal = encode_wal
        self.disk = disk
        entries = [ValidatorEntry(validator_key(i).public_key, p) for i, p in enumerate(scenario.powers)]
        self.validators = ValidatorSet(entries)
        self.nodes = [SimNode(self, i, validator_key(i), b) for i, b in enumerate(scenario.behaviours)]
        self.honest = [n for n in self.nodes if n.behaviour is Behaviour.HONEST]
        self.chain: dict[int, Block] = {}  # the one block each height committed to (agreement oracle)
        self.failures: list[str] = []
        self.reached: set[Hash32] = set()
        self.signatures: dict[tuple[int, int, int, int], set[object]] = {}
        self.settled: set[Hash32] | None = None  # equivocations to see committed, once frozen
        self.crash_at_boundary = crash_at_boundary
        self.trace = trace
        self.messages = 0
        self.stored_returns = 0

    # -------------------------------------------------------------------------------------- scheduling

    def at(self, t: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, fn))

    def after(self, node: SimNode, delay: int, fn: Callable[[], None]) -> None:
        inc = node.incarnation

        def run() -> None:
            if node.up and node.incarnation == inc:
                node.guarded(fn)

        self.at(self.now + delay, run)

    def log(self, text: str) -> None:
        if self.trace:
            print(f"{self.now:>7}ms {text}")

    # -------------------------------------------------------------------------------------- network

    def link_ok(self, src: int, dst: int) -> bool:
        for p in self.sc.partitions:
            if p.start_ms <= self.now < p.end_ms and p.groups[src] != p.groups[dst]:
                return False
        return True

    def send(self, src: int, dst: int, msg: tuple[object, ...]) -> None:
        sender = self.nodes[src]
        if sender.is_silent():
            return
        self.messages += 1
        faulty = self.now < self.sc.heal_ms
        if faulty and (not self.link_ok(src, dst) or self.rng.random() < self.sc.drop):
            return
        copies = 2 if self.rng.random() < self.sc.duplicate else 1
        lo, hi = self.sc.delay_ms
        for _ in range(copies):
            target = self.nodes[dst]

            def deliver(target: SimNode = target) -> None:
                if target.up:
                    target.guarded(lambda: target.on_message(src, msg))

            self.at(self.now + self.rng.randint(lo, hi), deliver)

    def broadcast(self, src: int, msg: tuple[object, ...]) -> None:
        for node in self.nodes:
            if node.index != src:
                self.send(src, node.index, msg)

    # -------------------------------------------------------------------------------------- oracles

    def on_commit(self, node: SimNode, block: Block) -> None:
        h = int(block.height)
        held = self.chain.get(h)
        if held is None:
            self.chain[h] = block
        elif held.id != block.id and node.behaviour is Behaviour.HONEST:
            self.failures.append(f"AGREEMENT: node {node.index} committed {block.id.hex()[:12]} at height {h}, "
                                 f"another node committed {held.id.hex()[:12]}")
        node.commit_times[h] = self.now

    def on_signed(self, node: SimNode, message: Vote | ProposalBlock) -> None:
        if isinstance(message, Vote):
            key = (node.index, int(message.height), int(message.round), int(message.type) + 1)
        else:
            p = message.proposal
            key = (node.index, int(p.height), int(p.round), 1)
        self.signatures.setdefault(key, set()).add(message)

    # -------------------------------------------------------------------------------------- running

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for c in self.sc.crashes:
            victim = self.nodes[c.node]
            self.at(c.at_ms, functools.partial(victim.crash, power_loss=c.power_loss))
            self.at(c.at_ms + c.down_ms, victim.restart)

    def done(self) -> bool:
        """Heights reached and a commit after heal by every honest node; then every equivocation that had
        reached an honest node by that moment must end up committed as evidence."""
        if self.settled is None:
            if self.now < self.sc.heal_ms:
                return False
            for node in self.honest:
                if len(node.store) < self.sc.heights or not node.up:
                    return False
                if not any(t >= self.sc.heal_ms for t in node.commit_times.values()):
                    return False
            self.settled = set(self.reached)
        return self.settled <= self.committed_evidence_keys()

    def committed_evidence_keys(self) -> set[Hash32]:
        return {offence_id(e) for b in self.chain.values() for e in b.evidence}

    def run(self) -> RunResult:
        try:
            return self._run()
        finally:
            for node in self.nodes:
                node.wal.close()

    def _run(self) -> RunResult:
        self.start()
        limit = self.sc.heal_ms + self.sc.bound_ms
        next_check = 0
        while self._queue and not self.failures:
            t, _, fn = heapq.heappop(self._queue)
            if t > limit:
                break
            self.now = t
            fn()
            if t >= next_check:
                next_check = t + 100
                if self.done():
                    break
        if not self.failures and not self.done():
            self.failures.append(self._why_not_done())
        for node in self.honest:
            after = [t for t in node.commit_times.values() if t >= self.sc.heal_ms]
            if after and min(after) - self.sc.heal_ms > self.sc.resume_ms:
                self.failures.append(f"LIVENESS: node {node.index} first committed {min(after) - self.sc.heal_ms}"
                                     f"ms after heal (bound {self.sc.resume_ms}ms)")
        for key, sigs in self.signatures.items():
            if len(sigs) > 1 and self.nodes[key[0]].behaviour is Behaviour.HONEST:
                self.failures.append(f"DOUBLE SIGN by honest node {key[0]} at h/r/step {key[1:]}")
        for node in self.honest:
            if bytes(node.key.public_key) in self.any_punished():
                self.failures.append(f"honest node {node.index} was punished")
            for other in self.honest:
                if bytes(node.key.address) in other.app.punished.wrong_poi:
                    self.failures.append(f"honest node {node.index} flagged for a wrong PoI answer")
        return RunResult(self.sc, self.now, {n.index: dict(n.commit_times) for n in self.nodes},
                         list(self.failures), set(self.settled or ()), self.committed_evidence_keys(),
                         self.signatures, self.messages)

    def any_punished(self) -> set[bytes]:
        out: set[bytes] = set()
        for node in self.honest:
            out |= node.app.punished.tombstoned | node.app.punished.wrong_inference
        return out

    def _why_not_done(self) -> str:
        heights = {n.index: len(n.store) for n in self.nodes}
        after = {n.index: max(n.commit_times.values(), default=-1) for n in self.honest}
        missing = (self.settled or set()) - self.committed_evidence_keys()
        return (f"LIVENESS: by {self.now}ms (heal {self.sc.heal_ms}ms, bound {self.sc.bound_ms}ms) committed "
                f"heights {heights}, last commit times {after}, uncommitted evidence {len(missing)} "
                f"{sorted(k.hex()[:16] for k in missing)}")


class SimNode:
    """The sim driver of one validator (see docs/consensus.md, 'The driver contract')."""

    def __init__(self, cluster: Cluster, index: int, key: PrivateKey, behaviour: Behaviour) -> None:
        self.cluster = cluster
        self.index = index
        self.key = key
        self.behaviour = behaviour
        self.wal: MemoryWAL | DiskWAL
        self.sign_state: MemorySignState | FileSignState
        if cluster.disk is not None:
            self.wal, self.sign_state = disk_storage(cluster.disk, index, cluster.rng)
        else:
            self.wal, self.sign_state = MemoryWAL(encode=cluster.encode_wal), MemorySignState()
        self.store: dict[int, Stored] = {}
        self.evidence_store: dict[bytes, Evidence] = {}
        self.app = StandInApp(CHAIN_ID, cluster.validators, GENESIS_TIME,
                              lazy_poi=behaviour is Behaviour.LAZY_POI,
                              bad_outputs=behaviour is Behaviour.BAD_OUTPUTS)
        self.state: ConsensusState | None = None
        self.signer: Signer | None = None
        self.up = False
        self.incarnation = 0
        self.commit_times: dict[int, int] = {}
        self.boundaries = 0
        self._queue: deque[tuple[Event, bool]] = deque()
        self._feeding = False
        self._seen: dict[Hash32, set[bytes]] = {}
        self._alt: dict[bytes, Vote | ProposalBlock] = {}  # Byzantine: the conflicting twin of a message
        self.alarms: list[str] = []
        self.skew_ms = cluster.rng.randint(-300, 300)
        # As node/driver.py's mempool: transaction hash -> the header proposers of blocks this node judged
        # invalid on it without a provably wrong output (three distinct ones evict the transaction).
        self.disagreements: dict[bytes, set[bytes]] = {}
        self.foreign_built: dict[bytes, Block] = {}  # FOREIGN_HEADER: the blocks it built naming another

    @property
    def now(self) -> int:
        return self.cluster.now

    @property
    def ts(self) -> Timestamp:
        """This node's wall clock: genesis time plus simulated time plus its own skew."""
        return Timestamp(GENESIS_TIME + self.cluster.now + self.skew_ms)

    def is_silent(self) -> bool:
        if self.behaviour is not Behaviour.SILENT:
            return False
        until = self.cluster.sc.silent_until_ms
        return until is None or self.now < until

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.up = True
        self.incarnation += 1
        self._queue.clear()
        self._feeding = False
        self._seen = {}
        self.state = ConsensusState(CHAIN_ID, self.key.public_key, self.cluster.params,
                                    signature_cache=self.cluster.signature_cache)
        self.signer = Signer(self.key, CHAIN_ID, self.sign_state, self.app.poi_commitment)
        self.guarded(self._boot)
        self._schedule_catchup()

    def _boot(self) -> None:
        """Start-up: replay the WAL of the current height, or start the next height fresh."""
        assert self.state is not None
        events = self.wal.replay()
        stored = max(self.store, default=0)
        first = events[0] if events else None
        if not isinstance(first, NewHeight) or first.height <= stored:
            self.feed(self.new_height(stored + 1), sync=True)
        else:
            commits: list[Action] = []
            for ev in events:
                self._record_delivery(ev)
                for action in self.state.handle(ev):
                    if isinstance(action, CommitBlock | ReportEvidence):
                        commits.append(action)
            for action in commits:
                self.perform(action)
            self.feed(Resume(self.ts))
        for pending in list(self.evidence_store.values()):
            self.feed(EvidenceReceived(self.ts, pending))

    def crash(self, *, power_loss: bool = False) -> None:
        if not self.up:
            return
        self.cluster.log(f"node {self.index} CRASH power_loss={power_loss}")
        self.up = False
        self.state = None
        self.wal.crash(power_loss=power_loss)
        self._queue.clear()

    def restart(self) -> None:
        if self.up:
            return
        self.cluster.log(f"node {self.index} RESTART")
        self.start()

    def guarded(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(Crashed):
            fn()

    def boundary(self) -> None:
        """A step boundary: the crash test may cut the node here."""
        self.boundaries += 1
        plan = self.cluster.crash_at_boundary
        if plan is not None and plan[0] == self.index and plan[1] == self.boundaries:
            self.crash(power_loss=plan[2])
            self.cluster.at(self.now + 300, self.restart)
            raise Crashed

    # ------------------------------------------------------------------------------ feeding

    def new_height(self, h: int) -> NewHeight:
        vs = self.app.validator_set(Height(h))
        if h == 1:
            return NewHeight(self.ts, Height(1), ProposerPriorities.genesis(vs),
                             self.app.validator_set(Height(2)).entries, (), ZERO_HASH,
                             Timestamp(GENESIS_TIME), None)
        prev = self.store[h - 1]
        return NewHeight(self.ts, Height(h), prev.next_proposers,
                         self.app.validator_set(Height(h + 1)).entries,
                         self.app.validator_set(Height(h - 1)).entries, prev.block.id,
                         prev.block.header.time, prev.commit)

    def feed(self, event: Event, *, sync: bool = False) -> None:
        self._queue.append((event, sync))
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._queue and self.up:
                ev, s = self._queue.popleft()
                if not isinstance(ev, Resume):
                    self.wal.append(ev, sync=s)
                self.boundary()
                assert self.state is not None
                self._record_delivery(ev)
                for action in self.state.handle(ev):
                    self.perform(action)
                    self.boundary()
        finally:
            self._feeding = False

    def _record_delivery(self, ev: Event) -> None:
        """Oracle: which equivocations reached this honest node's machine at a height it was working on."""
        if self.behaviour is not Behaviour.HONEST or self.state is None or not self.state._started:
            return
        st = self.state
        votes: tuple[Vote, ...] = ()
        if isinstance(ev, VoteReceived):
            votes = (ev.vote,)
        elif isinstance(ev, VotesFetched):
            votes = ev.votes
        elif isinstance(ev, CommitFetched):
            votes = ev.commit.precommits
        elif isinstance(ev, ProposalReceived):
            p = ev.proposal_block.proposal
            if p.height == st.height and p.proposer != self.key.public_key:
                self._note(compute_offence_id(OffenceKind.PROPOSAL, p.proposer, p.height, p.round), p.block_id)
        for v in votes:
            if v.validator == self.key.public_key:
                continue
            if v.height == st.height or (v.height == st.height - 1 and v.type == VoteType.PRECOMMIT
                                         and v.round == st._last_round and st._last_precommits is not None):
                self._note(compute_offence_id(OffenceKind.VOTE, v.validator, v.height, v.round, v.type), v.block_id)

    def _note(self, key: Hash32, block_id: bytes | None) -> None:
        ids = self._seen.setdefault(key, set())
        ids.add(b"" if block_id is None else bytes(block_id))
        if len(ids) > 1:
            self.cluster.reached.add(key)

    # ------------------------------------------------------------------------------ actions

    def perform(self, action: Action) -> None:
        c = self.cluster
        if isinstance(action, ScheduleTimeout):
            ev = TimeoutFired(Timestamp(0), action.height, action.round, action.step)
            c.after(self, action.duration_ms, lambda: self.feed(ev.replace(now=self.ts)))
        elif isinstance(action, Broadcast):
            self._broadcast(action.message)
        elif isinstance(action, Sign):
            self._sign(action.message)
        elif isinstance(action, BuildBlock):
            t = action.template
            if self.behaviour is Behaviour.FOREIGN_HEADER:
                others = [e.address for e in c.validators if e.address != t.proposer]
                t = dataclasses.replace(t, proposer=others[(int(t.height) + int(t.round)) % len(others)])
                self.app.disputed_results = (int(t.height) + int(t.round)) % 2 == 0
            block = self.app.build_block(t, ())
            if self.behaviour is Behaviour.FOREIGN_HEADER:
                self.foreign_built[bytes(block.id)] = block
            c.after(self, c.rng.randint(5, 30),
                    lambda: self.feed(BlockBuilt(self.ts, t.height, t.round, block)))
        elif isinstance(action, ValidateBlock):
            verdict = self.app.validate_block(action.block)
            bid = action.block.id
            for i in set(verdict.bad_txs) - set(verdict.wrong_outputs):  # node/driver.py _note_disagreement
                tx_hash = bytes(action.block.txs[i].hash)
                self.disagreements.setdefault(tx_hash, set()).add(bytes(action.block.header.proposer))
            c.after(self, c.rng.randint(5, 30), lambda: self.feed(BlockValidated.of(self.ts, bid, verdict)))
            if verdict.wrong_outputs and self.behaviour is Behaviour.HONEST and self.state is not None:
                for pb in self.state._proposals.values():
                    if pb.proposal.block_id == bid:
                        if verdict.wrong_outputs:  # however many outputs are wrong: one offence
                            p = pb.proposal
                            c.reached.add(compute_offence_id(OffenceKind.INFERENCE, p.proposer, p.height, p.round))
                        break
        elif isinstance(action, CommitBlock):
            self._commit(action)
        elif isinstance(action, ReportEvidence):
            self.evidence_store[bytes(evidence_id(action.evidence))] = action.evidence
            c.broadcast(self.index, ("evidence", action.evidence))
        elif isinstance(action, RaiseAlarm):
            self.alarms.append(action.reason)

    def _sign(self, message: Vote | ProposalBlock) -> None:
        assert self.signer is not None
        self.wal.sync()  # a replay after any crash reproduces this very request
        try:
            signed = self.signer.sign(message)
        except DoubleSignError as exc:
            self.alarms.append(str(exc))
            return
        self.cluster.on_signed(self, signed)
        if _unsigned(signed) != _unsigned(message):
            self.cluster.stored_returns += 1  # the signer handed back what it signed before a crash
        self.boundary()  # persisted in the sign state, not yet in the WAL
        if self.behaviour is Behaviour.DOUBLE_VOTE and isinstance(signed, Vote):
            alt_id = None if signed.block_id is not None else sha256_concat(b"fake", bytes(signed.signature))
            alt = signed.replace(block_id=alt_id).signed(self.key, CHAIN_ID)
            self._alt[bytes(signed.signature)] = alt
        if self.behaviour is Behaviour.EQUIVOCATE_PROPOSAL and isinstance(signed, ProposalBlock):
            block = signed.block
            twin = block.replace(header=block.header.replace(time=Timestamp(block.header.time + 1)))
            p = signed.proposal.replace(block_id=twin.id).signed(self.key, CHAIN_ID)
            self._alt[bytes(signed.proposal.signature)] = ProposalBlock(p, twin)
        if isinstance(signed, Vote):
            self.feed(VoteReceived(self.ts, signed), sync=True)
        else:
            self.feed(ProposalReceived(self.ts, signed), sync=True)

    def _broadcast(self, message: Vote | ProposalBlock) -> None:
        c = self.cluster
        kind = "vote" if isinstance(message, Vote) else "proposal"
        sig = message.signature if isinstance(message, Vote) else message.proposal.signature
        alt = self._alt.get(bytes(sig))
        if alt is None:
            c.broadcast(self.index, (kind, message))
            return
        # Equivocate: split the honest peers, and give one witness both messages.
        peers = [n.index for n in c.nodes if n.index != self.index]
        c.rng.shuffle(peers)
        half = len(peers) // 2
        for i, dst in enumerate(peers):
            c.send(self.index, dst, (kind, message if i < half else alt))
        c.send(self.index, peers[-1], (kind, message))

    def _commit(self, action: CommitBlock) -> None:
        block = action.block
        h = int(block.height)
        if h in self.store:
            return
        if h != max(self.store, default=0) + 1:
            self.cluster.failures.append(f"node {self.index} commits height {h} after {max(self.store, default=0)}")
            return
        self.app.finalize_block(block)
        self.store[h] = Stored(block, action.commit, action.next_proposers)
        for ev in block.evidence:
            self.evidence_store.pop(bytes(evidence_id(ev)), None)
        self.cluster.on_commit(self, block)
        self.cluster.log(f"node {self.index} COMMIT h={h} r={action.commit.round} {block.id.hex()[:8]} "
                         f"ev={len(block.evidence)}")
        self.feed(self.new_height(h + 1), sync=True)
        for ev in list(self.evidence_store.values()):  # re-gossip what is still pending
            self.cluster.broadcast(self.index, ("evidence", ev))

    # ------------------------------------------------------------------------------ network input

    def on_message(self, src: int, msg: tuple[object, ...]) -> None:
        kind = msg[0]
        now = self.ts
        if kind == "vote":
            v = msg[1]
            assert isinstance(v, Vote)
            self.feed(VoteReceived(now, v))
        elif kind == "proposal":
            pb = msg[1]
            assert isinstance(pb, ProposalBlock)
            self.feed(ProposalReceived(now, pb))
        elif kind == "evidence":
            ev = msg[1]
            assert isinstance(ev, WrongInference | DuplicateVote | DuplicateProposal)
            if isinstance(ev, WrongInference) and not self.app.is_valid_evidence(ev):
                return
            self.feed(EvidenceReceived(now, ev))
        elif kind == "catchup":
            self._serve_catchup(src, msg)
        elif kind == "catchup-reply":
            self._on_catchup_reply(msg)

    def _schedule_catchup(self) -> None:
        c = self.cluster

        def tick() -> None:
            self._request_catchup()
            self._schedule_catchup()

        c.after(self, CATCHUP_MS + c.rng.randint(0, CATCHUP_MS // 4), tick)

    def _request_catchup(self) -> None:
        if self.state is None:
            return
        c = self.cluster
        # Like the node's catch-up, which asks among its connected peers: a crashed node has no connections.
        peers = [n.index for n in c.nodes if n.index != self.index and n.up]
        if not peers:
            return
        dst = c.rng.choice(peers)
        c.send(self.index, dst, ("catchup", int(self.state.height), self.state.catch_up_queries()))

    def _serve_catchup(self, src: int, msg: tuple[object, ...]) -> None:
        _, height, queries = msg
        assert isinstance(height, int) and isinstance(queries, tuple)
        stored = self.store.get(height)
        votes: list[Vote] = []
        if stored is None and self.state is not None:
            for q in queries:
                votes.extend(self.state.votes_for_peer(q.height, q.round, q.type, q.have))
        reply = ("catchup-reply", (stored.block, stored.commit) if stored else None, tuple(votes))
        self.cluster.send(self.index, src, reply)

    def _on_catchup_reply(self, msg: tuple[object, ...]) -> None:
        _, committed, votes = msg
        now = self.ts
        if committed is not None:
            assert isinstance(committed, tuple)
            block, commit = committed
            if self.state is not None and block.height == self.state.height:
                self.feed(CommitFetched(now, block, commit))
                self._request_catchup()  # keep syncing while behind
            return
        assert isinstance(votes, tuple)
        for i in range(0, len(votes), MAX_VALIDATORS):
            self.feed(VotesFetched(now, votes[i:i + MAX_VALIDATORS]))


def _unsigned(message: Vote | ProposalBlock) -> object:
    if isinstance(message, Vote):
        return message.replace(poi=None, signature=ZERO_SIGNATURE)
    return message.replace(proposal=message.proposal.replace(signature=ZERO_SIGNATURE))


def evidence_id(ev: Evidence) -> bytes:
    return bytes(evidence_hash(ev))


def run_scenario(scenario: Scenario, **kwargs: object) -> RunResult:
    return Cluster(scenario, **kwargs).run()  # type: ignore[arg-type]


__all__ = ["CHAIN_ID", "Cluster", "Proposal", "Round", "RunResult", "SimNode", "run_scenario"]
