"""Codec and signature rates against raw msgpack and raw signature libraries, in one run.

Run: `make bench` or `python -m bench.codec_crypto`. Prints rates and ratios (ours / baseline).

Codec rows: "encode" is the first encoding of a value (measured on fresh copies, so the per-instance cache of
`CachedWire` types does not count); "encode again" is a repeated `encode()` of the same value, which
those types answer from their cache. Baselines: msgpack packing the same nested lists (`to_obj()`), and
unpacking the same bytes (no canonical-form check, no types).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
import nacl.bindings as sodium
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._util import fmt_rate, rate, row
from core.block import (
    Block,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.codec import Wire
from core.hashing import ZERO_HASH
from core.header import Header, TxResult, TxStatus
from core.keys import PrivateKey, verify
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Gas, Height, Nonce, Round, SignatureBytes, Timestamp
from core.votes import Commit, Vote, VoteType

BLOCK_TXS = 100


def rate_fresh(value: Wire, fn: Callable[[Any], object], *, min_seconds: float = 0.5, batch: int = 100,
               fresh: Callable[[Any], Any] = lambda v: v.replace()) -> float:
    """Calls per second of `fn` on fresh copies of `value` (shallow `replace()`, made outside the timing)."""
    fn(fresh(value))  # warm up
    count = 0
    elapsed = 0.0
    while elapsed < min_seconds:
        copies = [fresh(value) for _ in range(batch)]
        start = time.perf_counter()
        for c in copies:
            fn(c)
        elapsed += time.perf_counter() - start
        count += batch
    return count / elapsed


def fresh_block(block: Block) -> Block:
    """A copy of `block` whose header, transactions and results are new objects (nothing encoded yet)."""
    return block.replace(header=block.header.replace(), txs=tuple(tx.replace() for tx in block.txs),
                         results=tuple(r.replace() for r in block.results))


def samples(key: PrivateKey) -> list[tuple[str, Wire]]:
    """A transaction, a precommit, a result with two small tensors, a header and a block of 100 of each."""
    tx = Transaction.create(key, chain_id="bench-1", nonce=7, gas_limit=50_000, fee=1_000, kind=1,
                            payload=b"\x01" * 60)
    vote = Vote(VoteType.PRECOMMIT, Height(10), Round(0), ZERO_HASH, Timestamp(1), key.public_key, ZERO_HASH,
                SignatureBytes(b"\0" * 64)).signed(key, "bench-1")
    result = TxResult(TxStatus.OK, Gas(1234), (Tensor.from_numpy(np.arange(10, dtype=np.int64)),
                                               Tensor.from_numpy(np.zeros((1, 10), np.float32))), b"", "ok")
    txs = tuple(tx.replace(nonce=Nonce(i)) for i in range(BLOCK_TXS))
    results = tuple(result.replace(gas_used=Gas(i)) for i in range(BLOCK_TXS))
    precommits = tuple(vote.replace(height=Height(9), validator=PrivateKey.derive("bench", "v", i).public_key)
                       for i in range(4))
    commit = Commit(Height(9), Round(0), ZERO_HASH, precommits)
    header = Header(1, "bench-1", Height(10), Round(0), Timestamp(5), ZERO_HASH, Address(b"\1" * 20),
                    compute_txs_root(txs), compute_results_root(results), ZERO_HASH, ZERO_HASH, ZERO_HASH,
                    compute_last_commit_hash(commit), compute_evidence_hash(()), None)
    block = Block(header, txs, results, commit, ())
    block.validate_basic()
    return [("transaction", tx), ("precommit", vote), ("result (2 tensors)", result), ("header", header),
            (f"block ({BLOCK_TXS} txs+results)", block)]


def main() -> None:
    key = PrivateKey.derive("bench", "account", 0)
    print("codec (ours: typed, canonical-checked; baseline: raw msgpack of the same object)\n"
          "  (a block's encode reuses its transactions', results' and header's cached encodings where present)")
    for name, value in samples(key):
        cls = type(value)
        data = value.encode()
        obj = value.to_obj()
        batch = 10 if cls is Block else 100
        print(row(f"{name} encode ({len(data)} B)", rate_fresh(value, cls.encode, batch=batch),
                  rate(lambda o=obj: msgpack.packb(o), batch=batch), "msgpack.packb"))
        if cls is Block:
            print(row("  (header, txs, results new too)", rate_fresh(value, cls.encode, batch=batch, fresh=fresh_block),
                      rate(lambda o=obj: msgpack.packb(o), batch=batch), "msgpack.packb"))
        print(row(f"{name} encode again", rate(value.encode, batch=batch),
                  rate(lambda o=obj: msgpack.packb(o), batch=batch), "msgpack.packb"))
        print(row(f"{name} decode", rate(lambda d=data, c=cls: c.decode(d), batch=batch),
                  rate(lambda d=data: msgpack.unpackb(d), batch=batch), "msgpack.unpackb"))

    tx = samples(key)[0][1]
    assert isinstance(tx, Transaction)
    print("\nEd25519 (ours: core.keys over libsodium)")
    msg = tx.sign_bytes()
    sig = key.sign(msg)
    pk = bytes(key.public_key)
    ossl_sk = Ed25519PrivateKey.from_private_bytes(key.seed)
    ossl_pk = ossl_sk.public_key()
    ossl_sig = ossl_sk.sign(msg)
    assert ossl_sig == sig  # Ed25519 is deterministic: both libraries agree

    def ossl_verify() -> None:
        ossl_pk.verify(ossl_sig, msg)

    raw_sodium_verify = rate(lambda: sodium.crypto_sign_open(sig + msg, pk))
    ossl_verify_rate = rate(ossl_verify)
    print(row("sign", rate(lambda: key.sign(msg)), rate(lambda: ossl_sk.sign(msg)), "cryptography sign"))
    print(row("verify", rate(lambda: verify(pk, msg, sig)), raw_sodium_verify, "raw libsodium verify"))
    print(row("verify", rate(lambda: verify(pk, msg, sig)), ossl_verify_rate, "cryptography verify"))
    print(f"  libsodium vs cryptography verify: {raw_sodium_verify / ossl_verify_rate:.2f}x "
          f"(libsodium {fmt_rate(raw_sodium_verify).strip()}, cryptography {fmt_rate(ossl_verify_rate).strip()})")
    print(row("tx.verify_signature (encode+verify)", rate(tx.verify_signature), raw_sodium_verify,
              "raw libsodium verify"))


if __name__ == "__main__":
    main()
