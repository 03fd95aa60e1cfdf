"""The composition root: a `Node` builds the stores, the VM, the mempool, metrics and the RPC server, and
`run` starts p2p, block sync and consensus around them.

    node = Node.from_home("/path/to/home")              # or Node(home, config=..., executor=...)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)                     # started once consensus runs
        node.queries.status()                             # the read side (node.queries.Queries)
        await node.submit_txs([tx])                       # mempool verdicts; gossiped when accepted
        node.stop()                                       # or cancel the nursery
    # resources (LevelDB, worker processes, WAL) are closed when run() returns

Start-up order (docs/design.md §4.5, §4.10): the RPC server (when enabled: status answers while the node catches up),
handshake (replay stored blocks into state if it is behind), the next PoI challenge warming in the background, p2p up,
block sync from peers, a quorum's worth of peers on the proposals topic (at most PEER_WAIT_S), then consensus
with WAL replay of the current height. What gossip and request/response deliver is handled in
`node.gossip_hooks` (checks), `node.gossip_handlers` (delivery) and `node.providers` (what we serve).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from consensus.params import ConsensusParams
from consensus.signer import FileSignState, Signer
from consensus.state import ConsensusState
from consensus.wal import FileWAL, WriteAheadLog
from core.block import ProposalBlock
from core.compact import compact_of
from core.errors import InferchainError, LocalError
from core.evidence import Evidence, EvidenceEnvelope
from core.keys import PrivateKey
from core.limits import MAX_BLOCK_TXS
from core.peer_record import sign_peer_record
from core.tx import Transaction
from core.types import Address, Hash32, Height
from core.votes import Vote
from node.blobstore import FileBlobStore
from node.blobsync import BlobProvider, progress_bar, repair_blobs
from node.blockcheck import BlockChecks
from node.blockstore import BlockStore
from node.chain import Chain, Committed
from node.chainindex import ChainIndex
from node.config import NodeConfig
from node.driver import BlockLimits, ConsensusDriver
from node.early_proposals import EarlyProposals
from node.events import EventHub
from node.gossip_handlers import GossipHandlers
from node.gossip_hooks import GossipHooks, TxAdmission, tx_envelope
from node.home import NodeHome
from node.leveldb import LevelDBStore
from node.mempool import Mempool, RemovalReason
from node.mempool_store import MempoolStore, StoredTx, replay, restore_outcomes
from node.mempool_sync import MempoolSync
from node.metrics import NodeMetrics, TimedExecutor
from node.precompute import DeferredPrecompute
from node.proposal_hold import OwnTxHold
from node.proposal_relay import FetchLimits, ProposalAssembler
from node.providers import ChainProviders
from node.queries import Queries
from node.rpc.server import RpcServer
from node.sigcache import SigCache, VoteVerifier, verify_off_loop_if_many
from node.sync import BlockSync, ConsensusCatchUp
from node.uploadahead import UploadAhead
from node.validator_peers import ValidatorPeers
from node.views import SubmitVerdict
from p2p.batcher import TxBatcher
from p2p.config import P2PConfig
from p2p.identity import peer_id_of
from p2p.inbound import InboundPolicy
from p2p.service import P2PService
from p2p.topics import TopicKind
from vm.app import VMApplication
from vm.execute import account_inclusion_error, admission_error
from vm.genesis import Genesis, load_genesis
from vm.params import Params, VMParams
from vm.resident import get_resident_set, unpin_departed
from vm.retire import retired_in_block
from vm.sandbox.executor import Executor
from vm.sandbox.limits import WorkerLimits
from vm.sandbox.worker import WorkerPool
from vm.state import Account, StateView
from vm.upgrades import UpgradeNeeded

logger = logging.getLogger(__name__)

_INVALID_SIGNATURE = "invalid signature"  # a client's badly signed transaction, in node.mempool's words

# At start-up, the longest wait for peers, one budget for both block sync's wait for a first one and the wait
# for a quorum's worth.
PEER_WAIT_S = 5.0


class _MempoolState:
    """The mempool's view of committed state, and the VM's inclusion rules, read from the VM.

    The VM parameters the rules read are kept per mempool height (`follow`): every admission and every
    recheck of a pending transaction asked `current_params`, whose committed-height read is a LevelDB get
    (docs/performance-throughput.md, "Per-inference CPU in the node"). The mempool judges against the state of its
    height, and `Mempool.update` moves that height after each commit, so the next call reads them again.
    """

    def __init__(self, app: VMApplication) -> None:
        self._app = app
        self._height: Callable[[], int] | None = None
        self._vm: tuple[int, VMParams] | None = None
        self._view: tuple[int, StateView] | None = None

    def follow(self, height: Callable[[], int]) -> None:
        """Keep the parameters and the state view per `height()` (the mempool's) instead of reading them on
        every call."""
        self._height = height

    def vm_params(self) -> VMParams:
        if self._height is None:
            return self._app.current_params().vm
        height = self._height()
        cached = self._vm
        if cached is None or cached[0] != height:
            cached = self._vm = (height, self._app.current_params().vm)
        return cached[1]

    def account(self, address: Address) -> Any:
        """The sender's committed account. Followed, one state view serves a whole mempool height (the gossip
        hook, entry and the recheck read through it): a fresh view per read cost a LevelDB get of the latest
        version each time, and the view keeps what it read. The view is the state as committed when the
        height's first read came; the mempool's height moves only after a commit, so reads at one height see
        one state (committed versions are never pruned)."""
        if self._height is None:
            return self._app.view().account(address)
        height = self._height()
        cached = self._view
        if cached is None or cached[0] != height:
            cached = self._view = (height, self._app.view())
        return cached[1].account(address)

    def check_tx(self, tx: Transaction, account: Account) -> str | None:
        # The signature is the mempool's (it keeps the signature cache): the VM's entry rule alone.
        return admission_error(tx, self._app.chain_id, self.vm_params(), account)

    def inclusion_error(self, tx: Transaction, account: Account) -> str | None:
        return account_inclusion_error(tx, self._app.chain_id, self.vm_params(), account)


def consensus_params(source: Params | Genesis, config: NodeConfig) -> ConsensusParams:
    """The one rule from chain parameters to the consensus machine's: the timeouts in state (genesis, then
    governance; a Genesis gives its own), with the node config's local overrides. The driver asks again at
    every height."""
    params = source.params if isinstance(source, Genesis) else source
    g = params.consensus
    c = config.consensus

    def pick(override: int | None, value: int) -> int:
        return int(value) if override is None else override

    return ConsensusParams(
        timeout_propose_ms=pick(c.timeout_propose_ms, g.timeout_propose_ms),
        timeout_propose_delta_ms=pick(c.timeout_propose_delta_ms, g.timeout_propose_delta_ms),
        timeout_prevote_ms=pick(c.timeout_prevote_ms, g.timeout_prevote_ms),
        timeout_prevote_delta_ms=pick(c.timeout_prevote_delta_ms, g.timeout_prevote_delta_ms),
        timeout_precommit_ms=pick(c.timeout_precommit_ms, g.timeout_precommit_ms),
        timeout_precommit_delta_ms=pick(c.timeout_precommit_delta_ms, g.timeout_precommit_delta_ms),
        timeout_commit_ms=pick(c.timeout_commit_ms, g.timeout_commit_ms),
        next_block_delay_ms=pick(c.next_block_delay_ms, ConsensusParams().next_block_delay_ms),
        max_evidence_age=int(params.slashing.max_evidence_age),
    )


def block_limits(params: Params) -> BlockLimits:
    """What the proposer reaps from the mempool for a block under `params`. Summed gas limits bound nothing
    here: the block's gas rule counts gas used (`vm.apply.BlockExecutor.inclusion_error`), which the builder
    applies; reaping by limits held blocks of tiny inferences, each reserving its model's load, to a tenth
    of what the rule allows."""
    return BlockLimits(MAX_BLOCK_TXS, int(params.consensus.max_block_bytes), MAX_BLOCK_TXS * int(params.vm.max_tx_gas))


class Node:
    """One Inferchain node over its home directory. Construct, then `await nursery.start(node.run)`.

    `executor` runs the VM's model jobs (default: a pool of `workers` sandbox processes); the node times it
    for its metrics either way.
    """

    def __init__(self, home: NodeHome | str | os.PathLike[str], *, config: NodeConfig | None = None,
                 passphrase: str | None = None, executor: Executor | None = None, workers: int = 1,
                 genesis: Genesis | None = None) -> None:
        self.home = home if isinstance(home, NodeHome) else NodeHome.at(home)
        self.home.check()
        self.config = config or self.home.load_config()
        self.genesis = genesis or load_genesis(self.home.genesis_path)
        self.chain_id = self.genesis.chain_id
        self.node_key: KeyPair = self.home.load_node_key()
        self.peer_id: ID = peer_id_of(self.node_key)
        self.validator_key: PrivateKey | None = (
            self.home.load_validator_key(passphrase) if self.config.validator else None)
        self.sig_cache = SigCache(self.config.mempool.sig_cache_size)
        self.vote_verifier = VoteVerifier()
        self._evidence_max_age = consensus_params(self.genesis, self.config).max_evidence_age  # fixed (vm.gov)
        self.block_checks = BlockChecks()
        self.alarms: list[str] = []
        self.metrics = NodeMetrics()
        self.db = LevelDBStore(self.home.data_dir)
        try:
            # The pool's memory budget counts the resident models the chain lets it pin (vm/resident.py).
            # Worker memory is this node's own setting (config `worker_memory_mib`), for every worker it starts.
            self.worker_limits = WorkerLimits(memory_bytes=self.config.worker_memory_bytes,
                                              resident_model_bytes=int(self.genesis.params.vm.max_resident_bytes))
            models = executor if executor is not None else WorkerPool(size=workers, limits=self.worker_limits)
            self.blobs = FileBlobStore(self.home.blob_dir)
            self.app = VMApplication(self.db, self.genesis, executor=TimedExecutor(models, self.metrics),
                                     verify_tx=self.sig_cache.verify, alarm=self._alarm, blobs=self.blobs,
                                     body_checked=self.block_checks.is_checked)
            self.blockstore = BlockStore(self.db, self.chain_id)
            # The explorer's indexes: their own LevelDB, written after commits by run()'s indexing task.
            self.index_db = LevelDBStore(self.home.root / "index")
        except BaseException:
            self.db.close()
            raise
        self.state_map = self.app.state_map
        self.chain_index = ChainIndex(self.index_db, self.blockstore.block, lambda: int(self.blockstore.height),
                                      self._set_members)
        self.chain = Chain(self.db, self.blockstore, self.app)
        mempool_state = self._mempool_state = _MempoolState(self.app)
        self.mempool = Mempool(self.chain_id, mempool_state, self.config.mempool, self.sig_cache)
        mempool_state.follow(lambda: self.mempool.height)
        self.events = EventHub()
        # Accepted-but-uncommitted transactions and recent rejections, kept across restarts (node.mempool_store).
        try:
            self.mempool_store = MempoolStore(self.home.root / "mempool")
        except BaseException:
            self.close()
            raise
        self.mempool_store.watch(self.mempool)
        self.metrics.registry.register(self.mempool_store.collector())
        restore_outcomes(self.mempool_store, self.events)
        self.queries = Queries(self)
        self.p2p: P2PService | None = None
        self.tx_admission: TxAdmission | None = None
        self.gossip_hooks: GossipHooks | None = None
        self.proposal_assembler: ProposalAssembler | None = None
        self.mempool_sync: MempoolSync | None = None
        self.early_proposals: EarlyProposals | None = None
        self.driver: ConsensusDriver | None = None
        self.block_sync: BlockSync | None = None
        self.catch_up: ConsensusCatchUp | None = None
        self.batcher: TxBatcher | None = None
        self.own_hold = OwnTxHold(enabled=self.config.mempool.hold_own_txs)
        self.validator_peers: ValidatorPeers | None = None  # built with p2p
        self.syncing = False
        self.running = trio.Event()
        self._cancel: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None  # run()'s: commits start the next PoI challenge in it
        self._recheck_wanted = trio.Event()
        # The resident set after the last commit: when a model leaves it (retired, rejected at its activation),
        # the block path's workers drop its pinned session (`_unpin_departed`).
        self._resident_seen: frozenset[bytes] = frozenset()
        self.unpinned = 0  # pinned sessions dropped so far (diagnostics and tests)
        # Checks of deferred registrations ahead of their activation: only where this node builds or validates.
        self.precompute = DeferredPrecompute(self.app, alarm=self._alarm, wanted=self.checks_activations,
                                             make_executor=lambda: WorkerPool(1, self.worker_limits))
        # Uploads about to complete, assembled, hashed, parsed and stored before their block (vm/assembly.py).
        self.upload_ahead = UploadAhead(self.app, self.blobs, self.mempool.get)
        self.mempool.on_added(self.upload_ahead.note)
        self.chain.on_commit(self._on_commit)
        self.mempool.on_removed(self._on_tx_removed)
        # The read side's consumers: metrics gauges sampled at scrape time, and the RPC server (run() starts it).
        self.metrics.set_status_source(self.queries.status_sample)
        rpc = self.config.rpc
        self.rpc = (RpcServer(self.queries, host=rpc.host, port=rpc.port, metrics=self.metrics, config=rpc)
                    if rpc.enabled else None)

    @classmethod
    def from_home(cls, home: str | os.PathLike[str], **kwargs: Any) -> Node:
        return cls(NodeHome.at(home), **kwargs)

    # ---------------------------------------------------------------- facts for the read side

    @property
    def height(self) -> Height:
        return self.blockstore.height

    @property
    def consensus_round(self) -> int:
        return self.driver.round if self.driver is not None else 0

    @property
    def validator_address(self) -> Address | None:
        return self.validator_key.address if self.validator_key is not None else None

    def checks_activations(self) -> bool:
        """Whether this node builds or validates the next blocks (a validator key in the next height's set, not
        catching up by block sync), so the background precompute of deferred checks (node/precompute.py) is
        worth its worker; an apply-only node takes each activation's verdict from its block."""
        if self.validator_key is None or self.syncing:
            return False
        me = self.validator_key.address
        return any(entry.address == me for entry in self.app.validator_set(Height(int(self.blockstore.height) + 1)))

    def listen_addrs(self) -> list[str]:
        if self.p2p is None or not self.running.is_set():
            return list(self.config.p2p.listen_addrs)
        return [str(a) for a in self.p2p.host.get_addrs()]

    @property
    def p2p_addr(self) -> str:
        """`/ip4/…/tcp/…/p2p/<peer id>` once running: what other nodes put in their bootstrap list."""
        if self.p2p is None:
            raise RuntimeError("node is not running")
        return self.p2p.addr

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every service in order and run until cancelled (or `stop()`); closes the node's resources on
        the way out."""
        wal: FileWAL | None = None
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.rpc is not None:
                        url = await nursery.start(self.rpc.run)
                        logger.info("rpc on %s", url)
                    replayed = await trio.to_thread.run_sync(self.chain.handshake)
                    if replayed:
                        logger.info("handshake replayed %d blocks", replayed)
                    self.mempool.update(self.blockstore.height, [])
                    await nursery.start(self.mempool_store.run)
                    taken_back = await replay(self.mempool_store, self.mempool, self.events,
                                            is_committed=lambda h: self.blockstore.tx_location(h) is not None,
                                            verify=lambda txs: [self.sig_cache.verify(tx) for tx in txs])
                    nursery.start_soon(self.chain_index.run, self.events.committed_blocks)
                    nursery.start_soon(self.precompute.run)
                    nursery.start_soon(self.upload_ahead.run)
                    self.precompute.wake()  # registrations left pending by the blocks before this start
                    # Models retired while this node was down, or by the blocks the handshake replayed (whose
                    # inferences may have pinned them): their sessions go now.
                    nursery.start_soon(self._unpin_departed)
                    if self.validator_key is not None:
                        # The first precommit needs this height's PoI challenge (a sandbox worker process to
                        # start, ONNX Runtime to load): run it now, alongside p2p start-up and the wait for peers.
                        nursery.start_soon(self._warm_challenge, int(self.blockstore.height) + 1)
                    wal = FileWAL(self.home.wal_dir / "consensus.wal")
                    self.p2p = self._build_p2p()
                    await nursery.start(self.p2p.run)
                    assert self.validator_peers is not None  # built with p2p
                    await nursery.start(self.validator_peers.run)
                    self.batcher = TxBatcher(self._publish_batch,
                                             max_delay_s=self.config.mempool.gossip_batch_delay_s,
                                             on_published=self._batch_out)
                    await nursery.start(self.batcher.run)
                    nursery.start_soon(self._recheck_loop)
                    assert self.mempool_sync is not None  # built with p2p
                    await nursery.start(self.mempool_sync.run)
                    self.block_sync = BlockSync(self.chain, self.p2p, self.chain_id, self.config.sync)
                    self.syncing = True
                    peers_since = trio.current_time()
                    try:
                        # A node with no bootstrap peers (a lone validator) does not wait for any.
                        await self.block_sync.catch_up(
                            wait_for_peers_s=PEER_WAIT_S if self.config.p2p.bootstrap else 0.0)
                    finally:
                        self.syncing = False
                    await self._repair_blobs()
                    if self.config.p2p.bootstrap:
                        await self._wait_for_quorum_peers(max(0.0, PEER_WAIT_S - (trio.current_time() - peers_since)))
                    await self._gossip_replayed(taken_back)  # peers are up by now (mempool sync pulls too)
                    self.driver = self.build_driver(wal)
                    await nursery.start(self.driver.run)
                    assert self.early_proposals is not None
                    early = await self.early_proposals.release()
                    if early:
                        logger.info("%d proposals that came before consensus started handed to it", early)
                    self.catch_up = ConsensusCatchUp(self.p2p, self.driver, self.chain)
                    await nursery.start(self.catch_up.run)
                    self.running.set()
                    logger.info("node %s running at height %d (validator: %s)", self.peer_id,
                                self.blockstore.height, self.validator_address)
                    task_status.started(self)
        finally:
            self._nursery = None
            self.running = trio.Event()
            if wal is not None:
                wal.close()
            self.close()

    async def _wait_for_quorum_peers(self, limit_s: float) -> None:
        """Before the first height: wait (at most `limit_s`) until enough peers hear our proposals that a
        quorum of the validators would, so a proposal made at once is not lost to a mesh still forming.
        Peer ids are not validator keys, so this counts peers against validators (equal power), not power."""
        validators = len(self.app.validator_set(Height(int(self.blockstore.height) + 1)))
        quorum = 2 * validators // 3 + 1
        needed = quorum - (1 if self.validator_key is not None else 0)
        assert self.p2p is not None
        with trio.move_on_after(limit_s):
            while len(self.p2p.gossip.topic_peers(TopicKind.PROPOSALS)) < needed:  # noqa: ASYNC110 - no event
                await trio.sleep(0.02)

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def close(self) -> None:
        """Release the worker processes and the database (run() does this itself)."""
        try:
            self.app.close()
        finally:
            if not self.db.closed:
                self.db.close()
            if not self.index_db.closed:
                self.index_db.close()
            if hasattr(self, "mempool_store"):
                self.mempool_store.close()

    def _set_members(self, height: int) -> list[tuple[Address, int]] | None:
        """The set that signed `height` (for the explorer's PoI index); None once the node no longer knows it."""
        try:
            return [(e.address, int(e.power)) for e in self.app.validator_set(Height(height))]
        except (ValueError, LookupError):
            return None

    def _build_p2p(self) -> P2PService:
        cfg = self.config.p2p
        service = P2PService(
            P2PConfig(chain_id=self.chain_id, listen_addrs=cfg.listen_addrs, bootstrap=cfg.bootstrap,
                      max_peers=cfg.max_peers, heartbeat_s=cfg.heartbeat_s,
                      inbound=InboundPolicy(bulk_workers=cfg.inbound_bulk_workers),
                      consensus_lane=cfg.consensus_lane),
            self.node_key,
        )
        gossip = service.gossip
        # Signatures of a gossiped batch are checked by the transactions hook (TxAdmission), after the cheap
        # state checks and within the sender's budget (docs/security.md); the envelope only decodes. The hook
        # verifies through the node's cache, so each signature is still verified once per node (docs/design.md
        # §4.11) whatever path (RPC, gossip, block) a transaction comes by.
        gossip.set_envelope(TopicKind.TXS, tx_envelope(self.chain_id))
        self.tx_admission = TxAdmission(self._mempool_state.account, self.mempool, self.sig_cache,
                                        relay=self._relay_tx, is_syncing=lambda: self.syncing)
        gossip.set_hook(TopicKind.TXS, self.tx_admission)
        hooks = GossipHooks(self.chain, self._evidence_max_age, our_round=lambda: self.consensus_round)
        self.gossip_hooks = hooks
        gossip.set_hook(TopicKind.PROPOSALS, hooks.proposal)
        gossip.set_hook(TopicKind.VOTES, hooks.vote)
        gossip.set_hook(TopicKind.EVIDENCE, hooks.evidence)
        # Proposals travel compact (transactions by hash, core.compact); what the mempool lacks is fetched.
        rr = service.reqresp
        # Diverged mempools (a healed partition) are reconciled by pulling what a peer holds and we lack.
        self.mempool_sync = MempoolSync(self.mempool, rr.pending, functools.partial(rr.txs, for_sync=True),
                                        self.sig_cache.verify,
                                        lambda: service.peers_serving("pending"), is_syncing=lambda: self.syncing,
                                        account=self._mempool_state.account,
                                        links=lambda: [(peer, conn) for peer, conns in
                                                       service.host.get_network().get_connections_map().items()
                                                       for conn in conns])
        rr.serve_pending(self.mempool_sync.serve)
        assembler = ProposalAssembler(self.mempool.get, rr.txs, lambda: service.peers_serving("txs"),
                                      on_missing=self.mempool_sync.proposal_missing)
        self.proposal_assembler = assembler
        handlers = GossipHandlers(chain_id=self.chain_id, block_checks=self.block_checks,
                                  vote_verifier=self.vote_verifier, driver=lambda: self.driver,
                                  on_sync_vote=self._note_sync_vote,
                                  is_evidence_confirmed=hooks.evidence_checks.is_confirmed, assembler=assembler)
        # Until consensus runs, proposals are kept for it rather than dropped (node.early_proposals).
        self.early_proposals = EarlyProposals(handlers.proposal)
        gossip.set_handler(TopicKind.PROPOSALS, self.early_proposals.handle)
        gossip.set_handler(TopicKind.VOTES, handlers.vote)
        gossip.set_handler(TopicKind.EVIDENCE, handlers.evidence)
        providers = ChainProviders(self.chain, self.chain_id, lambda: self.driver)
        rr.serve_txs(assembler.serve, asked=self._peer_asked_txs)
        # Validators sign their peer id, so that rules counting validators' peers count no sybils.
        rr.serve_peer_record(None if self.validator_key is None else
                             sign_peer_record(self.validator_key, service.peer_id.to_bytes(), self.chain_id))
        self.validator_peers = ValidatorPeers(
            rr.peer_record, lambda peer, address: self.own_hold.bind(peer, address, trio.current_time()))
        rr.serve_status(providers.status)
        rr.serve_blocks(providers.block)
        rr.serve_votes(providers.votes)
        rr.serve_models(BlobProvider(self.db, self.blobs).model)
        return service

    async def _repair_blobs(self) -> None:
        """Fetch the blobs the committed state names that this node lacks (docs/state.md, "Blobs"); a blob no
        peer serves is an alarm: the node runs on, and fails the blocks that need it as its own fault."""
        assert self.p2p is not None
        try:
            fetched = await repair_blobs(self.p2p, self.db, self.blobs, progress=progress_bar)
        except LocalError as exc:
            self._alarm(f"blob repair: {exc}")
            return
        if fetched:
            logger.info("fetched %d missing blobs from peers", fetched)

    def _note_sync_vote(self, vote: Vote) -> None:
        if self.block_sync is not None:
            self.block_sync.sighting.note_vote(vote)

    def build_driver(self, wal: WriteAheadLog) -> ConsensusDriver:
        """The consensus driver over this node's chain, mempool and signer (run() builds its own; tests and
        tools may build one around another WAL)."""
        from node.idle import idle_pacer

        signer = None
        me = None
        if self.validator_key is not None:
            signer = Signer(self.validator_key, self.chain_id, FileSignState(self.home.sign_state_path),
                            self.app.poi_commitment)
            me = self.validator_key.public_key
        app, config = self.app, self.config
        current = app.current_params()
        state = ConsensusState(self.chain_id, me, consensus_params(current, config), verifier=self.vote_verifier,
                               block_checker=self.block_checks)

        def height_params(height: int) -> tuple[ConsensusParams, BlockLimits]:
            reason = app.upgrade_needed(height)
            if reason is not None:
                logger.error("%s", reason)
                raise UpgradeNeeded(reason)
            params = app.current_params()
            consensus = consensus_params(params, config)
            if self.proposal_assembler is not None:  # the relay's fetch window follows timeout_propose
                self.proposal_assembler.limits = FetchLimits.for_timeouts(consensus.timeout_propose_ms,
                                                                          consensus.timeout_propose_delta_ms)
            # The hold's grace: at most timeout_propose, and past the lags of f peers (node.proposal_hold).
            self.own_hold.cap_s = consensus.timeout_propose_ms / 1000
            members = app.validator_set(Height(height))
            self.own_hold.tolerated = (len(members) - 1) // 3
            self.own_hold.validators = frozenset(bytes(entry.address) for entry in members)
            return consensus, block_limits(params)

        return ConsensusDriver(chain=self.chain, state=state, wal=wal, signer=signer, mempool=self.mempool,
                               limits=block_limits(current), genesis_time=int(self.genesis.genesis_time),
                               publish=self._publish_consensus, alarm=self._alarm, block_checks=self.block_checks,
                               height_params=height_params,
                               idle=idle_pacer(self.config.consensus.idle_block_time_ms, self.mempool),
                               hold=self.own_hold)

    # ---------------------------------------------------------------- after each commit

    def _on_commit(self, done: Committed) -> None:
        block = done.block
        self.mempool.update(block.height, block.txs)
        retired = retired_in_block(self.app.view(), int(block.height), block.txs, block.results)
        if retired:  # inferences on them could only fail: drop them now (vm/retire.py)
            self.mempool.drop_inferences(retired)
        resident = frozenset(bytes(m) for m in get_resident_set(self.app.view()).models)
        if not resident >= self._resident_seen and self._nursery is not None:
            self._nursery.start_soon(self._unpin_departed)
        self._resident_seen = resident
        self._recheck_wanted.set()
        self.precompute.wake()
        self.upload_ahead.wake()
        self.events.block_committed(block)
        if self.validator_key is not None and self.driver is not None and self._nursery is not None:
            # Start the PoI challenge of the next height now, so the first precommit finds it ready.
            self._nursery.start_soon(self._warm_challenge, int(block.height) + 1)

    async def _unpin_departed(self) -> None:
        """Drop the pinned sessions of models no longer resident from the block path's workers
        (vm/resident.unpin_departed), in a thread: the pool may be running a block's batch."""
        app = self.app
        try:
            self.unpinned += await trio.to_thread.run_sync(lambda: unpin_departed(app.view(), app.executor))
        except InferchainError as exc:
            self._alarm(f"unpinning models no longer resident: {exc}")

    async def _warm_challenge(self, height: int) -> None:
        try:
            await trio.to_thread.run_sync(self.app.challenge_output, height)
        except InferchainError as exc:
            self._alarm(f"PoI challenge {height}: {exc}")

    async def _recheck_loop(self) -> None:
        """Re-check the mempool after blocks, off the consensus path."""
        while True:
            await self._recheck_wanted.wait()
            self._recheck_wanted = trio.Event()
            await self.mempool.recheck()

    def _on_tx_removed(self, tx_hash: Any, tx: Transaction, reason: RemovalReason) -> None:
        if reason is not RemovalReason.COMMITTED:
            self.events.tx_rejected(tx_hash, reason.value)

    def _alarm(self, reason: str) -> None:
        logger.error("ALARM: %s", reason)
        self.alarms.append(reason)
        del self.alarms[:-100]

    # ---------------------------------------------------------------- transactions in

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[SubmitVerdict]:
        """Mempool verdicts for `txs`, in order; accepted ones are gossiped in batches.

        The signatures new to the node's cache are verified first, as one lot, where the gossip hook verifies
        a peer's batch (`verify_off_loop_if_many`: on the event loop up to INLINE_SIGNATURES, else in one
        worker-thread trip); each transaction still gets its own verdict: a badly signed one is refused
        ("invalid signature", as the mempool words it), the others go to the mempool as checked."""
        checks = [(tx, bytes(tx.hash)) for tx in txs]
        unseen = self.sig_cache.unverified(checks)
        bad = await verify_off_loop_if_many(self.sig_cache.invalid_among, unseen)
        verdicts = []
        added: list[Transaction] = []
        for tx, key in checks:
            if key in bad:
                verdicts.append(SubmitVerdict(tx.hash, False, _INVALID_SIGNATURE))
                continue
            result = self.mempool.add(tx, from_client=True, signature_checked=True)
            verdicts.append(SubmitVerdict(result.tx_hash, result.accepted, result.reason))
            if result.added:
                self.events.own_accepted(result.tx_hash)  # its fate is remembered for the client (tx_status)
                added.append(tx)
        if added and self.batcher is not None:
            first = await self.batcher.add_many(added)  # one pass of the event loop for the lot, not one each
            for seq, tx in enumerate(added, first):
                self.own_hold.queued(tx.hash, seq)
        return verdicts

    async def _gossip_replayed(self, replayed: list[StoredTx]) -> None:
        """Transactions taken back from the mempool store at start-up go out again (peers that restarted too
        may have lost them); our own clients' ones under the proposal hold, as when they first came."""
        if not replayed or self.batcher is None:
            return
        first = await self.batcher.add_many([item.tx for item in replayed])
        for seq, item in enumerate(replayed, first):
            if item.own:
                self.own_hold.queued(item.tx.hash, seq)

    def _batch_out(self, through: int) -> None:
        """The batcher has sent every item before `through`. With no peer on the topic (a lone validator)
        nobody can lack them: they count as long out, so our proposals need not wait the grace."""
        alone = self.p2p is None or not self.p2p.gossip.topic_peers(TopicKind.TXS)
        self.own_hold.published(through, -math.inf if alone else trio.current_time())

    def _peer_asked_txs(self, peer: ID, hashes: Sequence[Hash32]) -> None:
        """A peer fetches transactions from us (a proposal it could not rebuild from its mempool): if they
        include our own clients' ones, that peer's gossip lag is longer than our proposals' grace
        (node.proposal_hold)."""
        unpublished, published, oldest = self.own_hold.asked(str(peer), [bytes(h) for h in hashes],
                                                             trio.current_time())
        if published and self.validator_peers is not None and not self.own_hold.is_bound(str(peer)):
            self.validator_peers.learn(peer)  # its lag counts once it proves which validator it is
        if unpublished or published:
            logger.info("peer %s asked for %d transactions: %d of our clients' not yet gossiped, %d gossiped "
                        "(oldest %.1f s ago); proposal grace now %.1f s", str(peer)[-6:], len(hashes), unpublished,
                        published, oldest, self.own_hold.grace_s)

    async def _relay_tx(self, tx: Transaction) -> None:
        """A gossiped transaction our mempool took from a batch that is not relayed whole: ours to batch."""
        if self.batcher is not None:
            await self.batcher.add(tx)

    async def _publish_batch(self, data: bytes) -> None:
        if self.p2p is None:
            return
        if not self.p2p.gossip.topic_peers(TopicKind.TXS):
            return  # nobody to send to (a lone validator); gossipsub would drop it anyway
        try:
            # Our own batches hold only transactions the mempool verified on entry: no second check.
            await self.p2p.publish(TopicKind.TXS, data, check=False)
        except InferchainError as exc:
            logger.warning("tx batch not published: %s", exc)

    # ---------------------------------------------------------------- consensus messages

    async def _publish_consensus(self, message: Vote | ProposalBlock | Evidence) -> None:
        if self.p2p is None:
            return
        # Our own signed messages were built and checked here (the block by build_block, evidence by the
        # consensus machine): publishing them skips the envelope check a peer's copy gets.
        if isinstance(message, Vote):
            await self.p2p.publish(TopicKind.VOTES, message.encode(), check=False)
        elif isinstance(message, ProposalBlock):
            await self.p2p.publish(TopicKind.PROPOSALS, compact_of(message).encode(), check=False)
        else:
            await self.p2p.publish(TopicKind.EVIDENCE, EvidenceEnvelope(message).encode(), check=False)
