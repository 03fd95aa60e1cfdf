"""Verified-signature cache: each transaction signature is verified once per node (docs/design.md §4.11).

Keyed by transaction hash, which covers the signature, so a hit means these exact bytes verified before.
Shared by the mempool (entry), gossip (the p2p envelope check verifies whole batches) and block
validation in the VM's worker thread; hence the lock.

`verify_off_loop_if_many` is the one rule for where a lot of new signatures is verified (the transactions
gossip hook's batches, the RPC entry's client batches): on the event loop up to INLINE_SIGNATURES, else in one
worker-thread trip.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import trio

from core.keys import verify
from core.tx import Transaction
from core.votes import Vote
from p2p import offload

# A lot with at most this many signatures to verify (not in the node's cache) verifies them on the event
# loop: ~3.5 ms of loop at ~55 us each on a quiet core. A trip to a worker thread costs ~50 us of CPU plus
# ~1-2 us per signature for the worker's GIL re-takes (bench.offload), ~2.4 us per signature at 64; at the
# devnet's 2,000 transfers/s a node's gossiped batches and its clients' batches carry ~50. Larger lots go to
# one worker thread.
INLINE_SIGNATURES = 64

Check = tuple[Transaction, bytes]  # a transaction and its hash as bytes
R = TypeVar("R")


async def verify_off_loop_if_many(verify_lot: Callable[[Sequence[Check]], R], unseen: Sequence[Check],
                                  limiter: trio.CapacityLimiter | None = None) -> R:
    """`verify_lot(unseen)` (a SigCache method given what `SigCache.unverified` returned) on the event loop
    when `unseen` holds at most INLINE_SIGNATURES, else in one worker-thread trip (`limiter`: p2p.offload's
    default when None). Also inline when `unseen` is empty: no trip for nothing."""
    if len(unseen) > INLINE_SIGNATURES:
        return await offload.run_sync(verify_lot, unseen, limiter=limiter)
    return verify_lot(unseen)


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
        """Record a signature verified elsewhere (the p2p envelope check of a gossiped batch). The mempool marks
        each transaction its callers checked (the gossip hook's `verify_new`, the RPC entry's `invalid_among`),
        which remembered it a moment before: one key, one lock, no sequence to build."""
        key = bytes(tx_hash)
        verified = self._verified
        with self._lock:
            if key in verified:
                verified.move_to_end(key)
                return
            verified[key] = None
            if len(verified) > self._capacity:
                verified.popitem(last=False)

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

    def invalid_among(self, checks: Sequence[tuple[Transaction, bytes]]) -> set[bytes]:
        """Verify every one of `checks` (what `unverified` returned: no lookup here); the hashes of those
        badly signed. Those that verified are remembered, under one lock. For a client's batch, where each
        transaction gets its own verdict (the gossip hook's `verify_new` stops at the first bad one)."""
        good: list[bytes] = []
        bad: set[bytes] = set()
        for tx, key in checks:
            self.verifications += 1
            if tx.verify_signature():
                good.append(key)
            else:
                bad.add(key)
        self._remember(good)
        return bad

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
