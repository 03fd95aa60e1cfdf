"""Tendermint BFT with proof-of-inference: a pure state machine plus its signer, WAL and evidence pool.

consensus never imports vm, p2p or node; it talks to the application only through core.app's Protocol,
by way of the actions the node's driver performs (docs/consensus.md has the driver contract).
"""

from consensus.actions import (
    Action,
    Broadcast,
    BuildBlock,
    CommitBlock,
    RaiseAlarm,
    ReportEvidence,
    ScheduleTimeout,
    Sign,
    ValidateBlock,
)
from consensus.commit import verify_commit
from consensus.events import (
    BlockBuilt,
    BlockValidated,
    CommitFetched,
    Event,
    EvidenceReceived,
    NewHeight,
    ProposalReceived,
    Resume,
    TimeoutFired,
    VoteReceived,
    VotesFetched,
    decode_event,
    encode_event,
)
from consensus.evidence import EvidencePool, validate_evidence
from consensus.params import ConsensusParams, Step
from consensus.proposer import ProposerPriorities
from consensus.signer import FileSignState, MemorySignState, Signer, SignRecord, SignState
from consensus.state import ConsensusState, VoteQuery
from consensus.wal import FileWAL, MemoryWAL, WriteAheadLog

__all__ = [
    "Action",
    "BlockBuilt",
    "BlockValidated",
    "Broadcast",
    "BuildBlock",
    "CommitBlock",
    "CommitFetched",
    "ConsensusParams",
    "ConsensusState",
    "Event",
    "EvidencePool",
    "EvidenceReceived",
    "FileSignState",
    "FileWAL",
    "MemorySignState",
    "MemoryWAL",
    "NewHeight",
    "ProposalReceived",
    "ProposerPriorities",
    "RaiseAlarm",
    "ReportEvidence",
    "Resume",
    "ScheduleTimeout",
    "Sign",
    "SignRecord",
    "SignState",
    "Signer",
    "Step",
    "TimeoutFired",
    "ValidateBlock",
    "VoteQuery",
    "VoteReceived",
    "VotesFetched",
    "WriteAheadLog",
    "decode_event",
    "encode_event",
    "validate_evidence",
    "verify_commit",
]
