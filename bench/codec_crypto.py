"""Codec and signature rates against raw msgpack and raw signature libraries, in one run.

Run: `make bench` or `python -m bench.codec_crypto`. Prints rates and ratios (ours / baseline).
`--part path` prints only the per-transaction CPU time of the path a gossiped transfer takes through the node's
codec (batch decode and hash, store encode, compact proposal decode and check, WAL record): the figure to
compare between two trees, run alternately (docs/performance-cpu.md, "Bytes the node already holds").
`--part infer` prints the same for a tiny inference (docs/performance-cpu.md, "Decoding a transaction once
(txdecode)"): from a client's hex (the RPC entry) or a peer's batch (the gossip entry) to admitted, executed
and indexed, each step asking what the node asks of the transaction (hash, sender address, payload), on fresh
objects.

Codec rows: "encode" is the first encoding of a value (measured on fresh copies, so the per-instance cache of
`CachedWire` types does not count); "encode again" is a repeated `encode()` of the same value, which
those types answer from their cache. Baselines: msgpack packing the same nested lists (`to_obj()`), and
unpacking the same bytes (no canonical-form check, no types).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgpack
import nacl.bindings as sodium
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._util import fmt_rate, rate, row
from consensus.events import ProposalReceived, encode_event
from core.block import (
    Block,
    ProposalBlock,
    compute_evidence_hash,
    compute_last_commit_hash,
    compute_results_root,
    compute_txs_root,
)
from core.codec import Wire
from core.compact import CompactProposal, compact_of
from core.hashing import ZERO_HASH
from core.header import Header, TxResult, TxStatus
from core.keys import PrivateKey, verify
from core.store import MemoryStore
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Address, Amount, Gas, Hash32, Height, Nonce, Round, SignatureBytes, Timestamp
from core.votes import Commit, Proposal, Vote, VoteType
from node.chainindex import ChainIndex
from node.rpc.methods import parse_tx
from p2p.envelope import decode_tx_batch
from p2p.messages import TxBatch
from vm.txs import Infer, Transfer, build_tx, decoded_payload

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


PATH_CHAIN = "bench-1"
PATH_BATCH = 50  # transactions per gossiped batch
PATH_BLOCK = 1000  # transactions per block


def _cpu_per_item(fn: Callable[[], object], items: int, *, min_seconds: float = 0.4) -> float:
    """Process CPU microseconds per item of `fn` (which handles `items` items), over at least `min_seconds`."""
    fn()  # warm up
    calls = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < min_seconds or calls == 0:
        fn()
        calls += 1
    return elapsed / calls / items * 1e6


def path_steps() -> list[tuple[str, float]]:
    """CPU us per transaction of each step a gossiped transfer takes through the codec (signatures left out:
    `verify` says yes, as the node's signature cache does for a transaction it checked before)."""
    keys = [PrivateKey.derive("bench", "account", i) for i in range(PATH_BATCH)]
    to = Address(b"\2" * 20)
    txs = tuple(build_tx(keys[i % PATH_BATCH], Transfer(to, Amount(1 + i)), chain_id=PATH_CHAIN, nonce=i // PATH_BATCH,
                         gas_limit=50_000, fee=1_000) for i in range(PATH_BLOCK))
    batches = [TxBatch(txs[i:i + PATH_BATCH]).encode() for i in range(0, PATH_BLOCK, PATH_BATCH)]
    results = tuple(TxResult(TxStatus.OK, Gas(21_000), (), b"", "") for _ in txs)
    header = Header(1, PATH_CHAIN, Height(1), Round(0), Timestamp(5), ZERO_HASH, Address(b"\1" * 20),
                    compute_txs_root(txs), compute_results_root(results), ZERO_HASH, ZERO_HASH, ZERO_HASH,
                    compute_last_commit_hash(None), compute_evidence_hash(()), None)
    proposer = PrivateKey.derive("bench", "proposer", 0)
    proposal = Proposal(Height(1), Round(0), -1, header.block_id, Timestamp(6), proposer.public_key,
                        SignatureBytes(b"\0" * 64)).signed(proposer, PATH_CHAIN)
    compact = compact_of(ProposalBlock(proposal, Block(header, txs, results, None, ()))).encode()

    def yes(tx: Transaction, tx_hash: bytes) -> bool:
        return True

    held: list[Transaction] = []

    def gossip() -> None:  # what a node does per batch: decode, hash each, verify (cached)
        held.clear()
        for data in batches:
            held.extend(decode_tx_batch(data, PATH_CHAIN, yes).txs)

    gossip()
    by_hash = {tx.hash: tx for tx in held}
    rebuilt: list[ProposalBlock] = []

    def proposal_in() -> None:  # a compact proposal decoded, checked and rebuilt from the mempool's txs
        message = CompactProposal.decode(compact)
        message.validate_basic()
        found, missing = message.missing(by_hash.get)
        assert not missing
        rebuilt[:] = [message.rebuild([tx for tx in found if tx is not None])]

    proposal_in()
    return [
        ("tx batch decode + hash", _cpu_per_item(gossip, PATH_BLOCK)),
        ("  + encode (mempool store)", _cpu_per_item(lambda: [tx.encode() for tx in held], PATH_BLOCK)),
        ("compact proposal decode+rebuild", _cpu_per_item(proposal_in, PATH_BLOCK)),
        ("WAL record of the proposal", _cpu_per_item(lambda: encode_event(ProposalReceived(Timestamp(7), rebuilt[0])),
                                                     PATH_BLOCK)),
    ]


INFER_SENDERS = 64


def infer_steps() -> list[tuple[str, float]]:
    """CPU us per tiny inference (a digits_int8-sized uint8 input, 1x64) of each step that decodes it or derives
    from it on one node, in the order the node takes them; signatures left out (`verify` says yes).

    The transaction arrives once, by the RPC entry (`parse_tx` of a client's hex) or by the gossip entry (a
    peer's batch); the later steps run on the gossiped objects, as a validator that did not receive it from
    a client does: the gossip hook's and the mempool's reads of the sender's address, admission's payload
    decode, execution's (and the builder's) payload, the mempool's update after the commit, and the explorer
    index's write of the committed block (node.chainindex, its sender and model id)."""
    keys = [PrivateKey.derive("bench", "account", i) for i in range(INFER_SENDERS)]
    rng = np.random.default_rng(7)
    model = Hash32(b"\7" * 32)
    txs = tuple(build_tx(keys[i % INFER_SENDERS], Infer(model, (Tensor.from_numpy(rng.integers(
        0, 17, (1, 64), dtype=np.uint8)),), Amount(0)), chain_id=PATH_CHAIN, nonce=i // INFER_SENDERS,
        gas_limit=50_000, fee=50_000) for i in range(PATH_BLOCK))
    hexes = [tx.encode().hex() for tx in txs]
    batches = [TxBatch(txs[i:i + PATH_BATCH]).encode() for i in range(0, PATH_BLOCK, PATH_BATCH)]
    output = Tensor.from_numpy(np.arange(10, dtype=np.int64))
    results = tuple(TxResult(TxStatus.OK, Gas(21_000), (output,), b"", "") for _ in txs)
    header = Header(1, PATH_CHAIN, Height(1), Round(0), Timestamp(5), ZERO_HASH, Address(b"\1" * 20),
                    compute_txs_root(txs), compute_results_root(results), ZERO_HASH, ZERO_HASH, ZERO_HASH,
                    compute_last_commit_hash(None), compute_evidence_hash(()), None)

    def yes(tx: Transaction, tx_hash: bytes) -> bool:
        return True

    held: list[Transaction] = []

    def gossip() -> None:
        held.clear()
        for data in batches:
            held.extend(decode_tx_batch(data, PATH_CHAIN, yes).txs)

    def rpc() -> None:
        for text in hexes:
            parse_tx(text).hash  # noqa: B018 - the RPC entry reads it for the signature cache and the verdict

    def admission() -> None:  # fresh objects: the gossip hook (twice), the mempool's add, admission's payload
        for tx in held:
            tx.sender_address  # noqa: B018
            tx.sender_address  # noqa: B018
            tx.sender_address  # noqa: B018
            decoded_payload(tx)

    def execution() -> None:  # the same objects, after admission: the builder's bound, execution, the update
        for tx in held:
            decoded_payload(tx)
            decoded_payload(tx)
            tx.sender_address  # noqa: B018

    index = ChainIndex(MemoryStore(), lambda height: None, lambda: 0, lambda height: None)

    def indexed() -> None:
        index._index(Block(header, tuple(held), results, None, ()), None)

    def fresh(step: Callable[[], object], *before: Callable[[], object]) -> Callable[[], object]:
        def run() -> None:  # `before` on new objects, untimed, then `step`
            gossip()
            for b in before:
                b()
            start = time.process_time()
            step()
            spent[0] += time.process_time() - start
        return run

    out = [("rpc entry: hex parse + hash", _cpu_per_item(rpc, PATH_BLOCK)),
           ("gossip entry: batch decode + hash", _cpu_per_item(gossip, PATH_BLOCK))]
    for label, step, before in (("admission: sender x3, payload", admission, ()),
                                ("builder, execution, update", execution, (admission,)),
                                ("explorer index of the block", indexed, (admission, execution))):
        spent = [0.0]
        calls = 0
        run = fresh(step, *before)
        run()
        spent[0] = 0.0
        while spent[0] < 0.4 or calls == 0:
            run()
            calls += 1
        out.append((label, spent[0] / calls / PATH_BLOCK * 1e6))
    return out


def print_infer() -> None:
    steps = infer_steps()
    print(f"tiny inference through the node's decoding (CPU us per tx; batches of {PATH_BATCH}, blocks of {PATH_BLOCK})")
    for label, us in steps:
        print(f"  {label:<34}{us:8.3f} us")
    gossiped = sum(us for label, us in steps if not label.startswith("rpc"))
    print(f"  {'total from a peer':<34}{gossiped:8.3f} us")


def print_path() -> None:
    steps = path_steps()
    print(f"transfer path through the codec (CPU us per tx; batches of {PATH_BATCH}, blocks of {PATH_BLOCK})")
    for label, us in steps:
        print(f"  {label:<34}{us:8.3f} us")
    print(f"  {'total':<34}{sum(us for _, us in steps):8.3f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "path", "infer"), default="all")
    part = parser.parse_args().part
    if part == "path":
        print_path()
        return
    if part == "infer":
        print_infer()
        return
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
    print()
    print_path()
    print()
    print_infer()


if __name__ == "__main__":
    main()
