"""The consensus driver: one trio task feeds the pure state machine from one channel and performs its actions.

Contract: docs/consensus.md. Every input is appended to the WAL before `handle`; the node's own signed
messages and each NewHeight are fsynced before anything leaves. Block building and validation run in worker
threads (the VM hands model work to its worker processes) and come back as events, so the loop keeps serving
votes and timeouts meanwhile. Signing (fsync of the sign state, maybe the PoI challenge) and committing
(one fsynced LevelDB batch) also run in threads, but in order, because what follows depends on them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

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
from consensus.signer import Signer
from consensus.state import ConsensusState
from consensus.wal import WriteAheadLog
from core.app import Application, Verdict
from core.block import Block, ProposalBlock
from core.errors import (
    DecodeError,
    DoubleSignError,
    InferchainError,
    LocalError,
    LocalFault,
    RemoteError,
    StorageError,
)
from core.evidence import Evidence, EvidenceEnvelope, WrongInference, evidence_height, offence_id
from core.hashing import ZERO_HASH
from core.store import KeySpace, space
from core.tx import Transaction
from core.types import Height, Timestamp
from core.validators import ValidatorEntry
from core.votes import Commit, Vote
from node.blockcheck import BlockChecks
from node.chain import Chain
from node.idle import IdlePacer
from node.mempool import Mempool
from node.proposal_hold import OwnTxHold
from node.proposal_size import ProposalSizer
from vm.txs import TxKind

logger = logging.getLogger(__name__)



MODEL_WORK_KINDS = frozenset({TxKind.INFER, TxKind.MODEL_CHUNK})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BlockLimits:
    max_txs: int
    max_bytes: int
    max_gas: int


Publisher = Callable[[Vote | ProposalBlock | Evidence], Awaitable[None]]
AlarmSink = Callable[[str], None]


class _Overtaken(Exception):
    """A validation whose block was committed before it began: the commit executed the block instead."""


@dataclass(slots=True)
class _PendingValidation:
    """A validation the machine asked for, from the action until its thread returns. Read and written on the
    event loop only. A commit of the same block waits for a started one (its execution is what
    `finalize_block` then stages) and marks a queued one overtaken (it never executes: the commit does)."""

    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    started: bool = False
    overtaken: bool = False

    def begin(self) -> bool:
        if self.overtaken:
            return False
        self.started = True
        return True


class ConsensusDriver:
    """Owns one ConsensusState, one Signer (None for a non-validator) and one WAL."""

    def __init__(self, *, chain: Chain, state: ConsensusState, wal: WriteAheadLog, signer: Signer | None,
                 mempool: Mempool, limits: BlockLimits, genesis_time: int, publish: Publisher,
                 alarm: AlarmSink | None = None, clock: Callable[[], int] = now_ms,
                 inbox_size: int = 4096, block_checks: BlockChecks | None = None,
                 height_params: Callable[[int], tuple[ConsensusParams, BlockLimits]] | None = None,
                 idle: IdlePacer | None = None, hold: OwnTxHold | None = None) -> None:
        self.chain = chain
        self.app: Application = chain.app
        self.state = state
        self.wal = wal
        self.signer = signer
        self.mempool = mempool
        self.limits = limits
        # The parameters in committed state, read before each height starts (governance changes them).
        self._height_params = height_params
        self.genesis_time = genesis_time
        self._publish = publish
        self._alarm = alarm or (lambda reason: logger.error("ALARM: %s", reason))
        self._clock = clock
        # The machine's block checker, if it is this cache: blocks are checked here in worker threads first.
        self._block_checks = block_checks
        # Idle pacing (node.idle): when this node starts a height, never what it decides.
        self._idle = idle
        self._base_params = state.params
        self._send, self._receive = trio.open_memory_channel[Event](inbox_size)
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[Vote | ProposalBlock | Evidence](
            math.inf)
        self._nursery: trio.Nursery | None = None
        # One build/validation at a time (the VM hands model work to its processes); one signer/WAL writer.
        self._app_threads = trio.CapacityLimiter(1)
        self._sign_threads = trio.CapacityLimiter(1)
        self._replaying = False
        self._evidence = space(chain.db, KeySpace.EVIDENCE)
        # How many transactions our proposals take: what validates within a share of timeout_propose.
        self.sizer = ProposalSizer()
        # Which of our own clients' transactions our proposals may name yet (node.proposal_hold).
        self.hold = hold
        self._built: set[bytes] = set()  # ids of blocks this node built (their validation is no sample)
        self._pending: dict[bytes, _PendingValidation] = {}  # validations asked for, by block id
        self.alarms: list[str] = []
        self.started = trio.Event()
        self.fed = 0
        self.replayed = 0  # WAL events replayed at start-up

    # ---------------------------------------------------------------- public inputs (any task)

    @property
    def height(self) -> Height:
        return self.state.height

    @property
    def round(self) -> int:
        return int(self.state.round)

    async def submit(self, event: Event) -> None:
        """Queue an input for the loop (gossip handlers, catch-up); waits when the loop is behind."""
        await self._send.send(event)

    def now(self) -> Timestamp:
        return Timestamp(self._clock())

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._publisher)
            await self._start()
            self.started.set()
            task_status.started()
            async for event in self._receive:
                await self.feed(event)

    async def _start(self) -> None:
        """WAL replay for the current height (docs/consensus.md, start-up steps 2-5)."""
        events = self.wal.replay()
        stored = int(self.chain.height)
        first = events[0] if events else None
        if not isinstance(first, NewHeight) or first.height <= stored:
            await self.feed(self.new_height_event(stored + 1), sync=True)
        else:
            logger.info("replaying %d WAL events of height %d", len(events), first.height)
            self.replayed = len(events)
            self._replaying = True
            try:
                for event in events:
                    if isinstance(event, NewHeight):
                        self._start_height(int(event.height))
                    for action in self.state.handle(event):
                        if isinstance(action, CommitBlock | ReportEvidence):
                            await self.perform(action)
            finally:
                self._replaying = False
            if int(self.chain.height) >= first.height:
                # The replay committed the WAL's height: move on.
                await self.feed(self.new_height_event(int(self.chain.height) + 1), sync=True)
            await self.feed(Resume(self.now()))
        await self._load_pending_evidence()

    async def _load_pending_evidence(self) -> None:
        """Feed stored pending evidence back in; drop what can no longer be included (too old, unreadable)."""
        oldest = int(self.chain.height) + 1 - self.state.params.max_evidence_age
        pending: list[Evidence] = []
        stale: list[bytes] = []
        for key, raw in self._evidence.iterate():
            try:
                evidence = EvidenceEnvelope.decode(raw).evidence
            except DecodeError:
                stale.append(key)
                continue
            if int(evidence_height(evidence)) < oldest:
                stale.append(key)
            else:
                pending.append(evidence)
        if stale:
            def drop() -> None:
                with self.chain.db.write_batch(sync=True) as batch:
                    view = self._evidence.bind(batch)
                    for key in stale:
                        view.delete(key)

            await trio.to_thread.run_sync(drop, limiter=self._sign_threads)
        for evidence in pending:
            await self.feed(EvidenceReceived(self.now(), evidence))

    async def _publisher(self) -> None:
        """Own messages leave in order, without holding up the loop (publishing paces on peer queues)."""
        async for message in self._outbox_receive:
            try:
                await self._publish(message)
            except InferchainError as exc:
                logger.warning("could not publish %s: %s", type(message).__name__, exc)
            except (RuntimeError, trio.BrokenResourceError) as exc:  # gossip not running (yet / any more)
                logger.debug("publish skipped: %s", exc)

    # ---------------------------------------------------------------- the loop body

    async def feed(self, event: Event, *, sync: bool = False, logged: bool = False) -> None:
        """WAL first, then handle, then perform the actions in order. `logged`: the caller already appended
        `event` to the WAL durably (our own signed message, in the signing thread)."""
        if isinstance(event, NewHeight):
            self._start_height(int(event.height))
            if self._idle is not None:  # when to start the height, never what goes in it
                self.state.params = self._idle.params_for_height(self._base_params)
        elif self._idle is not None:
            self._idle.note(event)
        if not logged:
            if sync or isinstance(event, NewHeight):
                # fsync in a worker thread: the loop task waits (order matters), the event loop does not.
                await trio.to_thread.run_sync(lambda: self.wal.append(event, sync=True), limiter=self._sign_threads)
            else:
                self.wal.append(event)
        self.fed += 1
        try:
            actions = self.state.handle(event)
        except RemoteError as exc:  # a peer's input the machine refuses
            logger.info("consensus refused %s: %s", type(event).__name__, exc)
            return
        except LocalError as exc:  # our own fault: alarm, never blame the input's sender
            self.raise_alarm(f"consensus could not handle {type(event).__name__}: {exc}")
            return
        for action in actions:
            await self.perform(action)

    async def perform(self, action: Action) -> None:
        if isinstance(action, ScheduleTimeout):
            self._spawn(self._timeout, action)
        elif isinstance(action, BuildBlock):
            self._spawn(self._build, action)
        elif isinstance(action, ValidateBlock):
            if not self._replaying:
                self._pending[bytes(action.block.id)] = _PendingValidation()
            self._spawn(self._validate, action)
        elif isinstance(action, Sign):
            await self._sign(action)
        elif isinstance(action, Broadcast):
            self._outbox_send.send_nowait(action.message)
        elif isinstance(action, CommitBlock):
            await self._commit(action)
        elif isinstance(action, ReportEvidence):
            await self._report_evidence(action.evidence)
        elif isinstance(action, RaiseAlarm):
            self.raise_alarm(action.reason)
        else:  # pragma: no cover - a new action type the driver does not know is a bug
            raise TypeError(f"unknown consensus action {action!r}")

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        if self._replaying:
            return
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def _start_height(self, height: int) -> None:
        """Before `height` starts (and before its NewHeight reaches the WAL): its timeouts and block limits
        from the committed state. The node's callable raises UpgradeNeeded when this build cannot run the
        height (a software upgrade is due there), which ends the node with its one line."""
        if self._height_params is None:
            return
        params, limits = self._height_params(height)
        changes = [f"{f.name} {getattr(old, f.name)} -> {getattr(new, f.name)}"
                   for old, new in ((self._base_params, params), (self.limits, limits))
                   for f in dataclasses.fields(new) if getattr(old, f.name) != getattr(new, f.name)]
        if changes:
            logger.info("height %d: consensus parameters from state: %s", height, ", ".join(changes))
        # The idle pacer (if any) stretches these base timings per height; the state's values stay the base.
        self.state.params, self._base_params, self.limits = params, params, limits

    def raise_alarm(self, reason: str) -> None:
        logger.error("ALARM: %s", reason)
        self.alarms.append(reason)
        del self.alarms[:-100]
        self._alarm(reason)

    # ---------------------------------------------------------------- actions

    async def _timeout(self, action: ScheduleTimeout) -> None:
        if self._idle is not None:
            await self._idle.sleep(action, self._base_params)
        else:
            await trio.sleep(action.duration_ms / 1000)
        await self.submit(TimeoutFired(self.now(), action.height, action.round, action.step))

    async def _build(self, action: BuildBlock) -> None:
        template = action.template
        lim = self.limits
        max_txs = self.sizer.max_txs(self._base_params.timeout_propose_ms, lim.max_txs)
        txs = self._reap(max_txs, action)

        def build() -> Block:
            started = time.perf_counter()  # proposer policy only (node.proposal_size): never in a block
            block = self.app.build_block(template, txs)
            if self._block_checks is not None:
                self._block_checks.precheck(block)  # so the machine does not hash the block on the loop
            self.sizer.observe(len(block.txs), time.perf_counter() - started)
            return block

        try:
            block = await trio.to_thread.run_sync(build, limiter=self._app_threads)
        except LocalFault as fault:
            if int(self.chain.height) >= int(template.height):
                return  # the height was committed meanwhile (a commit of another round): nothing to build
            self.raise_alarm(f"cannot build block {template.height}: {fault}")
            return
        self._built.add(bytes(block.id))
        if len(self._built) > 64:
            self._built.clear()
        for tx_hash in self.app.build_faults(block):
            # A local fault on our own proposal backs the transaction off like a disagreement (docs/vm.md).
            self.mempool.report_disagreement(tx_hash, block.header.proposer, block.height)
        await self.submit(BlockBuilt(self.now(), template.height, template.round, block))

    def _reap(self, max_txs: int, action: BuildBlock) -> list[Transaction]:
        """Our proposal's transactions: the mempool's best, less our own clients' ones peers may not hold
        yet (proposer policy: the monotonic clock read here never enters the block)."""
        lim = self.limits
        hold = self.hold
        if hold is None or not hold.enabled:
            return self.mempool.reap(max_txs=max_txs, max_bytes=lim.max_bytes, max_gas=lim.max_gas)
        now = trio.current_time()
        hold.decay(now)
        held_before = hold.held
        txs = self.mempool.reap(max_txs=max_txs, max_bytes=lim.max_bytes, max_gas=lim.max_gas,
                                may_propose=lambda tx_hash: hold.may_propose(tx_hash, now))
        if hold.held > held_before:
            logger.info("block %d/%d: %d transactions; %d of our clients' held back (not yet gossiped, or "
                        "out for less than %.1f s)", int(action.template.height), int(action.template.round),
                        len(txs), hold.held - held_before, hold.grace_s)
        return txs

    async def _validate(self, action: ValidateBlock) -> None:
        bid = bytes(action.block.id)
        pending = self._pending.get(bid)
        try:
            await self.validate(action.block, pending)
        except _Overtaken:
            pass  # the block is committed: no verdict to give, no disagreement to note
        finally:
            if pending is not None and self._pending.get(bid) is pending:
                del self._pending[bid]

    async def validate(self, block: Block, pending: _PendingValidation | None = None) -> Verdict:
        """Re-execute `block` off the event loop, note disagreements in the mempool, feed the verdict.

        `pending`: this validation's record for `_commit` (raises _Overtaken when the commit came first)."""
        sample = bytes(block.id) not in self._built

        def validate() -> Verdict:
            if pending is not None and not trio.from_thread.run_sync(pending.begin):
                raise _Overtaken
            started = time.perf_counter()  # proposer policy only (node.proposal_size): never in a verdict
            verdict = self.app.validate_block(block)
            if sample and verdict.is_valid:
                self.sizer.observe(len(block.txs), time.perf_counter() - started)
            return verdict

        try:
            verdict = await trio.to_thread.run_sync(validate, limiter=self._app_threads)
        except LocalFault as fault:
            verdict = Verdict.local_fault(str(fault))
        finally:
            if pending is not None:
                pending.done.set()  # before the feed below, which may wait for the loop task `_commit` holds
        if not verdict.is_valid:
            self._note_disagreement(block, verdict)
        # Wrong exact outputs (verdict.wrong_outputs) become evidence inside the machine.
        await self.submit(BlockValidated.of(self.now(), block.id, verdict))
        return verdict

    def _note_disagreement(self, block: Block, verdict: Verdict) -> None:
        """docs/design.md §2.6: a transaction with model work whose output this node did not reproduce is backed
        off in its mempool. Wrong `exact` outputs (verdict.wrong_outputs) prove the proposer wrong instead:
        those transactions stay eligible."""
        exact = set(verdict.wrong_outputs)
        for index in verdict.bad_txs:
            if index in exact or not 0 <= index < len(block.txs):
                continue
            tx = block.txs[index]
            if tx.kind in MODEL_WORK_KINDS:
                self.mempool.report_disagreement(tx.hash, block.header.proposer, block.height)

    async def _sign(self, action: Sign) -> None:
        if self.signer is None:
            return
        if self._replaying:
            return
        signer = self.signer
        wal = self.wal

        def sync_sign_log() -> VoteReceived | ProposalReceived:
            # docs/consensus.md: every input that led to this signature must be durable before the signer
            # persists it, so a restart replays to exactly the stored message (never a different one).
            wal.sync()
            signed = signer.sign(action.message)
            # Our own signed message is durable in the WAL before anything leaves: logged in the same thread
            # call (one hand-off per signature instead of two; the loop task waits for it either way).
            event = (VoteReceived(self.now(), signed) if isinstance(signed, Vote)
                     else ProposalReceived(self.now(), signed))
            wal.append(event, sync=True)
            return event

        try:
            event = await trio.to_thread.run_sync(sync_sign_log, limiter=self._sign_threads)
        except DoubleSignError as exc:
            self.raise_alarm(f"signer refused: {exc}")
            return
        await self.feed(event, logged=True)

    async def _commit(self, action: CommitBlock) -> None:
        block = action.block
        if int(block.height) <= int(self.chain.height):
            return  # already stored (a replay, or block sync got there first)
        pending = self._pending.get(bytes(block.id))
        if pending is not None:  # decided by the others' precommits while our validation was still pending
            if pending.started:
                logger.info("block %d decided while this node validated it: the commit waits for that execution",
                            int(block.height))
                await pending.done.wait()  # its execution is stored: finalize_block stages it, once
            else:
                logger.info("block %d decided before this node's validation of it began: the commit executes it",
                            int(block.height))
                pending.overtaken = True  # it will not execute: finalize_block executes the block, once
        await self.chain.commit(block, action.commit, action.next_proposers.encode())
        if self._replaying:
            return
        self.sizer.decided(len(block.txs), int(action.commit.round))
        if int(action.commit.round) > 0:  # rounds lost at this height (a dropped or late proposal, timeouts)
            logger.info("block %d decided in round %d (built in round %d)", int(block.height),
                        int(action.commit.round), int(block.header.round))
        await self.feed(self.new_height_event(int(block.height) + 1), sync=True)

    async def _report_evidence(self, evidence: Evidence) -> None:
        envelope = EvidenceEnvelope(evidence)

        def store() -> None:
            with self.chain.db.write_batch(sync=True) as batch:
                # Keyed by offence: the commit of any proof of it clears every stored proof of it.
                self._evidence.bind(batch).put(offence_id(evidence), envelope.encode())

        # An fsync: in a worker thread, like every other durable write of the driver (the loop task waits).
        await trio.to_thread.run_sync(store, limiter=self._sign_threads)
        if not self._replaying:
            self._outbox_send.send_nowait(evidence)

    # ---------------------------------------------------------------- NewHeight

    def new_height_event(self, height: int) -> NewHeight:
        app, store = self.app, self.chain.blockstore
        if height == 1:
            proposers = ProposerPriorities.genesis(app.validator_set(Height(1)))
            last_block_id, last_time, last_commit = ZERO_HASH, Timestamp(self.genesis_time), None
            last_validators: tuple[ValidatorEntry, ...] = ()
        else:
            raw = store.next_proposers()
            if raw is None:
                raise StorageError(f"no proposer priorities stored for height {height}")
            proposers = ProposerPriorities.decode(raw)
            last = store.block(height - 1)
            commit = store.commit(height - 1)
            if last is None or commit is None:
                raise StorageError(f"block {height - 1} or its commit is missing")
            last_block_id, last_time, last_commit = last.id, last.header.time, commit
            last_validators = app.validator_set(Height(height - 1)).entries
        return NewHeight(self.now(), Height(height), proposers, app.validator_set(Height(height + 1)).entries,
                         last_validators, last_block_id, last_time, last_commit)

    # ---------------------------------------------------------------- gossip and catch-up inputs

    async def _precheck(self, block: Block) -> None:
        """Run the machine's stateless block check in a worker thread unless it already ran."""
        checks = self._block_checks
        if checks is not None and not checks.is_checked(block):
            await trio.to_thread.run_sync(checks.precheck, block)

    async def on_proposal(self, message: ProposalBlock) -> None:
        await self._precheck(message.block)
        await self.submit(ProposalReceived(self.now(), message))

    async def on_vote(self, vote: Vote) -> None:
        await self.submit(VoteReceived(self.now(), vote))

    async def on_evidence(self, evidence: Evidence, *, confirmed: bool = False) -> None:
        """`confirmed`: the gossip hook already re-ran this wrong-inference claim (on its own limiter)."""
        if isinstance(evidence, WrongInference) and not confirmed:
            confirmed = await trio.to_thread.run_sync(self.app.is_valid_evidence, evidence, limiter=self._app_threads)
            if not confirmed:
                return
        await self.submit(EvidenceReceived(self.now(), evidence))

    async def on_votes_fetched(self, votes: Sequence[Vote]) -> None:
        if votes:
            await self.submit(VotesFetched(self.now(), tuple(votes)))

    async def on_commit_fetched(self, block: Block, commit: Commit) -> None:
        await self._precheck(block)
        await self.submit(CommitFetched(self.now(), block, commit))
