"""Idle pacing (`consensus.idle_block_time_ms` in config.toml): an idle chain slows down instead of stopping.

Every height carries a PoI challenge, so a chain cannot simply skip empty blocks. Instead, when a height
starts with no transaction ready in this node's mempool, the wait before its round 0 (the commit timeout
and the next-block delay, consensus.params) is stretched to the idle block time; it ends early as soon as
a transaction is ready here, or a proposal or vote of that height arrives from a peer (someone else had
work). Busy chains keep the normal pace.

This decides *when* this node starts a height, never *what* goes into a block or how a vote is judged: a
node with another setting (or none) still agrees on every block, and the consensus machine reads no clock
or mempool because of it. Periods counted in blocks (unbonding, evidence age, upload expiry, jail time) run
slower in wall time on an idle chain (docs/devnet.md).
"""

from __future__ import annotations

import dataclasses

import trio

from consensus.actions import ScheduleTimeout
from consensus.events import Event, ProposalReceived, VoteReceived
from consensus.params import ConsensusParams, Step
from node.mempool import Mempool

POLL_S = 0.05


class IdlePacer:
    def __init__(self, idle_block_time_ms: int, mempool: Mempool) -> None:
        self.idle_ms = idle_block_time_ms
        self.mempool = mempool
        self._active_height = 0  # the highest height a peer's proposal or vote was seen for
        self.idle_heights = 0    # heights started in idle mode (for tests and metrics)

    def is_busy(self) -> bool:
        return len(self.mempool) - self.mempool.gapped_count() > 0

    def note(self, event: Event) -> None:
        """A peer's message of a height means that height is under way somewhere: stop waiting for it."""
        if isinstance(event, ProposalReceived):
            self._active_height = max(self._active_height, int(event.proposal_block.proposal.height))
        elif isinstance(event, VoteReceived):
            self._active_height = max(self._active_height, int(event.vote.height))

    def params_for_height(self, base: ConsensusParams) -> ConsensusParams:
        """The timing the next height starts with: `base`, or with the wait stretched while idle."""
        if self.is_busy():
            return base
        self.idle_heights += 1
        return dataclasses.replace(base, timeout_commit_ms=max(base.timeout_commit_ms, self.idle_ms),
                                   next_block_delay_ms=max(base.next_block_delay_ms, self.idle_ms))

    async def sleep(self, action: ScheduleTimeout, base: ConsensusParams) -> None:
        """Sleep a timeout; the wait before round 0 ends early (after the base delay) once there is work."""
        start = trio.current_time()
        deadline = start + action.duration_ms / 1000
        if action.step is not Step.COMMIT or action.duration_ms <= base.timeout_commit_ms:
            await trio.sleep_until(deadline)
            return
        while trio.current_time() < deadline:
            if self.is_busy() or self._active_height >= int(action.height):
                await trio.sleep_until(min(deadline, start + base.next_block_delay_ms / 1000))
                return
            await trio.sleep(min(POLL_S, max(0.0, deadline - trio.current_time())))


def idle_pacer(idle_block_time_ms: int | None, mempool: Mempool) -> IdlePacer | None:
    """The pacer for a node's config (None: no idle pacing, the chain keeps its normal pace)."""
    return IdlePacer(idle_block_time_ms, mempool) if idle_block_time_ms else None
