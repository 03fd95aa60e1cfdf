"""Ed25519 keys: generate, derive, sign, verify.

Signing and verification use libsodium through PyNaCl: measured in `bench/codec_crypto.py` against the
`cryptography` package (OpenSSL), libsodium verifies about twice as fast, and verification is on the hot path
(every transaction and vote). libsodium's verify is strict (canonical S, no small-order keys), so a
signature has one valid form and transaction hashes are not malleable.
"""

from __future__ import annotations

import os

import nacl.bindings as sodium
import nacl.exceptions

from core.address import address_from_public_key
from core.hashing import tagged_hash
from core.types import Address, PublicKeyBytes, SignatureBytes

SEED_SIZE = 32


class PrivateKey:
    """An Ed25519 signing key. Holds the 32-byte seed; never printed."""

    __slots__ = ("_secret", "address", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        pk, sk = sodium.crypto_sign_seed_keypair(bytes(seed))
        self._secret: bytes = sk
        self.public_key = PublicKeyBytes(pk)
        self.address: Address = address_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(SEED_SIZE))

    @classmethod
    def derive(cls, seed_phrase: str, purpose: str, index: int) -> PrivateKey:
        """Deterministic key from a published seed phrase: devnet and test keys only, never for value."""
        material = tagged_hash(b"inferchain/derive-key", seed_phrase.encode(), b"\0",
                               purpose.encode(), b"\0", index.to_bytes(4, "big"))
        return cls(bytes(material))

    @property
    def seed(self) -> bytes:
        seed: bytes = sodium.crypto_sign_ed25519_sk_to_seed(self._secret)
        return seed

    def sign(self, message: bytes) -> SignatureBytes:
        signed: bytes = sodium.crypto_sign(message, self._secret)
        return SignatureBytes(signed[:64])

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.address})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s valid signature of `message`; never raises on bad input."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        sodium.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True
