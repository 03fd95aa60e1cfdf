"""Authenticated state: a versioned sparse Merkle map (Jellyfish layout) with inclusion/exclusion proofs."""

from core.state.hashing import EMPTY_ROOT, key_path
from core.state.proof import ProofLeaf, StateProof, compute_proof_root, verify_proof
from core.state.tree import AuthenticatedMap, StateUpdate

__all__ = [
    "EMPTY_ROOT",
    "AuthenticatedMap",
    "ProofLeaf",
    "StateProof",
    "StateUpdate",
    "compute_proof_root",
    "key_path",
    "verify_proof",
]
