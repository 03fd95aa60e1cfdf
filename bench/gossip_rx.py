"""Gossip receive bench: one node's CPU per transaction of a gossiped batch, against the signature floor.

    python -m bench.gossip_rx [--txs 4000] [--per-batch 100] [--senders 256]

What a validator does with each transaction another validator gossips (docs/performance.md, "CPU per
transaction"): the envelope check (`p2p.envelope.decode_tx_batch`: decode, chain id, hash, duplicates) and
the transactions hook (`node.gossip_hooks.TxAdmission`: state checks, the signature in a worker thread,
mempool admission). On a real node (LevelDB, genesis-funded senders), in this process; CPU is
`time.process_time` (every thread). Two rounds over the same batches on fresh nodes: signatures checked as
they would be, and signatures already in the cache, so the second is the path's own work. Senders get
several transactions each: the first of each is a new sender, the rest find it in the mempool (the busy
case). Baseline: the CPU of one Ed25519 verification, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio
from libp2p.peer.id import ID

from core.hashing import sha256
from core.keys import PrivateKey, verify
from core.types import Amount
from node.config import NodeConfig, RPCSection
from node.gossip_hooks import TxAdmission, defer_signature_check
from node.home import init_home
from node.service import Node, _MempoolState
from p2p.batcher import encode_tx_batch
from p2p.envelope import decode_tx_batch
from p2p.topics import TopicKind
from p2p.validation import GossipMessage
from tools.genesis import DEFAULT_SEED_PHRASE, make_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

PEER = ID(b"\x00\x24\x08\x01\x12\x20" + bytes(32))
FIRST_ACCOUNT = 4  # accounts 0-3 own the validators
VERIFY_ROUNDS = 4000


def run_round(home_dir: Path, genesis: dict[str, object], batches: list[bytes], n: int,
              presigned: bool) -> tuple[float, float]:
    """(decode + envelope, hook) CPU seconds per transaction over `batches` on a fresh node."""
    home = init_home(home_dir, genesis, config=NodeConfig(rpc=RPCSection(enabled=False)), node_key_seed=b"bench",
                     generate_validator_key=False)
    node = Node(home, executor=LocalExecutor())
    try:
        admission = TxAdmission(_MempoolState(node.app).account, node.mempool, node.sig_cache)
        if presigned:
            for data in batches:
                for tx in decode_tx_batch(data, node.chain_id, verify=defer_signature_check).txs:
                    node.sig_cache.mark_verified(tx.hash)
        decode_s = hook_s = 0.0

        async def receive() -> None:
            nonlocal decode_s, hook_s
            for data in batches:
                t0 = time.process_time()
                batch = decode_tx_batch(data, node.chain_id, verify=defer_signature_check)
                t1 = time.process_time()
                await admission(GossipMessage(TopicKind.TXS, data, batch, sha256(data), PEER, PEER))
                hook_s += time.process_time() - t1
                decode_s += t1 - t0
                if admission.last.admitted != len(batch.txs):
                    raise RuntimeError(f"batch not admitted whole: {admission.last}")

        trio.run(receive)
        return decode_s / n, hook_s / n
    finally:
        node.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txs", type=int, default=4000)
    ap.add_argument("--per-batch", type=int, default=100)
    ap.add_argument("--senders", type=int, default=256)
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
    chain_id = str(genesis["chain_id"])
    txs = [build_tx(keys[i % senders], Transfer(keys[0].address, Amount(1)), chain_id=chain_id,
                    nonce=i // senders, gas_limit=1000, fee=1000) for i in range(n)]
    batches = [encode_tx_batch([tx.encode() for tx in txs[i:i + args.per_batch]])
               for i in range(0, n, args.per_batch)]
    with tempfile.TemporaryDirectory(prefix="bench-gossip-rx-") as tmp:
        decode_us, hook_us = (1e6 * x for x in run_round(Path(tmp) / "a", genesis, batches, n, presigned=False))
        _, own_us = (1e6 * x for x in run_round(Path(tmp) / "b", genesis, batches, n, presigned=True))
    print(f"{n:,} transfers in batches of {args.per_batch}, {senders} senders ({n / senders:.1f} txs each); "
          f"CPU per transaction")
    print(f"  Ed25519 verify (baseline)                {verify_us:8.1f} us")
    print(f"  decode + envelope check                  {decode_us:8.1f} us   {decode_us / verify_us:5.2f}x verify")
    print(f"  hook, signatures cached (its own work)   {own_us:8.1f} us   {own_us / verify_us:5.2f}x verify")
    print(f"  hook with signature checks               {hook_us:8.1f} us   {hook_us / verify_us:5.2f}x verify")
    total = decode_us + hook_us
    print(f"  receive path in all                      {total:8.1f} us   {total / verify_us:5.2f}x verify")


if __name__ == "__main__":
    main()
