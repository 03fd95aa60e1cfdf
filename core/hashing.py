"""SHA-256 is the one hash of the protocol: block ids, tx hashes, Merkle and state trees, PoI seeds.

SHA-256 is chosen over BLAKE2/3 for its ubiquity (every light client and hardware wallet has it) and because
hashlib's OpenSSL implementation uses the SHA extensions of current x86 and ARM CPUs.
"""

from __future__ import annotations

import hashlib

from core.types import Hash32

HASH_SIZE = 32
ZERO_HASH = Hash32(b"\x00" * HASH_SIZE)

# A digest is always 32 bytes, so Hash32's length check is skipped: bytes.__new__ takes half the time of
# Hash32() and these run for every Merkle node, state-tree node and id.
_hash32 = bytes.__new__


def sha256(data: bytes) -> Hash32:
    return _hash32(Hash32, hashlib.sha256(data).digest())


def sha256_concat(*parts: bytes) -> Hash32:
    """Hash of the concatenation, without building the joined bytes."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return _hash32(Hash32, h.digest())


def tagged_hash(tag: bytes, *parts: bytes) -> Hash32:
    """Domain-separated hash: H(len(tag) ‖ tag ‖ parts...). Different uses can never collide."""
    h = hashlib.sha256()
    h.update(bytes([len(tag)]))
    h.update(tag)
    for part in parts:
        h.update(part)
    return _hash32(Hash32, h.digest())
