"""Catching up with peers: block sync before joining consensus, and vote/commit catch-up while in it.

Block sync (docs/design.md §4.10): ask connected peers for their status, fetch blocks with their commits from the
best one, verify each commit against the validator set this node knows for that height (consensus's
`verify_commit`), check the header's validator hashes and body, and commit through `Chain.commit` (the
application applies without running models; the state root must match the header). A peer whose block
does not verify is penalized and another is tried.

A status is a claim, not a proof (docs/security.md, "Sync liar"): only heights a peer serves count. A peer
that claims a height and then serves nothing up to it is penalized and not asked again; every exchange
either applies a verified block or drops a peer, block sync gives up after `MAX_SYNC_S`, and it stops at once
when validators holding more than a third of the next height's power are seen voting at that height (at
least one honest validator is deciding it: CometBFT's switch to consensus).

Consensus catch-up (docs/consensus.md): every `interval` a random peer is asked for the votes of the current
height and round this node lacks, and, when its status shows it already committed our height, for that
block and commit (CommitFetched). A peer whose round went unanswered cools down before it is asked again
(node/catchup_peers.py), so a peer behind a silent link is not picked round after round.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import trio
from libp2p.peer.id import ID

from consensus.commit import verify_commit
from consensus.proposer import ProposerPriorities
from consensus.state import ConsensusState
from core.block import Block
from core.errors import InferchainError, InvalidBlock, LocalError, RemoteError
from core.header import HeaderRules, validate_header
from core.types import Height
from core.votes import Commit, Vote
from node.catchup_peers import CatchUpPeers
from node.chain import Chain, ChainDiverged
from node.config import SyncSection
from p2p.errors import BadResponse, NotFound
from p2p.messages import ChainStatus, VotesRequest
from p2p.reqresp import SyncedBlock
from p2p.scoring import Offense
from p2p.service import P2PService

logger = logging.getLogger(__name__)

_STATUS_TIMEOUT_S = 3.0
# Block sync ends after this long whatever peers claim; consensus catch-up goes on from where it got.
MAX_SYNC_S = 300.0
# ... and after this many exchanges in a row that applied no block.
MAX_IDLE_EXCHANGES = 8
# Catch-up's fetch of one committed block, on top of its exchange's own time: a large block is a few parts.
_BLOCK_FETCH_S = 8.0


class ClaimNotServed(BadResponse):
    """A peer claimed a height in its status and then could not serve the blocks up to it."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer: ID
    status: ChainStatus


async def peer_statuses(p2p: P2PService, per_peer_s: float = _STATUS_TIMEOUT_S) -> list[PeerStatus]:
    """The status of every connected peer that answers within `per_peer_s`, best (highest) first."""
    out: list[PeerStatus] = []

    async def ask(peer: ID) -> None:
        with trio.move_on_after(per_peer_s):
            try:
                out.append(PeerStatus(peer, await p2p.reqresp.status(peer)))
            except RemoteError as exc:
                logger.debug("status of %s: %s", peer, exc)

    async with trio.open_nursery() as nursery:
        for peer in p2p.peers_serving("status"):
            nursery.start_soon(ask, peer)
    out.sort(key=lambda s: int(s.status.height), reverse=True)
    return out


def verify_synced_block(chain: Chain, synced: SyncedBlock, chain_id: str) -> ProposerPriorities | None:
    """Raise InvalidBlock unless `synced` is the next block, finalized under the set we know for it, with a
    header that passes `core.header.validate_header` (its proposer the one of the round it was built in, no
    later than the commit's round, when this node holds the height's proposer priorities).

    Returns the proposer priorities of the following height (None when they cannot be computed because
    nothing is stored for the current one). Pure CPU: run it in a worker thread.
    """
    block, commit = synced.block, synced.commit
    store, app = chain.blockstore, chain.app
    h = int(block.height)
    if h != int(store.height) + 1:
        raise InvalidBlock(f"synced block {h} does not follow our head {store.height}")
    block.validate_basic()
    vset = app.validator_set(Height(h))
    next_vset = app.validator_set(Height(h + 1))
    verify_commit(vset, block.id, commit, chain_id)  # first: the commit's round bounds the schedule's cost
    current: ProposerPriorities | None
    if h == 1:
        current = ProposerPriorities.genesis(vset)
    else:
        raw = store.next_proposers()
        current = None if raw is None else ProposerPriorities.decode(raw)
    validate_header(block.header, HeaderRules(chain_id, h, store.head_id, app.info().last_block_time, vset,
                                              next_vset.hash, None if current is None else current.proposer,
                                              int(commit.round)))
    return None if current is None else current.advance(next_vset)


class ConsensusSighting:
    """Votes gossiped while this node syncs: who is seen voting at the height this node would decide next.

    `is_seen()` once validators with more than a third of that height's power signed a vote for it: at least
    one of them is honest, so consensus is at our next height and there is nothing left to sync. Votes reach
    here only after their signature verified (p2p's envelope check) and their height passed the vote hook.
    """

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self._height = 0
        self._voters: set[bytes] = set()
        self._power = 0
        self.seen = trio.Event()

    def note_vote(self, vote: Vote) -> None:
        h = int(self._chain.height) + 1
        if int(vote.height) != h or self.seen.is_set():
            return
        if self._height != h:
            self._height, self._voters, self._power = h, set(), 0
        key = bytes(vote.validator)
        if key in self._voters:
            return
        try:
            vset = self._chain.app.validator_set(Height(h))
        except (ValueError, LookupError, InferchainError):
            return
        entry = vset.get_by_key(vote.validator)
        if entry is None:
            return
        self._voters.add(key)
        self._power += int(entry.power)
        if 3 * self._power > vset.total_power:  # more than a third: at least one honest validator
            self.seen.set()


class BlockSync:
    def __init__(self, chain: Chain, p2p: P2PService, chain_id: str, config: SyncSection | None = None,
                 *, max_sync_s: float = MAX_SYNC_S) -> None:
        self.chain = chain
        self.p2p = p2p
        self.chain_id = chain_id
        self.config = config or SyncSection()
        self.max_sync_s = max_sync_s
        self.synced_blocks = 0
        self.best_height = 0  # the highest height a peer proved by serving it
        self.liars: set[ID] = set()  # peers that claimed heights they could not serve
        self.sighting = ConsensusSighting(chain)
        self.switched_to_consensus = False
        self._threads = trio.CapacityLimiter(1)

    async def apply(self, synced: SyncedBlock) -> None:
        """Verify and commit one fetched block; InvalidBlock when the block or its commit is wrong."""
        next_proposers = await trio.to_thread.run_sync(verify_synced_block, self.chain, synced, self.chain_id,
                                                       limiter=self._threads)
        with trio.CancelScope(shield=True):  # a switch to consensus never interrupts a commit
            await self.chain.commit(synced.block, synced.commit,
                                    None if next_proposers is None else next_proposers.encode())
        self.synced_blocks += 1
        self.best_height = max(self.best_height, int(synced.block.height))

    async def sync_from(self, peer: ID, target: int) -> int:
        """Fetch and apply blocks from `peer` up to `target`; returns how many were applied."""
        applied = 0

        async def on_blocks(chunk: list[SyncedBlock]) -> None:
            nonlocal applied
            for synced in chunk:
                if int(synced.block.height) <= int(self.chain.height):
                    continue  # consensus or an earlier chunk got there first
                await self.apply(synced)
                applied += 1

        start = int(self.chain.height) + 1
        while start <= target:
            end = min(target, start + self.config.batch - 1)
            fetched = await self.p2p.reqresp.fetch_blocks(peer, start, end, on_blocks)
            if fetched == 0:
                # Heights only grow and a store never drops a block above its base (peers whose base is above
                # `start` were not asked): an honest peer serves what it claimed.
                raise ClaimNotServed(f"peer {peer} claimed height {target} but served nothing from {start}")
            start = int(self.chain.height) + 1
        return applied

    async def catch_up(self, *, wait_for_peers_s: float = 5.0) -> int:
        """Sync until no peer is more than `catch_up_threshold` ahead; returns blocks applied.

        Waits up to `wait_for_peers_s` for a first peer (a lone validator starts at once). Returns early when
        peers are seen voting at our next height (`switched_to_consensus`), or after `max_sync_s`.
        """
        if not self.config.enabled:
            return 0
        with trio.move_on_after(wait_for_peers_s):
            while not self.p2p.connected_peers():  # noqa: ASYNC110 - libp2p gives no event for this
                await trio.sleep(0.1)
        total = 0
        async with trio.open_nursery() as nursery:
            async def switch() -> None:
                await self.sighting.seen.wait()
                self.switched_to_consensus = True
                logger.info("block sync: validators are voting at height %d; joining consensus",
                            int(self.chain.height) + 1)
                nursery.cancel_scope.cancel()

            nursery.start_soon(switch)
            with trio.move_on_after(self.max_sync_s) as deadline:
                total = await self._sync_loop()
            if deadline.cancelled_caught:
                logger.warning("block sync: gave up after %.0f s at height %d; consensus catch-up goes on",
                               self.max_sync_s, self.chain.height)
            nursery.cancel_scope.cancel()
        return total

    async def _sync_loop(self) -> int:
        total = 0
        failures: set[ID] = set()
        idle = 0
        while idle < MAX_IDLE_EXCHANGES:
            # A peer whose store starts above our next height (a pruned or forked store) cannot serve it.
            nxt = int(self.chain.height) + 1
            statuses = [s for s in await peer_statuses(self.p2p)
                        if s.peer not in failures and int(s.status.base_height) <= nxt]
            if not statuses:
                return total
            best = statuses[0]
            claimed = int(best.status.height)
            if claimed <= int(self.chain.height) + self.config.catch_up_threshold - 1:
                return total
            logger.info("block sync: at %d, peer %s claims %d", self.chain.height, best.peer, claimed)
            before = self.synced_blocks
            try:
                await self.sync_from(best.peer, claimed)
            except ChainDiverged:
                raise
            except ClaimNotServed as exc:
                logger.warning("block sync: %s", exc)
                self.p2p.penalize(best.peer, Offense.FALSE_CLAIM, str(exc))
                self.liars.add(best.peer)
                failures.add(best.peer)
            except InvalidBlock as exc:
                logger.warning("block sync: peer %s sent a block that does not verify: %s", best.peer, exc)
                self.p2p.penalize(best.peer, Offense.BAD_RESPONSE, str(exc))
                failures.add(best.peer)
            except RemoteError as exc:  # a LocalError (our database) propagates: stop, like ChainDiverged
                logger.info("block sync from %s failed: %s", best.peer, exc)
                failures.add(best.peer)
            applied = self.synced_blocks - before
            total += applied
            idle = 0 if applied else idle + 1
        logger.warning("block sync: %d exchanges in a row applied nothing; joining consensus", idle)
        return total


class CatchUpTarget(Protocol):
    """What catch-up reads from and feeds to consensus (`node.driver.ConsensusDriver` is one)."""

    state: ConsensusState

    @property
    def height(self) -> Height: ...

    async def on_votes_fetched(self, votes: Sequence[Vote]) -> None: ...

    async def on_commit_fetched(self, block: Block, commit: Commit) -> None: ...


# Catch-up asks once consensus has not changed height or round for this many looks in a row.
STILL_LOOKS = 2


class ConsensusCatchUp:
    """While in consensus: recover lost votes and commits from peers over request/response.

    A round of requests is skipped while consensus moves on by itself: when its height or round changed
    within the last STILL_LOOKS looks (gossip delivered what it needed; a height's wait for round 0 lasts up
    to `timeout_commit`, 1 s by default), unless it is waiting for precommits of the last height that it
    lacks (PoI answers: they go into the next block). A stuck node asks once it has not moved for
    STILL_LOOKS looks. Each round is a status request and several vote queries, each a new stream, on the
    asking node and on the peer answering it: on a devnet making 1-4 heights a second this was most of a
    node's request/response traffic, for nothing (docs/performance-cpu.md, "Fixed costs").
    """

    def __init__(self, p2p: P2PService, driver: CatchUpTarget, chain: Chain, interval_s: float = 0.5) -> None:
        self.p2p = p2p
        self.driver = driver
        self.chain = chain
        self.interval_s = interval_s
        self.votes_fetched = 0
        self.commits_fetched = 0
        self.peer_choice: CatchUpPeers[ID] = CatchUpPeers(trio.current_time)
        self.rounds_answered = 0
        self.rounds_unanswered = 0
        self.rounds_skipped = 0  # looks at which consensus had moved on by itself (see the class docstring)
        self._answered = False  # the current round got an answer from its peer
        self._last_look: tuple[int, int] | None = None  # (height, round) at the last look
        self._still = 0  # looks in a row at which it had not changed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        behind = False
        while True:
            if not behind:
                await trio.sleep(self.interval_s)
                if self.is_moving():
                    self.rounds_skipped += 1
                    continue
            behind = False
            peer = self.peer_choice.choose(self.p2p.peers_serving("votes"))
            if peer is None:
                continue
            self._answered = False
            try:
                behind = await self.round_with(peer)
            except RemoteError as exc:
                logger.debug("catch-up with %s: %s", peer, exc)
                self._answered = False
            except LocalError as exc:  # ours, not the peer's: say so, try again next round
                logger.warning("catch-up with %s failed on our side: %s", peer, exc)
                continue
            if self._answered:
                self.rounds_answered += 1
                self.peer_choice.record_answered(peer)
            else:  # a RemoteError or a round that timed out with nothing fetched: ask others for a while
                self.rounds_unanswered += 1
                self.peer_choice.record_unanswered(peer)

    def is_moving(self) -> bool:
        """Whether consensus changed height or round within the last STILL_LOOKS looks and lacks no
        precommit of the last height it still waits for (then there is nothing to recover now). Counts this
        look."""
        state = self.driver.state
        look = (int(self.driver.height), int(state.round))
        if look != self._last_look:
            self._last_look, self._still = look, 0
        else:
            self._still += 1
        if self._still >= STILL_LOOKS:
            return False
        last = look[0] - 1
        for query in state.catch_up_queries():
            if int(query.height) == last and not self._is_complete(last, query.have):
                return False
        return True

    def _is_complete(self, height: int, have: bytes) -> bool:
        """Whether `have` holds a vote of every validator of `height` (False when the set is unknown)."""
        try:
            size = len(self.chain.app.validator_set(Height(height)))
        except (ValueError, LookupError, InferchainError):
            return False
        return sum(bin(byte).count("1") for byte in have) >= size

    async def round_with(self, peer: ID) -> bool:
        """One exchange with `peer`; True when it fed a commit and the peer is further ahead still."""
        driver = self.driver
        state = driver.state
        status: ChainStatus | None = None
        with trio.move_on_after(max(2.0, 4 * self.interval_s)):
            for q in state.catch_up_queries():
                votes = await self.p2p.reqresp.votes(peer, VotesRequest(q.height, q.round, q.type, q.have))
                self._answered = True
                if votes:
                    self.votes_fetched += len(votes)
                    await driver.on_votes_fetched(votes)
            status = await self.p2p.reqresp.status(peer)
            self._answered = True
        height = int(driver.height)
        if (status is None or int(status.height) < height or int(status.base_height) > height
                or int(self.chain.height) >= height):
            return False
        fetched: list[SyncedBlock] = []
        # A block too large for one response comes in parts (p2p.reqresp.block_in_parts): more time for it.
        with trio.move_on_after(max(2.0, 4 * self.interval_s) + _BLOCK_FETCH_S):
            try:
                fetched = await self.p2p.reqresp.blocks(peer, height, height)
            except NotFound:
                # It claimed a height it cannot serve (block sync's ClaimNotServed): not asked again soon.
                self.p2p.penalize(peer, Offense.FALSE_CLAIM, f"claimed height {status.height}, has no block {height}")
                return False
        for synced in fetched:
            if int(synced.block.height) == height:
                self.commits_fetched += 1
                await driver.on_commit_fetched(synced.block, synced.commit)
                # Give the driver the time to commit it, then go on at once if the peer is further ahead.
                with trio.move_on_after(2.0):
                    while int(self.chain.height) < height:  # noqa: ASYNC110 - no event for a commit here
                        await trio.sleep(0.01)
                return int(status.height) > height
        return False
