"""How many transactions this node puts in its own proposals: as many as its validators can check within a
stated share of `timeout_propose`.

A proposal is useful only if the validators have rebuilt and validated it before their propose timeout; a
block that takes longer loses its round at every height (docs/performance-throughput.md, "Sustained load"). Gas does
not bound that for cheap kinds (a transfer's gas is far under its validation time), so the proposer measures what a transaction costs here: the wall time of its own block builds (the
same execution validators repeat) and of its validations of other validators' blocks (which run while the
other validators validate too, the contention a proposal meets) per transaction, smoothed, and reaps at most

    share x timeout_propose / seconds per transaction

transactions. The estimate only knows the blocks measured so far: when the load starts, or its kind
changes (transfers, then tiny inferences at ten times their validation time), it is a guess, and a block
sized by a wrong guess loses its round at every proposer in turn (measured: the first loaded height of a
tiny-inference run lost four rounds, ~30 s, to 2,071-3,140-inference builds of 4-8 s each;
docs/performance-throughput.md, "Tiny inference on the devnet"). So a proposal also grows at most GROWTH times the
last block this node built or validated, from FIRST_PROPOSAL_TXS, as TCP's slow start grows its window:
each height measures the next size before anyone proposes it.

The wall time measured is the right unit (the propose timeout is wall time) but a biased estimate: on a
saturated machine a validation waits for a core and for the GIL (the node's event loop admits, gossips and
refuses transactions in the same process); on the devnet at load ~20 the validating thread ran for an eighth
of its validation's wall time (median; a third to a twentieth; docs/performance-throughput.md, "The small-block
regime"). That wait grows with the node's other work, and its other work grows when blocks are small
(mempools fill, clients are refused and send again), so a sizer that only divides the budget by it can
settle in a regime of small blocks, each within its budget, that commits half of what larger ones do. The
thread's CPU time is no better a unit: it omits the wait, which is real, and the sandbox workers that run a
block's inferences. So the sizer also asks the constraint itself: a height decided in round 0 proved that
its block, at its size, was built, relayed and validated within the timeout by a quorum at that moment's
load. The next proposal may hold up to PROBE_GROWTH times that block whatever the wall estimate says (the
probe), and a height decided in a later round halves what the probe allows (the decrease), as TCP's
congestion window learns a path's capacity from delivered and lost segments rather than from a model of it.

This is proposer policy, not a consensus rule: validators accept any valid block, nothing here enters a
hash or a verdict, and the wall time read here never reaches the state machine or the VM (the round a
height was decided in is the chain's own data, the same on every node).
"""

from __future__ import annotations

from dataclasses import dataclass

# The share of timeout_propose one validation may take: the proposer builds (about one validation), the
# compact proposal travels and is rebuilt, then each validator validates; a third each leaves room for the
# relay and for validators that share cores with each other (a devnet on one machine).
VALIDATION_SHARE = 1 / 3
# Before any measurement: a transfer's validation on a loaded core (bench/worst_block.py measures ~88 us
# on a quiet one; four validators on two cores see two to three times that).
PRIOR_SECONDS_PER_TX = 250e-6
# Blocks smaller than this are dominated by the block's fixed costs and say little about a transaction.
MIN_SAMPLE_TXS = 100
# Weight of the newest sample in the running estimate.
SMOOTHING = 0.3
# Never fewer than this per proposal, however slow the last builds were (a backlog must still drain).
MIN_PROPOSAL_TXS = 256
# A proposal holds at most GROWTH times the last block this node built or validated, and at most
# FIRST_PROPOSAL_TXS more than a block of under MIN_SAMPLE_TXS (the slow start above).
GROWTH = 2
FIRST_PROPOSAL_TXS = 2 * MIN_PROPOSAL_TXS
# A proposal may hold this many times the last block decided in round 0, whatever the wall estimate allows
# (a quarter more per height: from 800 to over 5,000 transactions in nine heights).
PROBE_GROWTH = 1.25


@dataclass(slots=True)
class ProposalSizer:
    """The running estimate of seconds per transaction, and the proposal size it implies."""

    seconds_per_tx: float = PRIOR_SECONDS_PER_TX
    share: float = VALIDATION_SHARE
    samples: int = 0
    last_txs: int = 0  # the last block built or validated here, whatever its size (the slow start's base)
    proven_txs: int = 0  # the last block decided in round 0, halved by each height decided later (the probe's base)

    def observe(self, txs: int, seconds: float) -> None:
        """Record one build or validation of a block of `txs` transactions that took `seconds` of wall time."""
        self.last_txs = txs
        if txs < MIN_SAMPLE_TXS or seconds <= 0:
            return
        sample = seconds / txs
        self.seconds_per_tx = sample if self.samples == 0 else (
            SMOOTHING * sample + (1 - SMOOTHING) * self.seconds_per_tx)
        self.samples += 1

    def decided(self, txs: int, round_: int) -> None:
        """Record a committed height: its block of `txs` transactions was decided in round `round_`."""
        if round_ == 0:
            self.proven_txs = txs
        else:
            self.proven_txs //= 2

    def max_txs(self, timeout_propose_ms: int, limit: int) -> int:
        """Transactions for the next proposal: what validates within `share` of the propose timeout, or up to
        PROBE_GROWTH times the last block decided in round 0 if that is more; at most GROWTH times the last
        block measured (FIRST_PROPOSAL_TXS after small ones), at least MIN_PROPOSAL_TXS and at most `limit`
        (the block's own cap)."""
        grown = min(limit, max(FIRST_PROPOSAL_TXS, GROWTH * self.last_txs))
        fits = compute_proposal_txs(timeout_propose_ms, self.share, self.seconds_per_tx, grown)
        return max(fits, min(grown, int(PROBE_GROWTH * self.proven_txs)))


def compute_proposal_txs(timeout_propose_ms: int, share: float, seconds_per_tx: float, limit: int) -> int:
    budget_s = timeout_propose_ms / 1000 * share
    fits = int(budget_s / seconds_per_tx) if seconds_per_tx > 0 else limit
    return max(min(MIN_PROPOSAL_TXS, limit), min(limit, fits))
