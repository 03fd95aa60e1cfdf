"""An Ed25519 node key's peer id and its libp2p key bytes, computed without importing libp2p.

libp2p's `ID.from_pubkey` is the rule (the libp2p peer-id spec): the public key's protobuf (`Type = Ed25519`,
`Data = the 32 key bytes`) is short enough to be embedded whole in an identity multihash, printed in
base58btc; a private key serializes the same way with its 32-byte seed as `Data`. Importing libp2p costs
about half a second of CPU (it loads its QUIC, relay and TLS stacks whatever one uses); the devnet supervisor
(which writes every node's home) and `devnet status` need only these bytes, so they use this module.
tests/p2p/test_peerid.py checks both against libp2p's own computation.
"""

from __future__ import annotations

from core.hashing import tagged_hash
from core.keys import PrivateKey

# crypto.pb PublicKey and PrivateKey: field 1 (KeyType, varint) = 1 (Ed25519), field 2 (bytes) of length 32.
_ED25519_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])
_IDENTITY_MULTIHASH = bytes([0x00, len(_ED25519_PROTOBUF_PREFIX) + 32])
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# The domain tag of a node key derived from a seed (p2p.identity.node_key_from_seed, and this module).
NODE_KEY_SEED_TAG = b"inferchain/node-key/v1"


def ed25519_peer_id(public_key: bytes) -> str:
    """The base58 peer id of a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return _base58(_IDENTITY_MULTIHASH + _ED25519_PROTOBUF_PREFIX + public_key)


def node_seed_secret(seed: bytes) -> bytes:
    """The Ed25519 seed of `p2p.identity.node_key_from_seed(seed)` (domain-separated from validator keys)."""
    return bytes(tagged_hash(NODE_KEY_SEED_TAG, seed))


def node_seed_peer_id(seed: bytes) -> str:
    """The peer id of `p2p.identity.node_key_from_seed(seed)`."""
    return ed25519_peer_id(bytes(PrivateKey(node_seed_secret(seed)).public_key))


def ed25519_private_key_protobuf(secret: bytes) -> bytes:
    """libp2p's serialization of the Ed25519 private key with 32-byte seed `secret` (`key.serialize()`)."""
    if len(secret) != 32:
        raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(secret)}")
    return _ED25519_PROTOBUF_PREFIX + secret


def _base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_BASE58[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))
