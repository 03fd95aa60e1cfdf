"""The error tree: every error Inferchain raises on purpose is either remote (a peer's or client's input,
to refuse) or local (this node's own fault, to alarm on), never both."""

from __future__ import annotations

import pytest

from core import errors
from core.errors import (
    ConfigError,
    DecodeError,
    DoubleSignError,
    InferchainError,
    InferenceError,
    InvalidBlock,
    InvalidEvidence,
    InvalidEvidenceSignature,
    InvalidModel,
    InvalidSignature,
    InvalidTransaction,
    KeyFileError,
    LocalError,
    LocalFault,
    PeerMisbehaved,
    ProofError,
    RemoteError,
    StorageError,
)

pytestmark = pytest.mark.core

REMOTE = {DecodeError, InvalidSignature, InvalidTransaction, InvalidBlock, InvalidEvidence,
          InvalidEvidenceSignature, InvalidModel, InferenceError, ProofError, PeerMisbehaved}
LOCAL = {LocalFault, StorageError, DoubleSignError, ConfigError, KeyFileError}


def _declared() -> set[type[InferchainError]]:
    return {cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, InferchainError)
            and cls not in (InferchainError, RemoteError, LocalError)}


def test_both_branches_share_the_one_root_and_exclude_each_other() -> None:
    assert issubclass(RemoteError, InferchainError) and issubclass(LocalError, InferchainError)
    assert not issubclass(RemoteError, LocalError) and not issubclass(LocalError, RemoteError)


def test_each_core_error_sits_on_exactly_the_side_of_its_cause() -> None:
    assert _declared() >= REMOTE | LOCAL
    for cls in _declared():
        assert issubclass(cls, RemoteError) != issubclass(cls, LocalError), cls.__name__
    for cls in REMOTE:
        assert issubclass(cls, RemoteError), cls.__name__
    for cls in LOCAL:
        assert issubclass(cls, LocalError), cls.__name__


def test_evidence_with_a_bad_signature_is_caught_by_either_remote_handler() -> None:
    assert issubclass(InvalidEvidenceSignature, InvalidEvidence)
    assert issubclass(InvalidEvidenceSignature, InvalidSignature)
    assert issubclass(InvalidEvidenceSignature, RemoteError)
