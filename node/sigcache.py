"""Verified-signature cache: each transaction signature is verified once per node (docs/design.md §4.11).

Keyed by transaction hash, which covers the signature, so a hit means these exact bytes verified before.
Shared by the mempool (entry), gossip (the p2p envelope check verifies whole batches) and block
validation in the VM's worker thread; hence the lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from core.keys import verify
from core.tx import Transaction
from core.votes import Vote


class SigCache:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.verifications = 0

    def __contains__(self, tx_hash: object) -> bool:
        with self._lock:
            return tx_hash in self._verified

    def __len__(self) -> int:
        return len(self._verified)

    def mark_verified(self, tx_hash: bytes) -> None:
        """Record a signature verified elsewhere (the p2p envelope check of a gossiped batch)."""
        self._remember((bytes(tx_hash),))

    def _remember(self, keys: Iterable[bytes]) -> None:
        verified = self._verified
        with self._lock:
            for key in keys:
                if key in verified:
                    verified.move_to_end(key)
                else:
                    verified[key] = None  # a new key goes in last: nothing to move
            while len(verified) > self._capacity:
                verified.popitem(last=False)

    def unverified(self, checks: Sequence[tuple[Transaction, bytes]]) -> list[tuple[Transaction, bytes]]:
        """Those of `checks` (transaction, its hash as bytes) never verified here, in order; the others count
        as hits. One lock for the lot (the gossip hook asks per batch, on the event loop: a dict lookup each)."""
        verified = self._verified
        out: list[tuple[Transaction, bytes]] = []
        with self._lock:
            for check in checks:
                if check[1] in verified:
                    verified.move_to_end(check[1])
                else:
                    out.append(check)
        self.hits += len(checks) - len(out)
        return out

    def verify_new(self, checks: Sequence[tuple[Transaction, bytes]]) -> bool:
        """Verify each of `checks` (what `unverified` returned: no lookup here), stopping at the first bad
        signature; True when all are valid. Those that verified are remembered, under one lock."""
        good: list[bytes] = []
        try:
            for tx, key in checks:
                self.verifications += 1
                if not tx.verify_signature():
                    return False
                good.append(key)
            return True
        finally:
            self._remember(good)

    def verify(self, tx: Transaction, tx_hash: bytes | None = None) -> bool:
        """True when the signature is valid, verifying it only if this hash was never verified before."""
        key = bytes(tx_hash if tx_hash is not None else tx.hash)
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                self.hits += 1
                return True
        self.verifications += 1
        if not tx.verify_signature():
            return False
        self.mark_verified(key)
        return True


class VoteVerifier:
    """consensus's `Verifier` (public key, message, signature) -> bool, verifying each triple once.

    Votes arrive by gossip (whose envelope check already verified them), by catch-up and inside commits;
    the key hashes all three parts, so a hit can only be the very same signed bytes.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._valid: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.verifications = 0

    @staticmethod
    def _key(public_key: bytes, message: bytes, signature: bytes) -> bytes:
        return hashlib.sha256(bytes(public_key) + bytes(signature) + bytes(message)).digest()

    def _remember(self, key: bytes) -> None:
        with self._lock:
            self._valid[key] = None
            self._valid.move_to_end(key)
            while len(self._valid) > self._capacity:
                self._valid.popitem(last=False)

    def mark_verified(self, vote: Vote, chain_id: str) -> None:
        self._remember(self._key(vote.validator, vote.sign_bytes(chain_id), vote.signature))

    def __call__(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = self._key(public_key, message, signature)
        with self._lock:
            if key in self._valid:
                return True
        self.verifications += 1
        if not verify(public_key, message, signature):
            return False
        self._remember(key)
        return True
