"""The Tendermint state machine (arXiv 1807.04938), pure: `handle(event) -> actions`.

No clock, network, disk or randomness inside: time arrives as `event.now`, validator sets and proposer
priorities arrive in NewHeight, and everything the machine wants done comes back as actions for the driver
(node/driver.py in the node, tests/consensus/sim in the simulator). See docs/consensus.md for the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.actions import Action
from consensus.events import Event
from consensus.params import ConsensusParams, Step
from core.evidence import Evidence
from core.keys import verify
from core.types import Height, PublicKeyBytes, Round
from core.votes import Vote, VoteType

# verify(public_key, message, signature) -> bool; inject a caching one to verify each signature once per node.
Verifier = Callable[[bytes, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class VoteQuery:
    """A catch-up query: the votes of (height, round, type) this node lacks; `have` is the p2p bitset
    (bit i = validator i of the height's set in address order, byte i//8, bit i%8 from the low end)."""

    height: Height
    round: Round
    type: VoteType
    have: bytes


class ConsensusState:
    """One validator's (or an observer's, with `me=None`) view of consensus. Feed it events, one at a time."""

    def __init__(self, chain_id: str, me: PublicKeyBytes | None, params: ConsensusParams | None = None, *,
                 verifier: Verifier = verify) -> None:
        self.chain_id = chain_id
        self.me = me
        self.params = params or ConsensusParams()
        self._verify = verifier

    def handle(self, event: Event) -> list[Action]:
        """Apply one input; return the actions to perform, in order."""
        raise NotImplementedError

    @property
    def height(self) -> Height:
        raise NotImplementedError

    @property
    def round(self) -> Round:
        raise NotImplementedError

    @property
    def step(self) -> Step:
        raise NotImplementedError

    def vote_bits(self, height: int, round_: int, vote_type: VoteType) -> bytes:
        """The `have` bitset of the votes held for (height, round, type)."""
        raise NotImplementedError

    def votes_for_peer(self, height: int, round_: int, vote_type: VoteType, have: bytes) -> tuple[Vote, ...]:
        """Serve a peer's catch-up query: the held votes of (height, round, type) whose bit is not set."""
        raise NotImplementedError

    def catch_up_queries(self) -> tuple[VoteQuery, ...]:
        """What to ask a peer for now (call periodically; answers come back as VotesFetched)."""
        raise NotImplementedError

    def pending_evidence(self) -> tuple[Evidence, ...]:
        raise NotImplementedError
