"""One error root for Inferchain, split by cause.

Errors caused by input from outside (a peer, a user, a file) derive from `InferchainError`; a bug in our
own code raises a plain Python exception instead. A service handling a peer's message catches
`InferchainError` (never bare `Exception`) and penalizes the peer, so malformed input can never crash it.
"""

from __future__ import annotations


class InferchainError(Exception):
    """Root of every error that input from outside can cause."""


class DecodeError(InferchainError):
    """Bytes that are not the one canonical encoding of the expected type."""


class InvalidSignature(InferchainError):
    """A signature that does not verify against the claimed key and sign-bytes."""


class InvalidTransaction(InferchainError):
    """A transaction that can never be valid (stateless or stateful checks)."""


class InvalidBlock(InferchainError):
    """A block, header or commit that breaks a consensus rule."""


class InvalidVote(InferchainError):
    """A vote or proposal that breaks a consensus rule."""


class InvalidEvidence(InferchainError):
    """Evidence that does not prove misbehaviour."""


class InvalidEvidenceSignature(InvalidEvidence, InvalidSignature):
    """Evidence whose signed messages do not verify: both causes at once, so either handler catches it."""


class InvalidModel(InferchainError):
    """An ONNX model or its registration metadata that the chain refuses."""


class InferenceError(InferchainError):
    """A deterministic failure of one inference (non-finite or off-grid output, shape mismatch)."""


class LocalFault(InferchainError):
    """This node cannot decide (worker crash, limit hit, quarantined model); never a verdict on a tx."""


class KeyFileError(InferchainError):
    """A key file that is missing, unreadable, too permissive, corrupt or locked with another passphrase."""


class StorageError(InferchainError):
    """The node's database is missing, corrupt or from another chain."""


class ProofError(InferchainError):
    """A state or Merkle proof that is malformed (a proof that merely fails verification returns False)."""


class PeerMisbehaved(InferchainError):
    """A peer sent something a correct peer never sends."""


class ConfigError(InferchainError):
    """A node home, config file or genesis file that is missing or invalid."""


class DoubleSignError(InferchainError):
    """The signer refused to sign: it already signed at a later or conflicting height/round/step."""


class BindError(InferchainError):
    """This node cannot listen on a configured address (taken by another program, not local, not permitted);
    the message names the address. Raised at startup only; the node exits with it."""
