"""The node's gossip hooks against Byzantine input, one rule at a time, on a real node's chain (real LevelDB,
real signatures, real ONNX Runtime): proposals only from the proposer of their round within a window, at most
two blocks per round; transaction batches relayed only when the mempool takes all of them, cheap checks before
signatures, blame only for faults that do not depend on our state; false wrong-inference claims refused
after one model run per offence. The same attacks against real node processes: tests/e2e/test_attacks.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from consensus.proposer import ProposerPriorities
from core.block import Block, ProposalBlock
from core.compact import compact_of
from core.errors import InvalidSignature
from core.evidence import EvidenceEnvelope
from core.hashing import ZERO_HASH, sha256
from core.header import Header
from core.keys import PrivateKey
from core.tx import Transaction
from core.types import Address, Height, Round, SignatureBytes, Timestamp
from core.votes import Proposal
from node.gossip_hooks import (
    PROPOSAL_ROUND_WINDOW,
    GossipHooks,
    TxAdmission,
    TxGossipLimits,
    proposal_verdict,
)
from node.mempool import AccountInfo
from node.service import Node, _MempoolState, consensus_params
from p2p.messages import TxBatch
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, GossipVerdict
from tests.adversary.attacks import unfunded_txs
from tests.node.helpers import (
    account,
    genesis_doc,
    infer_digits_int8,
    local_node,
    make_home,
    running,
    transfer,
    validator_key,
    wait_until,
)
from tools.genesis import DEFAULT_SEED_PHRASE
from vm.evidence import make_wrong_inference

pytestmark = pytest.mark.node

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))


def _message(kind: TopicKind, value: object, data: bytes) -> GossipMessage:
    return GossipMessage(kind, data, value, sha256(data), PEER, PEER)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = local_node(make_home(tmp_path, "n0", genesis_doc(4), validator=0))
    yield n
    n.close()


# ------------------------------------------------------------------------------------------------ proposals


def _proposal(node: Node, key: PrivateKey, round_: int, salt: bytes = b"") -> ProposalBlock:
    header = Header(1, node.chain_id, Height(1), Round(round_), Timestamp(1), ZERO_HASH, key.address, ZERO_HASH, ZERO_HASH,
                    sha256(salt), ZERO_HASH, ZERO_HASH, ZERO_HASH, ZERO_HASH, None)
    block = Block(header, (), (), None, ())
    proposal = Proposal(Height(1), Round(round_), -1, block.id, Timestamp(1), key.public_key,
                        SignatureBytes(b"\0" * 64)).signed(key, node.chain_id)
    return ProposalBlock(proposal, block)


def _proposer_key(node: Node, round_: int) -> PrivateKey:
    address = ProposerPriorities.genesis(node.app.validator_set(Height(1))).proposer(round_)
    return next(k for k in (validator_key(DEFAULT_SEED_PHRASE, i) for i in range(4)) if k.address == address)


def test_only_the_proposer_of_the_round_is_relayed(node: Node) -> None:
    for r in range(4):
        proposer = _proposer_key(node, r)
        assert proposal_verdict(node.chain, _proposal(node, proposer, r)) is GossipVerdict.ACCEPT
        assert proposal_verdict(node.chain, compact_of(_proposal(node, proposer, r))) is GossipVerdict.ACCEPT
        for i in range(4):
            other = validator_key(DEFAULT_SEED_PHRASE, i)
            if other.address != proposer.address:
                assert proposal_verdict(node.chain, _proposal(node, other, r)) is GossipVerdict.REJECT
                assert proposal_verdict(node.chain, compact_of(_proposal(node, other, r))) is GossipVerdict.REJECT


def test_proposals_beyond_the_round_window_are_ignored(node: Node) -> None:
    far = PROPOSAL_ROUND_WINDOW + 6
    pb = _proposal(node, _proposer_key(node, far), far)
    assert proposal_verdict(node.chain, pb, our_round=0) is GossipVerdict.IGNORE
    assert proposal_verdict(node.chain, pb, our_round=far - PROPOSAL_ROUND_WINDOW) is GossipVerdict.ACCEPT


@pytest.mark.trio
async def test_at_most_two_blocks_per_height_and_round_reach_consensus(node: Node) -> None:
    hooks = GossipHooks(node.chain, consensus_params(node.genesis, node.config).max_evidence_age)
    key = _proposer_key(node, 0)
    first, twin, third = (_proposal(node, key, 0, salt) for salt in (b"a", b"b", b"c"))
    verdicts = [await hooks.proposal(_message(TopicKind.PROPOSALS, pb, pb.encode()))
                for pb in (first, twin, third, first)]
    assert verdicts == [GossipVerdict.ACCEPT, GossipVerdict.ACCEPT, GossipVerdict.IGNORE, GossipVerdict.ACCEPT]
    # The compact form of a third block counts against the same window (a proposer cannot send a third
    # block, and so make every peer fetch its transactions, by sending it compact).
    compact_third = compact_of(third)
    assert await hooks.proposal(_message(TopicKind.PROPOSALS, compact_third, compact_third.encode())) \
        is GossipVerdict.IGNORE


# ------------------------------------------------------------------------------------------------ transactions


class _Relay:
    def __init__(self) -> None:
        self.txs: list[Transaction] = []

    async def __call__(self, tx: Transaction) -> None:
        self.txs.append(tx)
        await trio.lowlevel.checkpoint()


def _admission(node: Node, relay: _Relay, limits: TxGossipLimits | None = None) -> TxAdmission:
    return TxAdmission(_MempoolState(node.app).account, node.mempool, node.sig_cache, relay=relay, limits=limits)


def _batch(txs: list[Transaction]) -> GossipMessage:
    batch = TxBatch(tuple(txs))
    return _message(TopicKind.TXS, batch, batch.encode())


@pytest.mark.trio
async def test_a_batch_the_mempool_takes_whole_is_relayed(node: Node) -> None:
    relay = _Relay()
    admission = _admission(node, relay)
    txs = [transfer(node.chain_id, account(4 + i), account(0), 5, 0) for i in range(3)]
    assert await admission(_batch(txs)) is GossipVerdict.ACCEPT
    assert all(tx.hash in node.mempool for tx in txs) and relay.txs == []


@pytest.mark.trio
async def test_the_state_is_read_once_per_new_sender_and_never_for_a_sender_with_pending_txs(node: Node) -> None:
    reads: list[bytes] = []
    state = _MempoolState(node.app)

    def account_read(address: Address) -> AccountInfo:
        reads.append(bytes(address))
        return state.account(address)

    admission = TxAdmission(account_read, node.mempool, node.sig_cache, relay=_Relay())
    first = [transfer(node.chain_id, account(4 + i), account(0), 5, 0) for i in range(3)]
    assert await admission(_batch(first)) is GossipVerdict.ACCEPT
    assert sorted(reads) == sorted(bytes(tx.sender_address) for tx in first)  # the hook's; the mempool reused it
    reads.clear()
    more = [transfer(node.chain_id, account(4 + i), account(0), 5, n) for i in range(3) for n in (1, 2)]
    assert await admission(_batch(more)) is GossipVerdict.ACCEPT
    assert reads == [] and all(tx.hash in node.mempool for tx in more)
    # A sender the mempool holds, sending a nonce the mempool's copy calls used: the state decides.
    stale = transfer(node.chain_id, account(4), account(0), 6, 0)
    node.mempool.update(node.mempool.height, [first[0]])  # as if its nonce 0 were committed
    assert await admission(_batch([stale])) is GossipVerdict.IGNORE
    assert reads == [bytes(stale.sender_address)] and admission.last.refused == 1


@pytest.mark.trio
async def test_unfunded_senders_cost_no_signature_check_and_persistent_ones_are_penalized(node: Node) -> None:
    relay = _Relay()
    admission = _admission(node, relay, TxGossipLimits(unfunded_tolerance=1_000))
    junk = unfunded_txs(node.chain_id, 1_500, keys=64)
    verdicts = [await admission(_batch(junk[i:i + 500])) for i in range(0, 1_500, 500)]
    assert verdicts == [GossipVerdict.IGNORE, GossipVerdict.IGNORE, GossipVerdict.REJECT]
    assert admission.signatures_checked == 0 and len(node.mempool) == 0 and relay.txs == []


@pytest.mark.trio
async def test_honest_races_are_not_relayed_whole_but_blame_nobody(node: Node) -> None:
    relay = _Relay()
    admission = _admission(node, relay, TxGossipLimits(unfunded_tolerance=0))
    good = transfer(node.chain_id, account(4), account(0), 5, 0)
    # Ahead of the account's nonce by more than we queue: the sender may know blocks we have not committed.
    refused = transfer(node.chain_id, account(5), account(0), 5, node.mempool.config.max_nonce_gap + 1)
    assert await admission(_batch([good, refused])) is GossipVerdict.IGNORE
    assert relay.txs == [good] and good.hash in node.mempool  # what got in leaves in our own batch


@pytest.mark.trio
async def test_a_bad_signature_rejects_the_batch(node: Node) -> None:
    admission = _admission(node, _Relay())
    tx = transfer(node.chain_id, account(4), account(0), 5, 0)
    forged = tx.replace(signature=SignatureBytes(b"\x01" * 64))
    with pytest.raises(InvalidSignature):
        await admission(_batch([forged]))
    assert forged.hash not in node.mempool


@pytest.mark.trio
async def test_signature_checks_are_budgeted_per_peer(node: Node) -> None:
    relay = _Relay()
    admission = _admission(node, relay, TxGossipLimits(verify_per_s=0.0, verify_burst=4))
    txs = [transfer(node.chain_id, account(a), account(0), 5, n) for a in range(4, 8) for n in range(3)]
    assert await admission(_batch(txs)) is GossipVerdict.IGNORE
    assert admission.signatures_checked == 4 and admission.last.unverified == 8 and len(relay.txs) == 4


# ------------------------------------------------------------------------------------------------ evidence


@pytest.mark.trio
async def test_a_false_wrong_inference_claim_is_refused_after_one_model_run(tmp_path: Path) -> None:
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    solo = local_node(home)
    key = validator_key(DEFAULT_SEED_PHRASE, 0)
    tx = infer_digits_int8(solo.chain_id, account(0), 0)
    with trio.fail_after(120):
        async with running(solo):
            await solo.submit_txs([tx])
            await wait_until(lambda: solo.blockstore.tx_location(tx.hash) is not None, 90)
            location = solo.blockstore.tx_location(tx.hash)
            assert location is not None
            block = solo.blockstore.block(location.height)
            assert block is not None
            proposal = Proposal(block.height, Round(0), -1, block.id, block.header.time, key.public_key,
                                SignatureBytes(b"\0" * 64)).signed(key, solo.chain_id)
            claim = EvidenceEnvelope(make_wrong_inference(ProposalBlock(proposal, block), location.index))
            runs: list[bool] = []

            def check(evidence: object) -> bool:
                runs.append(solo.app.is_valid_evidence(evidence))  # type: ignore[arg-type]
                return runs[-1]

            hooks = GossipHooks(solo.chain, consensus_params(solo.genesis, solo.config).max_evidence_age,
                                check_evidence=check)
            message = _message(TopicKind.EVIDENCE, claim, claim.encode())
            assert await hooks.evidence(message) is GossipVerdict.REJECT
            assert await hooks.evidence(message) is GossipVerdict.REJECT  # a replay: no second model run
            assert runs == [False]

            # The node's own hook: the claim repeats the committed result, so the VM's cheap checks refute it
            # before any model runs.
            model_runs: list[object] = []
            real_check = solo.app.check_wrong_inference
            solo.app.check_wrong_inference = lambda ev: model_runs.append(ev) or real_check(ev)  # type: ignore[method-assign]
            default = GossipHooks(solo.chain, consensus_params(solo.genesis, solo.config).max_evidence_age)
            assert await default.evidence(message) is GossipVerdict.REJECT
            assert model_runs == []

            # A claim this node cannot check (its own fault, e.g. a worker that died) is neither relayed nor
            # blamed on the sender, and not remembered: a later copy is checked again.
            undecided: list[object] = []

            def cannot_tell(evidence: object) -> None:
                undecided.append(evidence)
                return None

            ours = GossipHooks(solo.chain, consensus_params(solo.genesis, solo.config).max_evidence_age,
                               check_evidence=cannot_tell)
            assert await ours.evidence(message) is GossipVerdict.IGNORE
            assert await ours.evidence(message) is GossipVerdict.IGNORE
            assert len(undecided) == 2


@pytest.mark.trio
async def test_a_node_still_syncing_blocks_judges_no_transaction(node: Node) -> None:
    syncing = True
    admission = TxAdmission(_MempoolState(node.app).account, node.mempool, node.sig_cache,
                            limits=TxGossipLimits(unfunded_tolerance=0), is_syncing=lambda: syncing)
    # Senders funded in blocks this node has not reached look unfunded to it: no blame, no work.
    junk = _batch(unfunded_txs(node.chain_id, 50, keys=5))
    assert await admission(junk) is GossipVerdict.IGNORE
    assert admission.unfunded_tally(str(PEER)) == 0
    syncing = False
    assert await admission(junk) is GossipVerdict.REJECT
