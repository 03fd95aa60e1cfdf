"""The chain the wire vectors are taken from: the devnet genesis, three real blocks built and applied by the
VM in memory, signed by the genesis validators, and the messages around them.

Everything is deterministic: keys derive from the devnet's published seed, times are fixed, Ed25519
signatures are deterministic, and the only models run are `exact` ones (integer kernels, identical on every
CPU). No consensus code runs: the Application Protocol calls come in their real order, as a node makes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from consensus.proposer import ProposerPriorities
from core.app import BlockTemplate
from core.block import Block, ProposalBlock, compute_results_root
from core.codec import Wire
from core.evidence import Evidence, WrongInference, duplicate_proposal, duplicate_vote
from core.hashing import sha256
from core.keys import PrivateKey
from core.store import MemoryStore
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Address, Amount, Hash32, Height, Round, Timestamp
from core.validators import ValidatorSet
from core.votes import ZERO_SIGNATURE, Commit, Proposal, Vote, VoteType
from tools.genesis import TOKEN, account_key, make_genesis, validator_key
from vm.app import VMApplication
from vm.evidence import make_wrong_inference
from vm.execute import infer_gas
from vm.genesis import Genesis, parse_genesis
from vm.models import load_model
from vm.sandbox.executor import LocalExecutor
from vm.txs import Infer, ModelMeta, Stake, Transfer, Unjail, Unstake, build_tx, split_model

VALIDATORS = 4
GAS_LIMIT = 200_000
UPLOAD_GAS_LIMIT = 20_000_000
# digits_int8 takes uint8[1,64] pixels scaled to 0..240: a fixed stroke pattern.
DIGIT_PIXELS = bytes((i * 37) % 241 for i in range(64))


@dataclass
class World:
    genesis: Genesis
    app: VMApplication
    validators: list[PrivateKey]
    accounts: list[PrivateKey]
    blocks: list[Block] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    proposals: list[ProposalBlock] = field(default_factory=list)
    priorities: list[ProposerPriorities] = field(default_factory=list)
    txs: dict[str, Transaction] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    upload_meta: ModelMeta | None = None

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def key_of(self, address: Address) -> PrivateKey:
        return next(k for k in self.validators if k.address == address)

    def model_id(self, name: str) -> Hash32:
        return next(m.model_id for m in self.genesis.models if m.name == name)

    def tx(self, key: PrivateKey, payload: Wire, nonce: int, gas_limit: int = GAS_LIMIT) -> Transaction:
        price = int(self.genesis.params.vm.min_gas_price)
        return build_tx(key, payload, chain_id=self.chain_id, nonce=nonce, gas_limit=gas_limit,
                        fee=gas_limit * price)

    # ------------------------------------------------------------------------------------------ blocks

    def time_of(self, height: int) -> Timestamp:
        return Timestamp(int(self.genesis.genesis_time) + 1000 * height)

    def propose(self, txs: Sequence[Transaction], evidence: Sequence[Evidence] = ()) -> ProposalBlock:
        h = len(self.blocks) + 1
        prios = self.priorities[-1]
        proposer = self.key_of(prios.proposer(0))
        last_id = self.blocks[-1].id if self.blocks else Hash32(bytes(32))
        last_commit = self.commits[-1] if self.commits else None
        template = BlockTemplate(self.chain_id, Height(h), Round(0), self.time_of(h), proposer.address, last_id,
                                 last_commit, tuple(evidence))
        block = self.app.build_block(template, txs)
        if len(block.txs) != len(txs) or len(block.evidence) != len(evidence):
            raise AssertionError(f"block {h} left something out: {[r.log for r in block.results]}")
        return ProposalBlock(self.sign_proposal(proposer, block), block)

    def sign_proposal(self, key: PrivateKey, block: Block, round_: int = 0) -> Proposal:
        return Proposal(block.height, Round(round_), -1, block.id, block.header.time, key.public_key,
                        ZERO_SIGNATURE).signed(key, self.chain_id)

    def vote(self, key: PrivateKey, vote_type: VoteType, height: int, block_id: Hash32 | None,
             round_: int = 0) -> Vote:
        poi = self.app.poi_commitment(Height(height), key.address) if vote_type == VoteType.PRECOMMIT else None
        return Vote(vote_type, Height(height), Round(round_), block_id, Timestamp(self.time_of(height) + 500),
                    key.public_key, poi, ZERO_SIGNATURE).signed(key, self.chain_id)

    def commit(self, signed: ProposalBlock) -> None:
        block = signed.block
        vset = self.app.validator_set(block.height)
        votes = tuple(self.vote(self.key_of(e.address), VoteType.PRECOMMIT, int(block.height), block.id)
                      for e in vset.entries)
        with self.app.store.write_batch() as batch:
            outcome = self.app.finalize_block(block, batch)
        if outcome.state_root != block.header.state_root:
            raise AssertionError(f"block {block.height}: applying gives another state root")
        self.blocks.append(block)
        self.commits.append(Commit(block.height, Round(0), block.id, votes))
        self.proposals.append(signed)
        self.priorities.append(self.priorities[-1].advance(self.app.validator_set(Height(int(block.height) + 1))))


def build_world() -> World:
    genesis = parse_genesis(make_genesis(VALIDATORS))
    seed = genesis.seed_phrase
    if seed is None:
        raise AssertionError("the devnet genesis names its seed")
    app = VMApplication(MemoryStore(), genesis, executor=LocalExecutor())
    world = World(genesis, app, [validator_key(seed, i) for i in range(VALIDATORS)],
                  [account_key(seed, j) for j in range(VALIDATORS + 2)])
    world.priorities.append(ProposerPriorities.genesis(ValidatorSet(app.validator_set(Height(1)).entries)))
    a = world.accounts
    v = world.validators

    # Block 1: one transaction of every kind, a failing one among them, and the first chunk of an upload.
    int8 = load_model("digits_int8")
    registered = app.view().model(world.model_id("digits_int8"))
    if registered is None:
        raise AssertionError("digits_int8 is registered at genesis")
    meta = registered.meta.replace(name="digits_int8_again")
    world.upload_meta = meta
    chunks = split_model(int8.model_bytes, meta, chunk_bytes=2048)
    pixels = (Tensor(DType.UINT8, (1, 64), DIGIT_PIXELS),)
    world.txs = {
        "transfer": world.tx(a[0], Transfer(a[5].address, Amount(250 * TOKEN)), 0),
        "infer": world.tx(a[1], Infer(world.model_id("digits_int8"), pixels, Amount(0)), 0,
                          infer_gas(app.view().params(), registered, pixels)),  # the block's first call: pays the load
        "stake": world.tx(a[2], Stake(v[2].public_key, Amount(1_000 * TOKEN)), 0),
        "unstake": world.tx(a[3], Unstake(v[3].public_key, Amount(5 * TOKEN)), 0),
        "unjail_refused": world.tx(a[1], Unjail(v[1].public_key), 1),
        "upload_chunk_0": world.tx(a[4], chunks[0], 0, UPLOAD_GAS_LIMIT),
    }
    world.commit(world.propose(list(world.txs.values())))

    # Block 2: the last commit of block 1, the upload's last chunk (registration), and equivocation evidence.
    b1 = world.blocks[0]
    twin = Hash32(sha256(b"another block at height 1"))
    world.evidence["duplicate_vote"] = duplicate_vote(
        world.vote(v[3], VoteType.PREVOTE, 1, b1.id), world.vote(v[3], VoteType.PREVOTE, 1, twin))
    proposer1 = world.key_of(b1.header.proposer)
    world.evidence["duplicate_proposal"] = duplicate_proposal(
        world.proposals[0].proposal,
        Proposal(b1.height, Round(0), -1, twin, b1.header.time, proposer1.public_key,
                 ZERO_SIGNATURE).signed(proposer1, world.chain_id))
    world.evidence["wrong_inference"] = wrong_inference(world)
    world.txs["upload_chunk_1"] = world.tx(a[4], chunks[1], 1, UPLOAD_GAS_LIMIT)
    world.txs["transfer_back"] = world.tx(a[5], Transfer(a[0].address, Amount(TOKEN)), 0)
    world.commit(world.propose([world.txs["upload_chunk_1"], world.txs["transfer_back"]],
                               [world.evidence["duplicate_vote"]]))

    # Block 3: reveals the PoI output of height 1 and scores the commitments block 2 fixed.
    world.commit(world.propose([]))
    if world.blocks[2].header.poi_reveal is None:
        raise AssertionError("block 3 reveals the challenge of height 1")
    return world


def wrong_inference(world: World) -> WrongInference:
    """Evidence against block 1's proposer for a copy of block 1 that claims a wrong exact output."""
    block = world.blocks[0]
    index = block.txs.index(world.txs["infer"])
    right = block.results[index]
    first = right.outputs[0]
    flipped = Tensor(first.dtype, first.shape, bytes([first.data[0] ^ 1]) + first.data[1:])
    results = list(block.results)
    results[index] = right.replace(outputs=(flipped, *right.outputs[1:]))
    header = block.header.replace(results_root=compute_results_root(tuple(results)))
    forged = Block(header, block.txs, tuple(results), block.last_commit, block.evidence)
    proposer = world.key_of(block.header.proposer)
    evidence = make_wrong_inference(ProposalBlock(world.sign_proposal(proposer, forged), forged), index)
    if not world.app.is_valid_evidence(evidence):
        raise AssertionError("the forged output must be provably wrong")
    return evidence
