"""The node key: an Ed25519 libp2p identity, separate from the validator key, whose hash is the peer id.

Separate keys let an operator rotate or firewall the network identity without touching consensus keys.
"""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.identity_utils import load_identity, save_identity
from libp2p.peer.id import ID

from core.errors import KeyFileError
from p2p.peerid import node_seed_secret


def node_key_from_seed(seed: bytes) -> KeyPair:
    """Deterministic node key from any seed (devnets, tests); domain-separated from validator keys."""
    return create_new_key_pair(seed=node_seed_secret(seed))


def new_node_key() -> KeyPair:
    return create_new_key_pair(seed=os.urandom(32))


def save_node_key(key: KeyPair, path: str | Path) -> None:
    """Write the key in libp2p's protobuf format with mode 0600."""
    save_identity(key, path)


def load_node_key(path: str | Path) -> KeyPair:
    try:
        key = load_identity(path)
    except FileNotFoundError as exc:
        raise KeyFileError(f"node key file missing: {path}") from exc
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"node key file unreadable or corrupt: {path}: {exc}") from exc
    if key.private_key.get_type().name != "Ed25519":
        raise KeyFileError(f"node key must be Ed25519, got {key.private_key.get_type().name}: {path}")
    return key


def load_or_create_node_key(path: str | Path, seed: bytes | None = None) -> KeyPair:
    """Load the key at `path`, or create it (from `seed` if given) and save it there."""
    if Path(path).exists():
        return load_node_key(path)
    key = node_key_from_seed(seed) if seed is not None else new_node_key()
    save_node_key(key, path)
    return key


def peer_id_of(key: KeyPair) -> ID:
    return ID.from_pubkey(key.public_key)
