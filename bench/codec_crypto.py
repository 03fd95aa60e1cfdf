"""Codec and signature rates against raw msgpack and raw signature libraries, in one run.

Run: `make bench` or `python -m bench.codec_crypto`. Prints rates and ratios (ours / baseline).
"""

from __future__ import annotations

import msgpack
import nacl.bindings as sodium
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._util import fmt_rate, rate, row
from core.hashing import ZERO_HASH
from core.keys import PrivateKey, verify
from core.tx import Transaction
from core.types import Height, Round, SignatureBytes, Timestamp
from core.votes import Vote, VoteType


def main() -> None:
    key = PrivateKey.derive("bench", "account", 0)
    tx = Transaction.create(key, chain_id="bench-1", nonce=7, gas_limit=50_000, fee=1_000, kind=1,
                            payload=b"\x01" * 60)
    vote = Vote(VoteType.PRECOMMIT, Height(10), Round(0), ZERO_HASH, Timestamp(1), key.public_key, ZERO_HASH,
                SignatureBytes(b"\0" * 64)).signed(key, "bench-1")
    print("codec (ours: typed, canonical-checked; baseline: raw msgpack of the same object)")
    for name, value, cls in (("transaction", tx, Transaction), ("precommit", vote, Vote)):
        data = value.encode()
        obj = value.to_obj()
        print(row(f"{name} encode ({len(data)} B)", rate(value.encode), rate(lambda o=obj: msgpack.packb(o)),
                  "msgpack.packb"))
        print(row(f"{name} decode", rate(lambda d=data, c=cls: c.decode(d)),
                  rate(lambda d=data: msgpack.unpackb(d)), "msgpack.unpackb"))

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
