"""The stand-in application behind core.app.Application: deterministic 'inference', verdicts, PoI, slashing.

Every transaction's correct output is a pure function of the transaction (a stand-in for an `exact` model),
so any node can judge a claimed output and WrongInference evidence. A node's PoI answer for height h is
H(challenge(h) ‖ address ‖ h); a lazy validator makes one up, which the app flags when it scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.app import AppInfo, BlockTemplate, FinalizeOutcome, Verdict
from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.evidence import DuplicateProposal, DuplicateVote, Evidence, WrongInference, offence_id
from core.hashing import ZERO_HASH, sha256, sha256_concat
from core.header import PROTOCOL_VERSION, Header, TxResult, TxStatus
from core.keys import PrivateKey
from core.store import WriteBatch
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Address, Gas, Hash32, Height, Timestamp
from core.validators import ValidatorSet

USER = PrivateKey.derive("inferchain sim", "user", 0)


def make_txs(chain_id: str, count: int) -> list[Transaction]:
    """A fixed pool of signed transactions (signed once per process, shared by every run)."""
    return [Transaction.create(USER, chain_id=chain_id, nonce=i, gas_limit=1000, fee=1, kind=7,
                               payload=i.to_bytes(4, "big")) for i in range(count)]


_TX_POOL: dict[str, list[Transaction]] = {}


def tx_pool(chain_id: str) -> list[Transaction]:
    pool = _TX_POOL.get(chain_id)
    if pool is None:
        pool = _TX_POOL[chain_id] = make_txs(chain_id, 64)
    return pool


def correct_output(tx: Transaction) -> Tensor:
    return Tensor(DType.UINT8, (32,), bytes(sha256_concat(b"infer", tx.hash)))


def correct_result(tx: Transaction) -> TxResult:
    return TxResult(TxStatus.OK, Gas(100), (correct_output(tx),), b"", "")


def poi_challenge_output(height: int) -> bytes:
    return bytes(sha256_concat(b"poi-output", height.to_bytes(8, "big")))


def honest_poi(height: int, address: Address) -> Hash32:
    return sha256_concat(poi_challenge_output(height), bytes(address), height.to_bytes(8, "big"))


@dataclass
class Punishments:
    tombstoned: set[bytes] = field(default_factory=set)  # equivocators (public keys)
    wrong_inference: set[bytes] = field(default_factory=set)  # proposers slashed for a wrong exact output
    wrong_poi: dict[bytes, int] = field(default_factory=dict)  # address -> signed wrong PoI answers scored
    evidence_keys: set[Hash32] = field(default_factory=set)


class StandInApp:
    """One node's application. Faults it can model: `lazy_poi` answers, `bad_outputs` when it builds."""

    def __init__(self, chain_id: str, validators: ValidatorSet, genesis_time: int, *, lazy_poi: bool = False,
                 bad_outputs: bool = False) -> None:
        self.disputed_results = False  # the next block built carries a result others cannot reproduce
        self.chain_id = chain_id
        self.validators = validators
        self.genesis_time = genesis_time
        self.lazy_poi = lazy_poi
        self.bad_outputs = bad_outputs
        self.height = 0
        self.last_block_id: Hash32 = ZERO_HASH
        self.last_time = genesis_time
        self.state_root: Hash32 = sha256(b"genesis " + chain_id.encode())
        self.punished = Punishments()
        self.validations = 0

    # The application Protocol -------------------------------------------------------------------------

    def info(self) -> AppInfo:
        return AppInfo(self.chain_id, Height(self.height), self.last_block_id, Timestamp(self.last_time),
                       self.state_root)

    def validator_set(self, height: Height) -> ValidatorSet:
        return self.validators

    def _txs_for(self, height: int) -> tuple[Transaction, ...]:
        pool = tx_pool(self.chain_id)
        n = height % 3  # 0, 1 or 2 transactions
        return tuple(pool[(height * 2 + i) % len(pool)] for i in range(n))

    def _root_after(self, txs_root: Hash32, results_root: Hash32, evidence_hash: Hash32) -> Hash32:
        return sha256_concat(self.state_root, txs_root, results_root, evidence_hash)

    def build_block(self, template: BlockTemplate, txs: Sequence[Transaction] = ()) -> Block:
        chosen = self._txs_for(int(template.height))
        results = [correct_result(tx) for tx in chosen]
        if self.bad_outputs and results:
            bogus = Tensor(DType.UINT8, (32,), bytes(32))
            results[0] = results[0].replace(outputs=(bogus,))
        if self.disputed_results and results:
            # Same output, another gas figure: not a provably wrong exact output, a disagreement (the
            # stand-in for a tolerant model's output that this node does not reproduce).
            results[0] = results[0].replace(gas_used=Gas(results[0].gas_used + 1))
        txs_root = compute_txs_root(chosen)
        results_root = compute_results_root(tuple(results))
        evidence_hash = compute_evidence_hash(template.evidence)
        header = Header(
            version=PROTOCOL_VERSION, chain_id=self.chain_id, height=template.height, round=template.round, time=template.time,
            last_block_id=template.last_block_id, proposer=template.proposer, txs_root=txs_root,
            results_root=results_root, state_root=self._root_after(txs_root, results_root, evidence_hash),
            validators_hash=self.validators.hash, next_validators_hash=self.validators.hash,
            last_commit_hash=compute_last_commit_hash(template.last_commit), evidence_hash=evidence_hash,
            poi_reveal=None)
        return Block(header, chosen, tuple(results), template.last_commit, template.evidence)

    def build_faults(self, block: Block) -> tuple[Hash32, ...]:
        return ()  # no sandbox here: nothing is ever left out for a local fault

    def validate_block(self, block: Block) -> Verdict:
        self.validations += 1
        h = block.header
        if h.height != self.height + 1 or h.last_block_id != self.last_block_id:
            return Verdict.local_fault("block does not follow this node's state")
        if h.time <= self.last_time:
            return Verdict.invalid("block time not after the previous block")
        wrong = [i for i, (tx, r) in enumerate(zip(block.txs, block.results, strict=True))
                 if r.outputs != correct_result(tx).outputs]
        if wrong:
            return Verdict.invalid("wrong inference output", wrong, wrong)
        disputed = [i for i, (tx, r) in enumerate(zip(block.txs, block.results, strict=True))
                    if r != correct_result(tx)]
        if disputed:
            return Verdict.invalid("results this node does not reproduce", disputed)
        for ev in block.evidence:
            if isinstance(ev, WrongInference) and not self.is_valid_evidence(ev):
                return Verdict.invalid("wrong-inference evidence that proves nothing")
        if h.state_root != self._root_after(h.txs_root, h.results_root, h.evidence_hash):
            return Verdict.invalid("state root mismatch")
        return Verdict.valid()

    def finalize_block(self, block: Block, batch: WriteBatch | None = None) -> FinalizeOutcome:
        h = block.header
        assert h.height == self.height + 1, (h.height, self.height)
        punished: list[Evidence] = []
        for ev in block.evidence:
            key = offence_id(ev)
            if key in self.punished.evidence_keys:
                continue
            self.punished.evidence_keys.add(key)
            if isinstance(ev, DuplicateVote | DuplicateProposal):
                self.punished.tombstoned.add(bytes(ev.offender))
            else:
                self.punished.wrong_inference.add(bytes(ev.offender))
            punished.append(ev)
        if block.last_commit is not None:  # score the PoI answers of height h-1 (the real VM does it at h+1)
            ph = int(block.last_commit.height)
            for vote in block.last_commit.precommits:
                if vote.poi is not None and vote.poi != honest_poi(ph, vote.validator_address):
                    addr = bytes(vote.validator_address)
                    self.punished.wrong_poi[addr] = self.punished.wrong_poi.get(addr, 0) + 1
        self.state_root = h.state_root
        self.height = int(h.height)
        self.last_block_id = block.id
        self.last_time = int(h.time)
        return FinalizeOutcome(h.height, h.state_root, (), tuple(punished))

    def poi_commitment(self, height: Height, validator: Address) -> Hash32 | None:
        if self.lazy_poi:
            return sha256_concat(b"made up", int(height).to_bytes(8, "big"))
        return honest_poi(int(height), validator)

    def is_valid_evidence(self, evidence: Evidence) -> bool:
        if not isinstance(evidence, WrongInference):
            return False
        return evidence.result != correct_result(evidence.tx)
