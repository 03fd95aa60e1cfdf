"""The consensus driver with a real VMApplication: the disagreement back-off of docs/design.md §2.6 driven by
real validation verdicts, and WAL replay after a restart."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Any

import numpy as np
import pytest
import trio

from consensus.actions import BuildBlock, ReportEvidence
from consensus.events import NewHeight, VoteReceived
from consensus.state import ConsensusState
from consensus.wal import FileWAL, MemoryWAL
from core.app import BlockTemplate, VerdictKind
from core.block import Block, compute_results_root
from core.errors import LocalFault
from core.evidence import DuplicateVote, EvidenceEnvelope, duplicate_vote, offence_id
from core.hashing import ZERO_HASH, sha256
from core.store import KeySpace, space
from core.tensor import Tensor
from core.types import Amount, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Vote, VoteType
from node.events import TxState
from node.leveldb import LevelDBStore
from node.mempool import REJECTED_DISAGREED
from node.proposal_size import MIN_PROPOSAL_TXS
from node.providers import ChainProviders
from node.service import Node
from p2p.messages import VotesRequest
from tests.node.helpers import (
    SEED,
    account,
    genesis_doc,
    infer_model,
    local_node,
    make_home,
    running,
    transfer,
    wait_until,
)
from tests.vm.helpers import genesis_doc_with, memory_hog_model
from tools.genesis import validator_key
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.txs import Infer, build_tx

pytestmark = pytest.mark.node


def tampered(block: Block, index: int) -> Block:
    """The same block claiming other outputs for transaction `index` (roots recomputed: it is well-formed)."""
    result = block.results[index]
    outputs = tuple(Tensor.from_numpy(np.asarray(t.to_numpy()) + np.asarray(1000, dtype=t.to_numpy().dtype))
                    for t in result.outputs)
    results = (*block.results[:index], result.replace(outputs=outputs), *block.results[index + 1:])
    header = block.header.replace(results_root=compute_results_root(results))
    out = block.replace(header=header, results=results)
    out.validate_basic()
    return out


@pytest.mark.trio
async def test_three_proposers_disagreeing_on_a_tolerant_output_evict_the_transaction(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        driver = node.build_driver(MemoryWAL())
        chain_id = node.chain_id
        contested = infer_model(chain_id, account(4), 0, "digits_mlp")  # tolerant
        exact = infer_model(chain_id, account(5), 0, "digits_int8")  # exact
        for tx in (contested, exact):
            assert node.mempool.add(tx).added
        genesis_time = int(node.genesis.genesis_time)

        async def judge(proposer: int, tx_index: int) -> VerdictKind:
            template = BlockTemplate(chain_id, Height(1), Round(proposer), Timestamp(genesis_time + 1000),
                                     validator_key(SEED, proposer).address, ZERO_HASH, None, ())
            block = await trio.to_thread.run_sync(node.app.build_block, template, [contested, exact])
            assert len(block.txs) == 2
            verdict = await driver.validate(tampered(block, tx_index))
            assert list(verdict.bad_txs) == [tx_index]
            return verdict.kind

        with trio.fail_after(60):
            # A wrong exact output proves the proposer wrong: the transaction stays eligible.
            assert await judge(1, 1) is VerdictKind.INVALID
            assert node.mempool.disagreement_count(exact.hash) == 0 and exact.hash in node.mempool
            # A tolerant output beyond tolerance: backed off, then evicted after three distinct proposers.
            assert await judge(1, 0) is VerdictKind.INVALID
            assert node.mempool.is_backed_off(contested.hash) and contested.hash in node.mempool
            assert await judge(1, 0) is VerdictKind.INVALID  # the same proposer again counts once
            assert node.mempool.disagreement_count(contested.hash) == 1
            assert await judge(2, 0) is VerdictKind.INVALID
            assert contested.hash in node.mempool
            assert await judge(3, 0) is VerdictKind.INVALID
            assert contested.hash not in node.mempool
            outcome = await node.queries.wait_for_tx(contested.hash)
            assert outcome.state is TxState.REJECTED and outcome.reason == REJECTED_DISAGREED
            assert node.mempool.add(contested).reason == REJECTED_DISAGREED
            # The untampered block is valid: the disagreement was about the claimed outputs only.
            template = BlockTemplate(chain_id, Height(1), Round(0), Timestamp(genesis_time + 1000),
                                     validator_key(SEED, 0).address, ZERO_HASH, None, ())
            honest = await trio.to_thread.run_sync(node.app.build_block, template, [exact])
            assert (await driver.validate(honest)).kind is VerdictKind.VALID
    finally:
        node.close()


@pytest.mark.trio
async def test_a_restarted_validator_replays_its_wal_and_continues(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    node = local_node(home)
    with trio.fail_after(60):
        async with running(node):
            await wait_until(lambda: node.height >= 3, 30)
            stopped_at = int(node.height)
            node_blocks = [node.blockstore.block(h) for h in range(1, stopped_at + 1)]
    final = int(node.height)  # blocks may commit between the reads above and the stop
    assert (home.wal_dir / "consensus.wal").stat().st_size > 0
    # The node stopped at an arbitrary point: usually inside height final + 1 (the WAL holds its events,
    # which must be replayed), rarely between a commit and the next height's first record (nothing to replay).
    wal = FileWAL(home.wal_dir / "consensus.wal")
    logged = wal.replay()
    wal.close()
    in_progress = bool(logged) and isinstance(logged[0], NewHeight) and int(logged[0].height) > final
    signed_before = home.sign_state_path.read_bytes()
    again = local_node(home)
    with trio.fail_after(60):
        async with running(again):
            assert again.driver is not None
            assert again.driver.replayed == (len(logged) if in_progress else 0)
            await wait_until(lambda: again.height >= stopped_at + 2, 30)
            for h in range(1, stopped_at + 1):
                assert again.blockstore.block(h) == node_blocks[h - 1]
    assert home.sign_state_path.read_bytes() != signed_before  # it signed on, at later heights


@pytest.mark.trio
async def test_a_build_overtaken_by_a_commit_is_dropped_quietly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A proposer's build can wait for its thread while a commit of another round lands; the stale build
    must neither crash the driver nor raise an alarm."""
    node = local_node(make_home(tmp_path, "solo", genesis_doc(1), validator=0))
    with trio.fail_after(60):
        async with running(node):
            await wait_until(lambda: node.height >= 2, 30)
            driver = node.driver
            assert driver is not None
            alarms = list(driver.alarms)
            template = BlockTemplate(node.chain_id, Height(1), Round(1), Timestamp(int(node.genesis.genesis_time) + 1),
                                     validator_key(SEED, 0).address, ZERO_HASH, None, ())
            await driver._build(BuildBlock(template))
            assert driver.alarms == alarms
            await wait_until(lambda: node.height >= 3, 30)  # and consensus goes on


@pytest.mark.trio
async def test_vote_requests_before_the_first_height_get_an_empty_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The provider needs no catch-all: the machine itself answers () for what it does not hold."""
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        node.driver = node.build_driver(MemoryWAL())
        request = VotesRequest(Height(1), Round(0), VoteType.PREVOTE, b"")
        providers = ChainProviders(node.chain, node.chain_id, lambda: node.driver)
        assert tuple(await providers.votes(request)) == ()
    finally:
        node.close()


def _equivocation(chain_id: str) -> DuplicateVote:
    """Validator 2 prevoting for two blocks at height 1, round 0."""
    cheat = validator_key(SEED, 2)

    def prevote(block: bytes) -> Vote:
        return Vote(VoteType.PREVOTE, Height(1), Round(0), sha256(block), Timestamp(0), cheat.public_key, None,
                    ZERO_SIGNATURE).signed(cheat, chain_id)

    return duplicate_vote(prevote(b"a"), prevote(b"b"))


@pytest.mark.trio
async def test_reported_evidence_is_stored_durably_off_the_event_loop(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        driver = node.build_driver(MemoryWAL())
        evidence = _equivocation(node.chain_id)
        loop_thread = threading.current_thread()
        writers: list[tuple[threading.Thread, bool]] = []
        original = LevelDBStore.write_batch

        def recording(self: LevelDBStore, *, sync: bool = False) -> Any:
            writers.append((threading.current_thread(), sync))
            return original(self, sync=sync)

        monkeypatch.setattr(LevelDBStore, "write_batch", recording)
        await driver.perform(ReportEvidence(evidence))
        assert writers and all(thread is not loop_thread and sync for thread, sync in writers)
        stored = space(node.db, KeySpace.EVIDENCE).get(offence_id(evidence))
        assert stored is not None and EvidenceEnvelope.decode(stored).evidence == evidence
    finally:
        node.close()


@pytest.mark.trio
async def test_pending_evidence_that_can_no_longer_be_included_is_dropped_on_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        driver = node.build_driver(MemoryWAL())
        evidence = _equivocation(node.chain_id)
        pending = space(node.db, KeySpace.EVIDENCE)
        with node.db.write_batch() as batch:
            pending.bind(batch).put(offence_id(evidence), EvidenceEnvelope(evidence).encode())
            pending.bind(batch).put(b"\x01" * 32, b"not evidence")
        # With an evidence age that makes height 1 too old, both entries go; nothing is fed to the machine.
        driver.state.params = dataclasses.replace(driver.state.params, max_evidence_age=-5)
        await driver._load_pending_evidence()
        assert list(pending.iterate()) == []
    finally:
        node.close()


@pytest.mark.trio
async def test_a_transaction_that_faults_the_proposers_worker_backs_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docs/vm.md, "Local faults": a call whose model work kills our own worker while we build is left out of
    the block and backed off in the mempool like one validators disagreed on, so the next proposal does not
    meet the same fault."""
    source = tmp_path / "source"
    source.mkdir()
    doc = genesis_doc_with(source, {"hog": memory_hog_model()}, {"max_tx_gas": 200_000_000})
    doc["consensus"]["max_block_gas"] = 400_000_000
    (source / "genesis.json").write_text(json.dumps(doc))
    pool = WorkerPool(1, WorkerLimits(memory_bytes=300 << 20))  # the hog needs ~192 MiB of activations
    node = Node(make_home(tmp_path, "v0", source / "genesis.json", validator=0), executor=pool)  # type: ignore[arg-type]
    try:
        driver = node.build_driver(MemoryWAL())
        hog = next(m.model_id for m in node.genesis.models if m.name == "hog")
        gas = 200_000_000
        tx = build_tx(account(4), Infer(hog, (Tensor.from_numpy(np.array([[5]], np.int32)),), Amount(0)),
                      chain_id=node.chain_id, nonce=0, gas_limit=gas, fee=gas)
        assert node.mempool.add(tx).added
        template = BlockTemplate(node.chain_id, Height(1), Round(0), Timestamp(int(node.genesis.genesis_time) + 1000),
                                 validator_key(SEED, 0).address, ZERO_HASH, None, ())
        with trio.fail_after(60):
            await driver._build(BuildBlock(template))
        assert any("building block 1: worker" in line for line in node.alarms)
        assert node.mempool.is_backed_off(tx.hash) and node.mempool.disagreement_count(tx.hash) == 1
        assert node.mempool.reap(max_txs=10, max_bytes=1 << 20, max_gas=gas) == []
    finally:
        node.close()


@pytest.mark.trio
async def test_a_local_fault_while_handling_a_vote_is_alarmed_as_ours_not_refused_as_the_peers(  # type: ignore[no-untyped-def]
        tmp_path, caplog) -> None:
    """Our own fault met while the machine handles a peer's vote (here the signature verifier cannot run)
    raises an alarm; it is never logged as consensus refusing the peer's input."""
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        driver = node.build_driver(MemoryWAL())

        def verifier_down(public_key: bytes, message: bytes, signature: bytes) -> bool:
            raise LocalFault("signature verifier unavailable")

        driver.state = ConsensusState(node.chain_id, driver.state.me, driver.state.params, verifier=verifier_down)
        peer = validator_key(SEED, 1)
        vote = Vote(VoteType.PREVOTE, Height(1), Round(0), sha256(b"a block"), Timestamp(0), peer.public_key, None,
                    ZERO_SIGNATURE).signed(peer, node.chain_id)
        caplog.set_level(logging.INFO, logger="node.driver")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run)
                await driver.on_vote(vote)
                await wait_until(lambda: any("VoteReceived" in alarm for alarm in driver.alarms), 20)
                nursery.cancel_scope.cancel()
        assert any("signature verifier unavailable" in alarm for alarm in driver.alarms)
        assert not [r for r in caplog.records if "consensus refused" in r.getMessage()]
    finally:
        node.close()


@pytest.mark.trio
async def test_a_proposal_takes_what_the_measured_time_allows_and_the_build_is_measured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """node/proposal_size.py: the proposer reaps no more than its estimate of what validates within a share of
    timeout_propose (here the floor, as if each transaction took a second), and its real build is measured."""
    node = local_node(make_home(tmp_path, "v0", genesis_doc(4), validator=0))
    try:
        driver = node.build_driver(MemoryWAL())
        chain_id = node.chain_id
        for sender in range(2, 8):
            for nonce in range(50):
                assert node.mempool.add(transfer(chain_id, account(sender), account(1), 1, nonce)).added
        assert len(node.mempool) == 300
        driver.sizer.seconds_per_tx = 1.0
        reaped: list[int] = []
        build = driver.app.build_block

        def counting_build(template: BlockTemplate, txs: Any) -> Block:
            reaped.append(len(txs))
            return build(template, txs)

        driver.app.build_block = counting_build  # type: ignore[method-assign]
        template = BlockTemplate(chain_id, Height(1), Round(0), Timestamp(int(node.genesis.genesis_time) + 1000),
                                 validator_key(SEED, 0).address, ZERO_HASH, None, ())
        with trio.fail_after(60):
            await driver._build(BuildBlock(template))
        assert reaped == [MIN_PROPOSAL_TXS]
        assert driver.sizer.samples == 1 and driver.sizer.seconds_per_tx < 1.0  # learned from the real build
    finally:
        node.close()


@pytest.mark.trio
async def test_own_votes_are_fsynced_in_the_wal_off_the_event_loop_before_they_are_published(  # type: ignore[no-untyped-def]
        tmp_path, monkeypatch) -> None:
    # docs/consensus.md: the node's own signed messages are durable in the WAL before anything leaves.
    # Signing and logging share one worker-thread call (one hand-off per signature, not two).
    home = make_home(tmp_path, "solo", genesis_doc(1), validator=0)
    node = local_node(home)
    loop_thread = threading.current_thread()
    order: list[tuple[str, object, bool, bool]] = []  # (what, vote, fsynced, on the event loop)
    original_append, original_publish = FileWAL.append, Node._publish_consensus

    def append(self: FileWAL, event: Any, *, sync: bool = False) -> None:
        original_append(self, event, sync=sync)
        if isinstance(event, VoteReceived):
            order.append(("wal", event.vote, sync, threading.current_thread() is loop_thread))

    async def publish(self: Node, message: Any) -> None:
        if isinstance(message, Vote):
            order.append(("published", message, False, True))
        await original_publish(self, message)

    monkeypatch.setattr(FileWAL, "append", append)
    monkeypatch.setattr(Node, "_publish_consensus", publish)
    with trio.fail_after(60):
        async with running(node):
            await wait_until(lambda: sum(what == "published" for what, *_ in order) >= 6, 30)
    published = [(i, vote) for i, (what, vote, _, _) in enumerate(order) if what == "published"]
    assert len(published) >= 6
    for i, vote in published:
        assert any(what == "wal" and logged == vote and sync and not on_loop
                   for what, logged, sync, on_loop in order[:i]), f"vote {i} published before it was fsynced"
