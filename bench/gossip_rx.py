"""Gossip receive bench: one node's CPU per transaction of a gossiped batch, against the signature floor.

    python -m bench.gossip_rx [--txs 4000] [--per-batch 100] [--senders 256] [--kind transfer|infer|both]
                              [--signed-rounds 1]

What a validator does with each transaction another validator gossips (docs/performance-cpu.md, "CPU per
transaction"): the envelope check (`p2p.envelope.decode_tx_batch`: decode, chain id, hash, duplicates) through
the topic's pipeline as the node wires it (`TopicPipeline.decode` with `node.gossip_hooks.tx_envelope`: on
the event loop or in a worker thread by size) and the transactions hook (`node.gossip_hooks.TxAdmission`:
state checks, the signatures inline or in a worker thread by count, mempool admission). On a real node (LevelDB, genesis-funded senders), in this process; CPU is
`time.process_time` (every thread). Two rounds over the same batches on fresh nodes: signatures checked as
they would be, and signatures already in the cache, so the second is the path's own work. Senders get
several transactions each: the first of each is a new sender, the rest find it in the mempool (the busy
case). Baseline: the CPU of one Ed25519 verification, measured in the same run. `--kind infer` runs the
same rounds on tiny exact-class inferences (the genesis's digits_int8, random uint8 inputs, the devnet
bench's gas quote) and prints each figure against the transfers' too (docs/performance-throughput.md, "Per-inference
CPU in the node").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio
from libp2p.peer.id import ID

from core.hashing import sha256
from core.keys import PrivateKey, verify
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Amount, Hash32
from node.config import NodeConfig, RPCSection
from node.gossip_hooks import TxAdmission, defer_signature_check, tx_envelope
from node.home import init_home
from node.mempool import FULL_RECHECK_HEIGHTS, Mempool
from node.service import Node, _MempoolState
from p2p.batcher import encode_tx_batch
from p2p.envelope import decode_tx_batch
from p2p.limits import TX_BATCH_MAX
from p2p.topics import TopicKind
from p2p.validation import GossipMessage, TopicPipeline
from tools.genesis import DEFAULT_SEED_PHRASE, make_genesis
from vm.execute import infer_gas
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Infer, Transfer, build_tx

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
FIRST_ACCOUNT = 4  # accounts 0-3 own the validators
VERIFY_ROUNDS = 4000
TINY_MODEL = "digits_int8"


def run_round(home_dir: Path, genesis: dict[str, object], batches: list[bytes], n: int, presigned: bool,
              follow: bool = True) -> tuple[float, float, float]:
    """(decode + envelope, hook, full mempool recheck) CPU seconds per transaction over `batches` on a fresh
    node. `follow`: the mempool's VM parameters are kept per height as the node wires them (False: read from
    the state on every check, as before; the baseline of that cut)."""
    home = init_home(home_dir, genesis, config=NodeConfig(rpc=RPCSection(enabled=False)), node_key_seed=b"bench",
                     generate_validator_key=False)
    node = Node(home, executor=LocalExecutor())
    try:
        state = _MempoolState(node.app)
        mempool = Mempool(node.chain_id, state, node.config.mempool, node.sig_cache)
        if follow:
            state.follow(lambda: mempool.height)
        admission = TxAdmission(state.account, mempool, node.sig_cache)
        if presigned:
            for data in batches:
                for tx in decode_tx_batch(data, node.chain_id, verify=defer_signature_check).txs:
                    node.sig_cache.mark_verified(tx.hash)
        decode_s = hook_s = recheck_s = 0.0
        # The topic's pipeline as the node wires it (size cap, the envelope inline or in a worker thread).
        pipeline = TopicPipeline(TopicKind.TXS, TX_BATCH_MAX, tx_envelope(node.chain_id))

        async def receive() -> None:
            nonlocal decode_s, hook_s, recheck_s
            for data in batches:
                t0 = time.process_time()
                batch = await pipeline.decode(data)
                t1 = time.process_time()
                await admission(GossipMessage(TopicKind.TXS, data, batch, sha256(data), PEER, PEER))
                hook_s += time.process_time() - t1
                decode_s += t1 - t0
                if admission.last.admitted != len(batch.txs):
                    raise RuntimeError(f"batch not admitted whole: {admission.last}")
            # A full recheck (every sender re-read, every pending transaction's inclusion rule), as the mempool
            # runs every FULL_RECHECK_HEIGHTS blocks.
            mempool.update(FULL_RECHECK_HEIGHTS, [])
            t0 = time.process_time()
            await mempool.recheck()
            recheck_s = time.process_time() - t0
            if len(mempool) != n:
                raise RuntimeError(f"the recheck dropped {n - len(mempool)} transactions")

        trio.run(receive)
        return decode_s / n, hook_s / n, recheck_s / n
    finally:
        node.close()


def tiny_infer_payloads(genesis: dict[str, object], n: int, home_dir: Path) -> tuple[list[Infer], int]:
    """`n` inferences on digits_int8 with distinct random inputs, and their safe gas quote (the model's
    record as registered, read from a node on `genesis`)."""
    import numpy as np

    model_id = Hash32(bytes(next(m.model_id for m in parse_genesis(genesis).models if m.meta.name == TINY_MODEL)))
    home = init_home(home_dir, genesis, config=NodeConfig(rpc=RPCSection(enabled=False)), node_key_seed=b"bench",
                     generate_validator_key=False)
    node = Node(home, executor=LocalExecutor())
    try:
        view = node.app.view()
        record, params = view.model(model_id), view.params()
    finally:
        node.close()
    assert record is not None
    rng = np.random.default_rng(0)

    def inputs() -> tuple[Tensor, ...]:
        return tuple(Tensor.from_numpy(rng.integers(0, 256, size=tuple(spec.shape), dtype=np.uint8))
                     for spec in record.meta.inputs)

    payloads = [Infer(model_id, inputs(), Amount(0)) for _ in range(n)]
    return payloads, infer_gas(params, record, payloads[0].inputs)


def build_txs(kind: str, genesis: dict[str, object], keys: list[PrivateKey], n: int, tmp: Path
              ) -> list[Transaction]:
    senders = len(keys)
    chain_id = str(genesis["chain_id"])
    if kind == "transfer":
        return [build_tx(keys[i % senders], Transfer(keys[0].address, Amount(1)), chain_id=chain_id,
                         nonce=i // senders, gas_limit=1000, fee=1000) for i in range(n)]
    payloads, gas = tiny_infer_payloads(genesis, n, tmp / "probe")
    return [build_tx(keys[i % senders], payloads[i], chain_id=chain_id, nonce=i // senders, gas_limit=gas,
                     fee=gas) for i in range(n)]


@dataclass(frozen=True, slots=True)
class Figures:
    """us of CPU per transaction."""

    decode: float
    hook: float  # with signature checks
    own: float  # signatures cached: the hook's own work
    recheck: float  # a full mempool recheck, per pending transaction
    own_before: float  # the hook's own work with the VM parameters read on every check (before the cut)
    recheck_before: float


def measure(kind: str, genesis: dict[str, object], keys: list[PrivateKey], n: int, per_batch: int,
            tmp: Path, signed_rounds: int = 1) -> Figures:
    txs = build_txs(kind, genesis, keys, n, tmp)
    batches = [encode_tx_batch([tx.encode() for tx in txs[i:i + per_batch]]) for i in range(0, n, per_batch)]
    for data in batches[:2]:  # the codec's first decode of a type builds its decoder: not per transaction
        decode_tx_batch(data, str(genesis["chain_id"]), verify=defer_signature_check)
    # Signatures checked as they would be: `signed_rounds` fresh nodes, the lowest (the first is also the
    # process's first pass over this code).
    signed = [[1e6 * x for x in run_round(tmp / f"{kind}-a{i}", genesis, batches, n, presigned=False)]
              for i in range(signed_rounds)]
    decode_us, hook_us = min(r[0] for r in signed), min(r[1] for r in signed)
    # The cut and its baseline interleaved, twice each; the lower of each pair (load from other processes
    # only adds).
    rounds = [[1e6 * x for x in run_round(tmp / f"{kind}-{follow}-{i}", genesis, batches, n, presigned=True,
                                          follow=follow)] for i in range(2) for follow in (False, True)]
    before = [min(r[i] for r in rounds[0::2]) for i in range(3)]
    after = [min(r[i] for r in rounds[1::2]) for i in range(3)]
    # The decode is the same work in every round; a garbage collection landing in one round's decode adds
    # tens of us there, so the lowest is the figure.
    decode_us = min(decode_us, *(r[0] for r in rounds))
    return Figures(decode_us, hook_us, after[1], after[2], before[1], before[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txs", type=int, default=4000)
    ap.add_argument("--per-batch", type=int, default=100)
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--kind", choices=("transfer", "infer", "both"), default="transfer")
    ap.add_argument("--signed-rounds", type=int, default=1, help="rounds with signature checks (the lowest)")
    args = ap.parse_args()
    n, senders = args.txs, args.senders

    key = PrivateKey.derive("bench", "verify", 0)
    message = b"m" * 200
    signature = key.sign(message)
    public = bytes(key.public_key)
    verify(public, message, signature)
    start = time.process_time()
    for _ in range(VERIFY_ROUNDS):
        verify(public, message, signature)
    verify_us = 1e6 * (time.process_time() - start) / VERIFY_ROUNDS

    genesis = make_genesis(4, accounts=FIRST_ACCOUNT + senders)
    keys = [PrivateKey.derive(DEFAULT_SEED_PHRASE, "account", FIRST_ACCOUNT + i) for i in range(senders)]
    kinds = ["transfer", "infer"] if args.kind == "both" else [args.kind]
    figures: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gossip-rx-") as tmp:
        for kind in kinds:
            figures[kind] = measure(kind, genesis, keys, n, args.per_batch, Path(tmp), args.signed_rounds)
    print(f"{n:,} transactions per kind in batches of {args.per_batch}, {senders} senders "
          f"({n / senders:.1f} txs each); CPU per transaction")
    print(f"  Ed25519 verify (baseline)                {verify_us:8.1f} us")
    base = figures.get("transfer")
    for kind, f in figures.items():
        print(f"  {kind}s")
        rows = [("decode + envelope check", "decode"), ("hook, signatures cached (its own work)", "own"),
                ("  the same, parameters read per check", "own_before"), ("hook with signature checks", "hook"),
                ("full mempool recheck", "recheck"), ("  the same, parameters read per check", "recheck_before")]
        for label, name in rows:
            us = getattr(f, name)
            vs = ""
            if base is not None and kind != "transfer":
                vs = f"   {us / getattr(base, name):5.2f}x transfer"
            print(f"    {label:<38} {us:8.1f} us   {us / verify_us:5.2f}x verify{vs}")
        print(f"    parameters per height / per check: hook {f.own / f.own_before:4.2f}x, "
              f"recheck {f.recheck / f.recheck_before:4.2f}x")

if __name__ == "__main__":
    main()
