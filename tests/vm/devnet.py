"""A test harness that plays consensus for VM applications: it proposes with one node, validates with the
others, signs precommits (with PoI commitments) with the genesis validator keys, and finalizes every node in
a real LevelDB write batch. No consensus code: only the Application Protocol calls, in their real order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.app import BlockTemplate, FinalizeOutcome, Verdict
from core.blobs import BlobStore
from core.block import Block, ProposalBlock
from core.evidence import Evidence
from core.hashing import ZERO_HASH
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Hash32, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Commit, Proposal, Vote, VoteType
from node.leveldb import LevelDBStore
from tools.genesis import account_key, make_genesis, validator_key
from vm.app import VMApplication
from vm.genesis import Genesis, parse_genesis
from vm.process import candidates
from vm.retire import DEPOSIT_ESCROW
from vm.sandbox.executor import Executor, LocalExecutor
from vm.state import RegistrationData, UnbondingQueue, ValidatorPool, pool_key, unbonding_key
from vm.txs import ModelMeta, build_tx

ABSENT = "absent"


def devnet_genesis(validators: int = 4, **overrides: dict[str, Any]) -> Genesis:
    doc = make_genesis(validators, overrides=overrides)
    return parse_genesis(doc)


@dataclass
class Devnet:
    genesis: Genesis
    apps: list[VMApplication]
    keys: dict[Address, PrivateKey]
    height: int = 0
    time: int = 0
    last_commit: Commit | None = None
    last_block_id: Hash32 = ZERO_HASH
    blocks: list[Block] = field(default_factory=list)
    nonces: dict[Address, int] = field(default_factory=dict)

    alarms: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, tmp_path: Path, genesis: Genesis | None = None, nodes: int = 1,
              executor: Callable[[], Executor] = LocalExecutor,
              executors: Sequence[Callable[[], Executor]] | None = None,
              blobs: Callable[[int], BlobStore] | None = None,
              body_checked: Callable[[Block], bool] | None = None) -> Devnet:
        """`nodes` applications, each on its own LevelDB; `executors` gives each its own sandbox, `blobs(i)`
        node i's blob store (default: in memory); `body_checked` as a node passes it (its BlockChecks)."""
        genesis = genesis or devnet_genesis()
        factories = list(executors) if executors is not None else [executor] * nodes
        alarms: list[str] = []
        apps = [VMApplication(LevelDBStore(tmp_path / f"node{i}"), genesis, executor=factory(),
                              alarm=alarms.append, blobs=None if blobs is None else blobs(i),
                              body_checked=body_checked)
                for i, factory in enumerate(factories)]
        seed = genesis.seed_phrase
        assert seed is not None
        keys = {}
        for i in range(len(genesis.validators)):
            key = validator_key(seed, i)
            keys[key.address] = key
        return cls(genesis, apps, keys, time=int(genesis.genesis_time), alarms=alarms)

    def close(self) -> None:
        for app in self.apps:
            app.close()
            app.store.close()

    # ------------------------------------------------------------------------------------------ accounts

    def account(self, i: int) -> PrivateKey:
        assert self.genesis.seed_phrase is not None
        return account_key(self.genesis.seed_phrase, i)

    def tx(self, key: PrivateKey, payload: Any, *, gas_limit: int = 100_000, fee: int | None = None,
           nonce: int | None = None) -> Transaction:
        if nonce is None:
            nonce = self.nonces.get(key.address, self.apps[0].view().account(key.address).nonce)
        self.nonces[key.address] = nonce + 1
        price = self.genesis.params.vm.min_gas_price
        return build_tx(key, payload, chain_id=self.genesis.chain_id, nonce=nonce, gas_limit=gas_limit,
                        fee=gas_limit * price if fee is None else fee)

    # ------------------------------------------------------------------------------------------ blocks

    def proposer_for(self, height: int) -> Address:
        vset = self.apps[0].validator_set(Height(height))
        return vset.entries[height % len(vset)].address

    def template(self, evidence: Sequence[Evidence] = (), proposer: Address | None = None) -> BlockTemplate:
        h = self.height + 1
        return BlockTemplate(self.genesis.chain_id, Height(h), Round(0), Timestamp(self.time + 1000),
                             proposer or self.proposer_for(h), self.last_block_id, self.last_commit,
                             tuple(evidence))

    def propose(self, txs: Sequence[Transaction] = (), *, node: int = 0, evidence: Sequence[Evidence] = (),
                proposer: Address | None = None) -> Block:
        return self.apps[node].build_block(self.template(evidence, proposer), txs)

    def sign_proposal(self, block: Block) -> ProposalBlock:
        key = self.keys[block.header.proposer]
        proposal = Proposal(block.height, Round(0), -1, block.id, block.header.time, key.public_key,
                            ZERO_SIGNATURE).signed(key, self.genesis.chain_id)
        return ProposalBlock(proposal, block)

    def validate(self, block: Block, nodes: Sequence[int] | None = None) -> list[Verdict]:
        nodes = range(1, len(self.apps)) if nodes is None else nodes
        return [self.apps[i].validate_block(block) for i in nodes]

    def precommits(self, block: Block, poi: dict[Address, Hash32 | str | None] | None = None) -> Commit:
        """Every validator of the height precommits; `poi` overrides commitments (ABSENT leaves a vote out)."""
        h = int(block.height)
        vset = self.apps[0].validator_set(Height(h))
        votes = []
        for entry in vset.entries:
            key = self.keys[entry.address]
            override = (poi or {}).get(entry.address, "honest")
            if override == ABSENT:
                continue
            commitment = self.apps[0].poi_commitment(Height(h), entry.address) if override == "honest" else override
            vote = Vote(VoteType.PRECOMMIT, Height(h), Round(0), block.id, Timestamp(block.header.time + 1),
                        key.public_key, commitment, ZERO_SIGNATURE)  # type: ignore[arg-type]
            votes.append(vote.signed(key, self.genesis.chain_id))
        return Commit(Height(h), Round(0), block.id, tuple(votes))

    def commit(self, block: Block, poi: dict[Address, Hash32 | str | None] | None = None) -> list[FinalizeOutcome]:
        commit = self.precommits(block, poi)
        outcomes = []
        for app in self.apps:
            with app.store.write_batch(sync=False) as batch:
                outcome = app.finalize_block(block, batch)
            assert outcome.state_root == block.header.state_root
            outcomes.append(outcome)
        self.height = int(block.height)
        self.time = int(block.header.time)
        self.last_commit = commit
        self.last_block_id = block.id
        self.blocks.append(block)
        return outcomes

    def holdings(self) -> int:
        """balances + stakes + unbonding + delegators' reward pools, summed record by record over every
        account and validator the harness knows (genesis accounts, model owners, any key it signed with,
        every validator record)."""
        view = self.apps[0].view()
        accounts = {a.address for a in self.genesis.accounts} | {m.owner for m in self.genesis.models}
        accounts |= set(self.nonces) | {DEPOSIT_ESCROW}  # resident models' deposits (vm/retire.py)
        validators = set(candidates(view)) | set(self.keys)
        for address in validators:
            record = view.validator(address)
            if record is not None:
                accounts.add(record.owner)
        total = sum(view.account(a).balance for a in accounts)
        total += sum(r.stake for r in (view.validator(a) for a in validators) if r is not None)
        total += sum(p.reward_pool for p in (view.get(pool_key(a), ValidatorPool) for a in validators) if p is not None)
        for h in range(self.height + 1, self.height + 1 + self.genesis.params.staking.unbonding_blocks + 1):
            queue = view.get(unbonding_key(h), UnbondingQueue)
            total += 0 if queue is None else sum(e.amount for e in queue.entries)
        return total

    def assert_supply_conserved(self) -> None:
        supply = self.apps[0].view().supply()
        assert supply.genesis + supply.issued - supply.burned == self.holdings()

    def register(self, owner: PrivateKey, model_bytes: bytes, meta: ModelMeta, *, first_nonce: int = 0) -> Hash32:
        """Upload and register a model in one block; its id (the last chunk's registration result)."""
        from tests.vm.helpers import upload_txs

        block = self.step(upload_txs(owner, model_bytes, meta, params=self.genesis.params,
                                     chain_id=self.genesis.chain_id, first_nonce=first_nonce))
        return RegistrationData.decode(block.results[-1].data).model_id

    def step_until_landed(self, txs: Sequence[Transaction]) -> None:
        """Step blocks until every one of `txs` is in one (a block may hold only a few model chunks)."""
        pending = list(txs)
        while pending:
            landed = {bytes(tx.hash) for tx in self.step(pending).txs}
            assert landed, "no transaction fits a block"
            pending = [tx for tx in pending if bytes(tx.hash) not in landed]

    def step(self, txs: Sequence[Transaction] = (), *, evidence: Sequence[Evidence] = (),
             poi: dict[Address, Hash32 | str | None] | None = None,
             validators: Sequence[int] | None = None) -> Block:
        """Propose on node 0, require the `validators` nodes (default: all others) to find it valid,
        commit everywhere (a node that did not validate applies the block from scratch)."""
        block = self.propose(txs, evidence=evidence)
        for verdict in self.validate(block, validators):
            assert verdict.is_valid, verdict
        self.commit(block, poi)
        return block
