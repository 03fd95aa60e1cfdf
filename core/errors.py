"""One error root for Inferchain, split by who caused the error (as h11 splits Local/RemoteProtocolError).

    InferchainError
    ├── RemoteError                 a peer's, client's or user's input: reject it, penalize where due
    │   ├── DecodeError
    │   ├── InvalidSignature
    │   ├── InvalidTransaction
    │   ├── InvalidBlock
    │   ├── InvalidEvidence
    │   │   └── InvalidEvidenceSignature  (also an InvalidSignature)
    │   ├── InvalidModel
    │   ├── InferenceError           a deterministic verdict on a transaction's inference
    │   ├── ProofError               a malformed proof is its prover's fault
    │   └── PeerMisbehaved
    └── LocalError                  this node's own fault: alarm, stop or retry; never blame the sender
        ├── LocalFault               cannot decide now (worker crash, limit hit, quarantined model)
        ├── StorageError
        ├── DoubleSignError
        ├── ConfigError              the operator's node home, config or genesis file
        ├── KeyFileError             the operator's key file
        └── BindError                a configured listen address this node cannot bind

A handler catches by the split: `RemoteError` means refuse the input (and penalize the peer where the
protocol says so); `LocalError` means alarm, stop or retry, and never report it as the sender's fault. A bug in
our own code raises a plain Python exception instead. Services never catch bare `Exception` around peer
input except to log a bug and keep serving.
"""

from __future__ import annotations


class InferchainError(Exception):
    """Root of every error Inferchain raises on purpose; catch `RemoteError` or `LocalError` instead."""


class RemoteError(InferchainError):
    """Input from outside this node (a peer, an RPC client, a CLI user) that it refuses: reject, penalize."""


class LocalError(InferchainError):
    """This node's own fault (its disk, files, workers, signer): alarm, stop or retry; never the sender's."""


class DecodeError(RemoteError):
    """Bytes that are not the one canonical encoding of the expected type."""


class TooLarge(RemoteError, ValueError):
    """A value over a size cap of the wire format (core.limits): refused before it is encoded or sent. A
    ValueError too, so callers that validate with `except ValueError` keep working."""


class InvalidSignature(RemoteError):
    """A signature that does not verify against the claimed key and sign-bytes."""


class InvalidTransaction(RemoteError):
    """A transaction that can never be valid (stateless or stateful checks)."""


class InvalidBlock(RemoteError):
    """A block, header or commit that breaks a consensus rule."""


class InvalidEvidence(RemoteError):
    """Evidence that does not prove misbehaviour."""


class InvalidEvidenceSignature(InvalidEvidence, InvalidSignature):
    """Evidence whose signed messages do not verify: both causes at once, so either handler catches it."""


class InvalidModel(RemoteError):
    """An ONNX model or its registration metadata that the chain refuses."""


class InferenceError(RemoteError):
    """A deterministic failure of one inference (non-finite or off-grid output, shape mismatch): the same
    verdict on every node, so the transaction's author caused it."""


class ProofError(RemoteError):
    """A state or Merkle proof that is malformed (a proof that merely fails verification returns False);
    proofs come from whoever serves them, so a malformed one is the server's fault, not the verifier's."""


class PeerMisbehaved(RemoteError):
    """A peer sent something a correct peer never sends."""


class LocalFault(LocalError):
    """This node cannot decide (worker crash, limit hit, quarantined model); never a verdict on a tx."""


class StorageError(LocalError):
    """The node's database is missing, corrupt or from another chain."""


class DoubleSignError(LocalError):
    """The signer refused to sign: it already signed at a later or conflicting height/round/step."""


class ConfigError(LocalError):
    """A node home, config file or genesis file that is missing or invalid: the operator's setup, so the
    node stops with a one-line message (no peer or client sent it)."""


class KeyFileError(LocalError):
    """A key file that is missing, unreadable, too permissive, corrupt or locked with another passphrase:
    the operator's file, so the command or node stops with a one-line message."""


class BindError(LocalError):
    """This node cannot listen on a configured address (another program holds it, not a local address, not
    permitted): the operator's setup, so the node stops with a one-line message naming the address."""
