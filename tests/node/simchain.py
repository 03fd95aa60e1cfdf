"""A small deterministic chain behind the RPC's `NodeApi` Protocol, for testing the RPC layer on its own.

Real parts throughout: signed transactions, real blocks whose header roots match their bodies, commits
signed by real validator keys, account state in the real authenticated map (so state proofs are real), the
VM's own key layout and records. Only the execution is simplified (transfers only), which is all the RPC
layer needs; the full node is tested end to end in tests/e2e.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import numpy as np

from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.hashing import ZERO_HASH
from core.header import PROTOCOL_VERSION, Header, TxResult, TxStatus
from core.keys import PrivateKey
from core.merkle import merkle_proof
from core.state import AuthenticatedMap
from core.store import MemoryStore
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, Round, Timestamp
from core.validators import ValidatorEntry, ValidatorSet
from core.votes import ZERO_SIGNATURE, Commit, Vote, VoteType
from node.chainindex import AccountTx, ChainIndex
from node.events import EventHub, TxOutcome, TxState
from node.views import (
    TX_COMMITTED,
    TX_PENDING,
    TX_REJECTED,
    TX_UNKNOWN,
    AccountView,
    InferenceView,
    ModelView,
    ResidentView,
    StatusView,
    SubmitVerdict,
    TxStatusView,
    TxView,
    ValidatorsView,
    ValidatorView,
)
from vm.poi import PoiOutcome
from vm.resident import MAX_RESIDENT_MODELS
from vm.state import Account, account_key
from vm.txs import Infer, Transfer, TxKind

CHAIN_ID = "rpc-test"
SEED = "rpc test seed, publicly known"
GENESIS_TIME = 1_700_000_000_000


class SimChain:
    def __init__(self, n_validators: int = 4, n_accounts: int = 3, balance: int = 10**12) -> None:
        self.validator_keys = [PrivateKey.derive(SEED, "validator", i) for i in range(n_validators)]
        self.account_keys = [PrivateKey.derive(SEED, "account", i) for i in range(n_accounts)]
        self.vset = ValidatorSet([ValidatorEntry(k.public_key, 100) for k in self.validator_keys])
        self.state = AuthenticatedMap(MemoryStore())
        self.accounts: dict[Address, Account] = {
            k.address: Account(Amount(balance), Nonce(0)) for k in self.account_keys}
        self.state.commit(0, {account_key(a): acc.encode() for a, acc in self.accounts.items()})
        self.blocks: list[Block] = []
        self.commits: dict[int, Commit] = {}
        self.tx_index: dict[bytes, tuple[int, int]] = {}
        self.pending: list[Transaction] = []
        self.refuse_reason: str | None = None
        self.events = EventHub()  # the node's hub, as a node has one
        # The explorer's index over an in-memory store, brought up to date after each block.
        self.index = ChainIndex(MemoryStore(), lambda h: self.blocks[h - 1] if 1 <= h <= self.height() else None,
                                self.height, lambda h: [(e.address, int(e.power)) for e in self.vset])
        self.round = 0

    # -- producing

    def height(self) -> int:
        return len(self.blocks)

    def produce(self) -> Block:
        """Commit one block with every pending transaction (transfers move funds; infers echo their input)."""
        txs, self.pending = tuple(self.pending), []
        h = self.height() + 1
        changes: dict[bytes, bytes] = {}
        results = []
        for tx in txs:
            sender = tx.sender_address
            acc = self.accounts[sender]
            acc = Account(Amount(acc.balance - tx.fee), Nonce(acc.nonce + 1))
            outputs: tuple[Tensor, ...] = ()
            if tx.kind == TxKind.TRANSFER:
                t = Transfer.decode(tx.payload)
                acc = Account(Amount(acc.balance - t.amount), acc.nonce)
                to = self.accounts.get(t.to, Account(Amount(0), Nonce(0)))
                self.accounts[t.to] = Account(Amount(to.balance + t.amount), to.nonce)
                changes[account_key(t.to)] = self.accounts[t.to].encode()
            elif tx.kind == TxKind.INFER:
                outputs = (Tensor.from_numpy(Infer.decode(tx.payload).inputs[0].to_numpy() * 2),)
            self.accounts[sender] = acc
            changes[account_key(sender)] = acc.encode()
            results.append(TxResult(TxStatus.OK, Gas(1000), outputs, b"", ""))
        root = self.state.commit(h, changes)
        last_commit = self.commits.get(h - 1)
        prev = self.blocks[-1].id if self.blocks else ZERO_HASH
        header = Header(PROTOCOL_VERSION, CHAIN_ID, Height(h), Round(0), Timestamp(GENESIS_TIME + 1000 * h), prev,
                        self.validator_keys[h % len(self.validator_keys)].address, compute_txs_root(txs),
                        compute_results_root(tuple(results)), root, self.vset.hash, self.vset.hash,
                        compute_last_commit_hash(last_commit), compute_evidence_hash(()), None)
        block = Block(header, txs, tuple(results), last_commit, ())
        block.validate_basic()
        votes = tuple(Vote(VoteType.PRECOMMIT, Height(h), Round(0), block.id, Timestamp(header.time + 10),
                           k.public_key, ZERO_HASH, ZERO_SIGNATURE).signed(k, CHAIN_ID)
                      for k in self.validator_keys)
        self.commits[h] = Commit(Height(h), Round(0), block.id, votes)
        self.blocks.append(block)
        for i, tx in enumerate(txs):
            self.tx_index[bytes(tx.hash)] = (h, i)
        self.index.catch_up()
        self.events.block_committed(block)
        return block

    def reject(self, tx_hash: Hash32, reason: str) -> None:
        """The transaction leaves the mempool after entry, as a node evicts one (validators disagreed...)."""
        self.pending = [tx for tx in self.pending if tx.hash != tx_hash]
        self.events.tx_rejected(tx_hash, reason)

    def transfer(self, sender: int, to: Address, amount: int, nonce: int | None = None) -> Transaction:
        key = self.account_keys[sender]
        n = self.accounts[key.address].nonce + sum(
            1 for t in self.pending if t.sender_address == key.address) if nonce is None else nonce
        return Transaction.create(key, chain_id=CHAIN_ID, nonce=n, gas_limit=1000, fee=1000,
                                  kind=TxKind.TRANSFER, payload=Transfer(to, Amount(amount)).encode())

    def infer(self, sender: int, values: list[float]) -> Transaction:
        key = self.account_keys[sender]
        n = self.accounts[key.address].nonce + sum(1 for t in self.pending if t.sender_address == key.address)
        payload = Infer(Hash32(b"\x07" * 32), (Tensor.from_numpy(np.array(values, dtype=np.float32)),),
                        Amount(0))
        return Transaction.create(key, chain_id=CHAIN_ID, nonce=n, gas_limit=5000, fee=5000,
                                  kind=TxKind.INFER, payload=payload.encode())

    # -- NodeApi

    def status(self) -> StatusView:
        last = self.blocks[-1] if self.blocks else None
        return StatusView(
            chain_id=CHAIN_ID, node_id="12D3KooWSimChain", moniker="sim", validator=self.validator_keys[0].address,
            height=Height(self.height()), block_id=last.id if last else ZERO_HASH,
            block_time=last.header.time if last else Timestamp(GENESIS_TIME),
            state_root=self.state.root(self.height()), round=self.round, peers=3,
            mempool_size=len(self.pending), mempool_bytes=sum(len(t.encode()) for t in self.pending),
            catching_up=False, is_validator=True)

    def block(self, height: Height | None) -> tuple[Block, Commit | None] | None:
        h = self.height() if height is None else int(height)
        if not 1 <= h <= self.height():
            return None
        return self.blocks[h - 1], self.commits.get(h)

    def account_txs(self, address: Address, limit: int,
                    before: tuple[int, int] | None = None) -> Sequence[AccountTx]:
        return self.index.account_txs(address, limit, before)

    def model_calls(self, model_id: Hash32) -> int:
        return self.index.model_calls(model_id)

    def poi_outcomes(self, height: int) -> Sequence[tuple[Address, PoiOutcome]] | None:
        return self.index.poi_outcomes(height)

    def block_height(self, block_id: Hash32) -> Height | None:
        return next((b.height for b in self.blocks if b.id == block_id), None)

    def tx(self, tx_hash: Hash32) -> TxView | None:
        loc = self.tx_index.get(bytes(tx_hash))
        if loc is None:
            return None
        block = self.blocks[loc[0] - 1]
        return TxView(block.txs[loc[1]], block.results[loc[1]], block.height, loc[1], block.header.time)

    def tx_status(self, tx_hash: Hash32) -> TxStatusView:
        """As `node.queries.Queries.tx_status`: the block index, the pending list, then the hub's rejections."""
        loc = self.tx_index.get(bytes(tx_hash))
        if loc is not None:
            return TxStatusView(tx_hash, TX_COMMITTED, Height(loc[0]), loc[1])
        if any(tx.hash == tx_hash for tx in self.pending):
            return TxStatusView(tx_hash, TX_PENDING)
        outcome = self.events.outcome(tx_hash)
        if outcome is not None and outcome.state is TxState.REJECTED:
            return TxStatusView(tx_hash, TX_REJECTED, reason=outcome.reason)
        return TxStatusView(tx_hash, TX_UNKNOWN)

    def account(self, address: Address, height: Height | None) -> AccountView:
        h = self.height() if height is None else int(height)
        key = account_key(address)
        value = self.state.get(key, h)
        acc = Account.decode(value) if value is not None else Account(Amount(0), Nonce(0))
        return AccountView(address, Height(h), self.state.root(h), key, value, int(acc.balance), int(acc.nonce),
                           self.state.prove(key, h))

    def validators(self, height: Height | None) -> ValidatorsView:
        return ValidatorsView(Height(self.height() + 1), self.vset.total_power, tuple(
            ValidatorView(e.address, bytes(e.public_key), int(e.power), e.address, int(e.power), False, 0, False,
                          self.height(), 0, i, 0, 0, True)
            for i, e in enumerate(self.vset)))

    def model(self, model_id: Hash32) -> ModelView | None:
        return None

    def models(self, after: Hash32 | None = None, limit: int = 100) -> Sequence[ModelView]:
        return []

    def deferred_model(self, model_id: Hash32) -> ModelView | None:
        return None  # this chain never defers a registration

    def retired_model(self, model_id: Hash32) -> ModelView | None:
        return None  # this chain never retires a model

    def model_name(self, name: str) -> Hash32 | None:
        return None

    def resident_models(self, model_bytes: int | None = None) -> ResidentView:
        """This chain holds no resident models and publishes no bound (its `params` are None): nothing fits."""
        refusal = None if model_bytes is None else "this chain publishes no vm.max_resident_bytes"
        return ResidentView(Height(self.height()), 0, (), 0, MAX_RESIDENT_MODELS, refusal)

    def inference(self, tx_hash: Hash32) -> InferenceView | None:
        loc = self.tx_index.get(bytes(tx_hash))
        if loc is None or loc[0] not in self.commits:
            return None
        block = self.blocks[loc[0] - 1]
        i = loc[1]
        return InferenceView(block.txs[i], block.results[i], block.height, i, block.header,
                             merkle_proof([t.hash for t in block.txs], i),
                             merkle_proof([r.encode() for r in block.results], i), self.commits[loc[0]])

    def params(self) -> None:
        """A chain without published parameters: the RPC answers NOT_READY (clients fall back to genesis)."""
        return None

    async def wait_for_tx(self, tx_hash: Hash32) -> TxOutcome:
        """As `node.queries.Queries.wait_for_tx`: the block store first, then the hub."""
        loc = self.tx_index.get(bytes(tx_hash))
        if loc is not None:
            block = self.blocks[loc[0] - 1]
            return TxOutcome(tx_hash, TxState.COMMITTED, block.height, loc[1], block.results[loc[1]])
        return await self.events.wait_for_tx(tx_hash)

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[SubmitVerdict]:
        out = []
        for tx in txs:
            if self.refuse_reason is not None:
                out.append(SubmitVerdict(tx.hash, False, self.refuse_reason))
            elif tx.chain_id != CHAIN_ID:
                out.append(SubmitVerdict(tx.hash, False, f"wrong chain id {tx.chain_id!r}"))
            elif not tx.verify_signature():
                out.append(SubmitVerdict(tx.hash, False, "bad signature"))
            elif tx.nonce < self.accounts.get(tx.sender_address, Account(Amount(0), Nonce(0))).nonce:
                out.append(SubmitVerdict(tx.hash, False, "nonce already used"))
            else:
                self.pending.append(tx)
                out.append(SubmitVerdict(tx.hash, True))
        return out

    def committed_blocks(self) -> AbstractAsyncContextManager[AsyncIterator[Block]]:
        return self.events.committed_blocks()
