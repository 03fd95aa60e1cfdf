"""The node's gossip hooks: what a message must satisfy against this node's chain to be delivered and relayed.

p2p's pipeline (`p2p.validation`) runs a topic's hook after the size cap and the envelope check, so a hook
sees a decoded value whose signatures verified (transactions excepted: see below); it decides with the node's
state: ACCEPT (deliver and relay), IGNORE (drop without blaming the sender: a stale or far-future height, a set
this node does not know, an honest race) or REJECT (drop and penalize the sender). docs/security.md lists the
attacks each rule answers.

- Votes: a validator of a height next to ours.
- Proposals: the proposer of that height and round, for a round at most `PROPOSAL_ROUND_WINDOW` ahead of
  ours, and at most two different blocks per height and round (the second is an equivocation, kept so
  consensus can prove it): nothing else reaches the WAL.
- Evidence: against a validator of a recent height; a wrong-inference claim is re-executed here, on its own
  limiter (one check at a time, a short queue, one check per offence), before it is relayed; a false claim
  is REJECTed.
- Transactions (`TxAdmission`): a batch is relayed only when this node's mempool admits every transaction in
  it; cheap state checks come before signature checks, signature checks are budgeted per peer, and only
  faults that do not depend on our state count against the sender.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import trio

from consensus.proposer import ProposerPriorities
from core.block import ProposalBlock
from core.compact import CompactProposal
from core.errors import InferchainError, InvalidSignature
from core.evidence import Evidence, WrongInference, evidence_height, offence_id
from core.hashing import sha256
from core.header import TxResult
from core.tx import Transaction
from core.types import Address, Height
from core.votes import Vote
from node.chain import Chain
from node.mempool import AccountInfo, Mempool
from node.sigcache import SigCache, verify_off_loop_if_many
from p2p.envelope import decode_tx_batch
from p2p.messages import TxBatch
from p2p.validation import DecodeOnly, GossipMessage, GossipVerdict
from vm.evidence import NOT_COMMITTED

# Proposals for rounds further than this ahead of the round this node is in are not relayed.
PROPOSAL_ROUND_WINDOW = 4
# Different blocks relayed per height and round: the proposal, and one twin that proves an equivocation.
PROPOSALS_PER_ROUND = 2
# Wrong-inference checks waiting for the evidence limiter beyond the running one; more are IGNOREd.
EVIDENCE_QUEUE = 4
# Offences whose check result is remembered.
EVIDENCE_MEMORY = 4096


def membership_verdict(chain: Chain, height: int, public_key: bytes, *, behind: int = 1,
                       ahead: int = 1) -> GossipVerdict:
    """Is `public_key` a validator of `height`? Heights outside [next - behind, next + ahead] (next: the
    height being decided) and sets this node cannot compute are IGNOREd; a non-member is REJECTed."""
    current = int(chain.height) + 1
    if height < current - behind or height > current + ahead:
        return GossipVerdict.IGNORE
    try:
        vset = chain.app.validator_set(Height(height))
    except (ValueError, LookupError, InferchainError):
        return GossipVerdict.IGNORE
    return GossipVerdict.ACCEPT if vset.get_by_key(public_key) is not None else GossipVerdict.REJECT


def get_proposer_priorities(chain: Chain, height: int) -> ProposerPriorities | None:
    """The proposer priorities of `height` (the one being decided, or the next); None when this node cannot
    compute them (another height, a set it does not know yet)."""
    current = int(chain.height) + 1
    if not current <= height <= current + 1:
        return None
    try:
        # What is stored, not `chain.height`: a commit in progress has stored the next priorities already.
        stored, raw = chain.blockstore.stored_next_proposers()
        if stored == 0:
            priorities = ProposerPriorities.genesis(chain.app.validator_set(Height(1)))
        elif raw is None:
            return None
        else:
            priorities = ProposerPriorities.decode(raw)
        if height == int(stored) + 2:
            priorities = priorities.advance(chain.app.validator_set(Height(height)))
        elif height != int(stored) + 1:
            return None
    except (ValueError, LookupError, InferchainError):
        return None
    return priorities


def proposal_verdict(chain: Chain, proposal: ProposalBlock | CompactProposal, our_round: int = 0) -> GossipVerdict:
    """A proposal is relayed only from the proposer of its height and round, for a height next to ours and a
    round at most `PROPOSAL_ROUND_WINDOW` ahead of `our_round` (0 for the next height). A validator signing
    a proposal for a round it does not propose in is REJECTed."""
    p = proposal.proposal
    height, round_ = int(p.height), int(p.round)
    current = int(chain.height) + 1
    verdict = membership_verdict(chain, height, p.proposer, behind=0)
    if verdict is not GossipVerdict.ACCEPT:
        return verdict
    base = our_round if height == current else 0
    if round_ > base + PROPOSAL_ROUND_WINDOW:
        return GossipVerdict.IGNORE
    priorities = get_proposer_priorities(chain, height)
    if priorities is None:
        return GossipVerdict.IGNORE
    member = priorities.validator_set().get_by_key(p.proposer)
    if member is None or member.address != priorities.proposer(round_):
        return GossipVerdict.REJECT
    return GossipVerdict.ACCEPT


def vote_verdict(chain: Chain, vote: Vote) -> GossipVerdict:
    """A vote is relayed only from a validator of its height, for a height next to ours."""
    return membership_verdict(chain, int(vote.height), vote.validator)


def evidence_verdict(chain: Chain, evidence: Evidence, max_age: int) -> GossipVerdict:
    """Evidence is relayed only against a validator of its height, within `max_age` heights.

    Checking a WrongInference piece means re-running a model, so this cheap membership check comes first:
    a peer cannot make us run models with evidence against keys that never validated.
    """
    return membership_verdict(chain, int(evidence_height(evidence)), evidence.offender, behind=max_age)


class ProposalWindow:
    """At most `PROPOSALS_PER_ROUND` different blocks per (height, round) pass; forgets heights below ours."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[int, int], set[bytes]] = {}

    def is_admitted(self, current: int, proposal: ProposalBlock | CompactProposal) -> bool:
        for key in [k for k in self._blocks if k[0] < current]:
            del self._blocks[key]
        key = (int(proposal.proposal.height), int(proposal.proposal.round))
        blocks = self._blocks.setdefault(key, set())
        block_id = bytes(proposal.proposal.block_id)
        if block_id in blocks:
            return True
        if len(blocks) >= PROPOSALS_PER_ROUND:
            return False
        blocks.add(block_id)
        return True


# True: the claim is proven; False: it is false (its sender is blamed); None: this node cannot tell now.
EvidenceCheck = Callable[[Evidence], "bool | None"]


@runtime_checkable
class WrongInferenceChecks(Protocol):
    """What the application offers for wrong-inference claims (vm.app.VMApplication): cheap checks first."""

    def precheck_wrong_inference(self, evidence: WrongInference, committed: TxResult | None) -> str | None: ...

    def check_wrong_inference(self, evidence: WrongInference) -> bool | None: ...


class EvidenceChecks:
    """Re-executes wrong-inference claims before relay: one check at a time on this limiter (never the
    driver's build/validate one), at most `EVIDENCE_QUEUE` waiting, one check per offence (`offence_id`)."""

    def __init__(self, check: EvidenceCheck) -> None:
        self._check = check
        self._limiter = trio.CapacityLimiter(1)
        self._waiting = 0
        self._results: OrderedDict[bytes, tuple[bytes, bool]] = OrderedDict()  # offence -> (evidence hash, ok)
        self.runs = 0

    def is_confirmed(self, evidence: Evidence) -> bool:
        """Whether this exact piece was checked and found true (the driver need not check it again)."""
        known = self._results.get(bytes(offence_id(evidence)))
        return known is not None and known == (bytes(sha256(evidence.encode())), True)

    async def verdict(self, evidence: WrongInference) -> GossipVerdict:
        offence = bytes(offence_id(evidence))
        digest = bytes(sha256(evidence.encode()))
        known = self._results.get(offence)
        if known is not None:
            if known[0] != digest:
                return GossipVerdict.IGNORE  # another proof of an offence already checked: one check each
            return GossipVerdict.IGNORE if known[1] else GossipVerdict.REJECT  # true: relayed once already
        if self._waiting >= EVIDENCE_QUEUE:
            return GossipVerdict.IGNORE  # busy: drop it unjudged, blame nobody
        self._waiting += 1
        try:
            async with self._limiter:
                known = self._results.get(offence)
                if known is None:
                    self.runs += 1
                    ok = await trio.to_thread.run_sync(self._check, evidence)
                    if ok is None:
                        return GossipVerdict.IGNORE  # our own fault: no relay, no blame, not remembered
                    known = (digest, ok)
                    self._results[offence] = known
                    while len(self._results) > EVIDENCE_MEMORY:
                        self._results.popitem(last=False)
                    return GossipVerdict.ACCEPT if ok else GossipVerdict.REJECT
        finally:
            self._waiting -= 1
        return GossipVerdict.IGNORE  # checked meanwhile (another copy of the same offence)


class GossipHooks:
    """The verdict functions over this node's chain, as p2p's state hooks (`p2p.validation.StateHook`).

    `our_round` returns the round consensus is in (0 before it runs); `check_evidence` confirms a
    wrong-inference claim by re-running the model (the application's `is_valid_evidence`).
    """

    def __init__(self, chain: Chain, evidence_max_age: int, *, our_round: Callable[[], int] | None = None,
                 check_evidence: EvidenceCheck | None = None) -> None:
        self._chain = chain
        self._evidence_max_age = evidence_max_age
        self._our_round = our_round or (lambda: 0)
        self._proposals = ProposalWindow()
        self.evidence_checks = EvidenceChecks(check_evidence or self._check_wrong_inference)

    def _check_wrong_inference(self, evidence: Evidence) -> bool | None:
        """The VM's cheap checks first (proofs, membership, the model, the committed result), then the
        model run only for a claim they cannot refute (runs in a worker thread, on the evidence limiter)."""
        app = self._chain.app
        if not isinstance(evidence, WrongInference) or not isinstance(app, WrongInferenceChecks):
            return app.is_valid_evidence(evidence)
        store = self._chain.blockstore
        location = store.tx_location(bytes(evidence.tx.hash))
        block = None if location is None else store.block(location.height)
        committed = None if block is None or location is None else block.results[location.index]
        reason = app.precheck_wrong_inference(evidence, committed)
        if reason is not None:
            # Not committed (yet) here may mean this node is behind: no blame; anything else is a false claim.
            return None if committed is None and reason == NOT_COMMITTED else False
        return app.check_wrong_inference(evidence)

    async def proposal(self, message: GossipMessage) -> GossipVerdict:
        value: ProposalBlock | CompactProposal = message.value
        verdict = proposal_verdict(self._chain, value, self._our_round())
        if verdict is GossipVerdict.ACCEPT and not self._proposals.is_admitted(int(self._chain.height) + 1, value):
            return GossipVerdict.IGNORE
        return verdict

    async def vote(self, message: GossipMessage) -> GossipVerdict:
        value: Vote = message.value
        return vote_verdict(self._chain, value)

    async def evidence(self, message: GossipMessage) -> GossipVerdict:
        value: Evidence = message.value.evidence  # the EvidenceEnvelope the envelope check decoded
        verdict = evidence_verdict(self._chain, value, self._evidence_max_age)
        if verdict is not GossipVerdict.ACCEPT or not isinstance(value, WrongInference):
            return verdict
        return await self.evidence_checks.verdict(value)


# ------------------------------------------------------------------------------------------- transactions


def defer_signature_check(tx: Transaction, tx_hash: bytes) -> bool:
    """The transactions topic's envelope check verifies no signature: `TxAdmission` does, after the cheap
    state checks, within the sender's budget (p2p's `decode_tx_batch` takes this as its verifier)."""
    return True


def tx_envelope(chain_id: str) -> DecodeOnly:
    """The transactions topic's envelope check as the node wires it: decode the batch, chain id, hashes,
    duplicates, no signature (`defer_signature_check`); decode-only, so the pipeline runs it on the event loop
    below `p2p.validation.DECODE_INLINE_BYTES` and the batch's one thread trip, if any, is the hook's."""
    return DecodeOnly(functools.partial(decode_tx_batch, chain_id=chain_id, verify=defer_signature_check))


def is_unfunded(balance: int, tx: Transaction) -> bool:
    """The sender's committed balance cannot pay even this transaction's fee (a nonexistent account has 0)."""
    return balance < tx.fee


@dataclass(frozen=True, slots=True)
class TxGossipLimits:
    """Per-peer budgets of the transactions topic. Defaults are several times what the bench's maximum load
    asks of one peer (docs/security.md)."""

    verify_per_s: float = 4_000.0  # signature checks per second per peer
    verify_burst: float = 16_000.0
    unfunded_tolerance: float = 2_048.0  # unfunded-sender transactions (decaying tally) before a penalty
    unfunded_half_life_s: float = 30.0
    peers: int = 1024  # peers whose budgets are remembered


@dataclass(slots=True)
class _PeerBudget:
    tokens: float
    unfunded: float
    at: float


@dataclass(frozen=True, slots=True)
class TxAdmissionCounts:
    """What one batch came to (for tests and metrics)."""

    admitted: int = 0  # newly in our mempool, or already there
    unfunded: int = 0
    refused: int = 0  # by the mempool (a stale nonce, full, ...): an honest race, no blame
    unverified: int = 0  # over the peer's signature budget: not looked at


Relay = Callable[[Transaction], Awaitable[None]]


class TxAdmission:
    """The transactions topic's hook: admit a batch into the mempool, relay it only if every transaction got
    in, re-batch (through `relay`) what got in from a batch that is not relayed.

    Order of work per transaction, cheapest first: already in the mempool → skip; sender unfunded in the
    committed state (`is_unfunded`) → tallied against the peer, no signature check; nonce already used →
    skip (an honest race); then the signature, within the peer's budget of checks per second; then the
    mempool's own checks. A sender with pending transactions is judged on the mempool's copy of its committed
    account (`Mempool.known_account`), which the mempool's own checks use anyway; the state is read only for
    other senders and whenever that copy would refuse (the state then decides, and any blame). A bad
    signature REJECTs the batch; a peer whose unfunded tally passes the tolerance is REJECTed (penalized) for
    each further such batch; nothing else blames the sender.
    """

    def __init__(self, account: Callable[[Address], AccountInfo], mempool: Mempool, sig_cache: SigCache,
                 relay: Relay | None = None, limits: TxGossipLimits | None = None,
                 clock: Callable[[], float] = trio.current_time, is_syncing: Callable[[], bool] | None = None) -> None:
        """`is_syncing`: while it says so, batches are IGNOREd unexamined: a node still syncing blocks cannot
        tell an unfunded sender from one funded in a block it has not reached."""
        self._account = account
        self._is_syncing = is_syncing or (lambda: False)
        self._mempool = mempool
        self._sig_cache = sig_cache
        self._relay = relay
        self.limits = limits or TxGossipLimits()
        self._clock = clock
        self._peers: OrderedDict[str, _PeerBudget] = OrderedDict()
        self._threads = trio.CapacityLimiter(1)
        self.last = TxAdmissionCounts()
        self.signatures_checked = 0

    def _budget(self, peer: str) -> _PeerBudget:
        now = self._clock()
        budget = self._peers.get(peer)
        lim = self.limits
        if budget is None:
            budget = _PeerBudget(lim.verify_burst, 0.0, now)
            self._peers[peer] = budget
            while len(self._peers) > lim.peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(peer)
            elapsed = max(0.0, now - budget.at)
            budget.tokens = min(lim.verify_burst, budget.tokens + elapsed * lim.verify_per_s)
            budget.unfunded *= math.pow(0.5, elapsed / lim.unfunded_half_life_s)
            budget.at = now
        return budget

    def unfunded_tally(self, peer: str) -> float:
        return self._budget(peer).unfunded

    async def __call__(self, message: GossipMessage) -> GossipVerdict:
        batch: TxBatch = message.value
        if self._is_syncing():
            return GossipVerdict.IGNORE
        budget = self._budget(str(message.forwarder))
        admitted = unfunded = refused = 0
        to_verify: list[tuple[Transaction, bytes]] = []
        height = self._mempool.height
        read: dict[bytes, AccountInfo] = {}  # accounts read from the state, for the mempool's new senders
        for i, tx in enumerate(batch.txs):
            if i and i % 256 == 0:
                await trio.lowlevel.checkpoint()
            tx_hash = bytes(tx.hash)
            if tx_hash in self._mempool:
                admitted += 1
                continue
            sender = tx.sender_address
            account = self._mempool.known_account(sender)
            if account is None or is_unfunded(int(account.balance), tx) or tx.nonce < int(account.nonce):
                account = read[bytes(sender)] = self._account(sender)  # committed state
            if is_unfunded(int(account.balance), tx):
                unfunded += 1
            elif tx.nonce < int(account.nonce):
                refused += 1
            else:
                to_verify.append((tx, tx_hash))
        allowed = min(len(to_verify), int(budget.tokens))
        budget.tokens -= allowed
        unverified = len(to_verify) - allowed
        checking = to_verify[:allowed]
        if checking:
            unseen = self._sig_cache.unverified(checking)
            ok = await verify_off_loop_if_many(self._sig_cache.verify_new, unseen, self._threads)
            self.signatures_checked += len(checking)
            if not ok:
                raise InvalidSignature(f"a transaction of batch {message.msg_id.hex()[:16]} is badly signed")
        added: list[Transaction] = []
        if self._mempool.height != height:
            read.clear()  # a block was committed meanwhile: the mempool reads its new senders itself
        for i, (tx, _) in enumerate(checking):
            if i and i % 256 == 0:
                await trio.lowlevel.checkpoint()
                if self._mempool.height != height:
                    read.clear()
            result = self._mempool.add(tx, signature_checked=True, account=read.get(bytes(tx.sender_address)))
            if not result.accepted:
                refused += 1
                continue
            admitted += 1
            if result.added:
                added.append(tx)
        self.last = TxAdmissionCounts(admitted, unfunded, refused, unverified)
        budget.unfunded += unfunded
        if admitted == len(batch.txs):
            return GossipVerdict.ACCEPT  # gossipsub relays the batch as it came
        if self._relay is not None:
            for tx in added:
                await self._relay(tx)  # our own batches carry what we admitted
        if unfunded and budget.unfunded > self.limits.unfunded_tolerance:
            return GossipVerdict.REJECT
        return GossipVerdict.IGNORE

