"""Consensus parameters and the step names shared by events, actions and the state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Step(enum.IntEnum):
    """Where a round stands; also names which timeout fired. Order matters: the signer compares steps."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4  # block decided; waiting for the driver's NewHeight, then the commit timeout


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Timeouts grow linearly with the round (arXiv 1807.04938 §4), so after GST some round is long enough.

    The machine's own settings. On a node they come from the chain's parameters in state
    (`vm.params.ChainConsensusParams`, which governance may change) through one rule,
    `node.service.consensus_params`, asked again before every height; the defaults serve the simulator."""

    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    # After a commit: time to gather late precommits (PoI answers, proposer bonus) before round 0 starts.
    timeout_commit_ms: int = 1000
    # When every precommit of the last height is already in there is nothing left to gather: round 0 starts
    # once this long has passed since the last block's time (at once if it already has; never later than
    # timeout_commit would). It paces an idle chain: each height issues PoI rewards and costs every
    # validator a PoI challenge and its fsyncs. The reasons for the defaults: docs/performance-latency.md,
    # "Latency: the wait after a commit".
    next_block_delay_ms: int = 1000
    # A proposal whose block time is further than this ahead of the local clock gets a nil prevote.
    max_clock_drift_ms: int = 10_000
    # Evidence older than this many heights is neither accepted nor included.
    max_evidence_age: int = 100
    max_block_evidence: int = 32
    # Messages for the next height kept while this one finishes (vote catch-up recovers the rest).
    future_buffer: int = 1024

    def timeout_ms(self, step: Step, round_: int) -> int:
        if step == Step.PROPOSE:
            return self.timeout_propose_ms + round_ * self.timeout_propose_delta_ms
        if step == Step.PREVOTE:
            return self.timeout_prevote_ms + round_ * self.timeout_prevote_delta_ms
        if step == Step.PRECOMMIT:
            return self.timeout_precommit_ms + round_ * self.timeout_precommit_delta_ms
        return self.timeout_commit_ms
