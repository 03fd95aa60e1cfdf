"""The p2p layer's per-message steps, each timed alone, as upstream py-libp2p does them and as p2p/ does now.

    python -m bench.p2p_steps [--txs 28,50] [--reps 2000] [--frames 3000]

For a transaction batch of each size (signed ~170 B transfers in a TxBatch, in a signed pubsub message), the
CPU (`time.process_time`, this process) of: hashing its id (SHA-256 of the data), checking its pubsub signature,
making its RPC ready for one peer's queue (upstream's copy, split and size against p2p/pubsub.py's copy and size),
our peer record for one outbound RPC (upstream's `env_to_send_in_RPC` against p2p/own_record.py's cache), and
reading one Noise message off a real TCP connection between two hosts in this process (upstream's reader
against p2p/noise.py's; both ends are in this process, so the figure is per message written and read, and the
difference is the reader's). Each pair is measured alternately, `--rounds` times; the lowest of each is kept
(the least disturbed by other load on the machine). docs/performance-cpu.md, "The p2p layer's CPU per transaction
(wire round)", turns these into microseconds per transaction with the devnet's message counts.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX, signature_validator
from libp2p.security.noise import patterns

from bench.p2p import stream_write_cpu
from core.hashing import sha256
from p2p.batcher import encode_tx_batch
from p2p.host import build_host, close_connections, parse_multiaddr
from p2p.identity import node_key_from_seed
from p2p.limits import LIBP2P_FRAME_MAX
from p2p.noise import BufferedNoiseTransport
from p2p.own_record import cached_record
from p2p.testing.chain import make_tx

CHAIN = "p2p-steps"
PROTOCOL = TProtocol("/inferchain-bench/steps/1")
UPSTREAM_NOISE = BufferedNoiseTransport.__mro__[1]  # upstream's NoiseTransportReadWriter


def cpu_us(fn: Callable[[], Any], reps: int) -> float:
    start = time.process_time()
    for _ in range(reps):
        fn()
    return 1e6 * (time.process_time() - start) / reps


def signed_batch(txs: int) -> rpc_pb2.Message:
    key = node_key_from_seed(b"steps")
    data = encode_tx_batch([make_tx(CHAIN, i, payload_bytes=50).encode() for i in range(txs)])
    msg = rpc_pb2.Message(data=data, topicIDs=["txs"], from_id=ID.from_pubkey(key.public_key).to_bytes(),
                          seqno=(1).to_bytes(8, "big"))
    msg.signature = key.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    return msg


def queue_upstream(queue: RpcQueue, rpc: rpc_pb2.RPC) -> None:
    """What upstream's `GossipSub.send_rpc` does to an RPC before pushing it to a peer's queue."""
    outbound = rpc_pb2.RPC()
    outbound.CopyFrom(rpc)
    for part in queue.split_rpc(outbound):
        part.ByteSize()


def queue_whole(queue: RpcQueue, rpc: rpc_pb2.RPC) -> None:
    """What `CountingGossipSub.send_rpc` does to an RPC within the size (p2p/pubsub.py)."""
    outbound = rpc_pb2.RPC()
    outbound.CopyFrom(rpc)
    outbound.ByteSize()


async def noise_frames_us(buffered: bool, frames: int, size: int) -> float:
    """CPU per message written and read on one stream between two hosts over TCP, upstream's Noise reader or
    ours (the rebind is switched for the hosts built here)."""
    reader: Any = BufferedNoiseTransport if buffered else UPSTREAM_NOISE
    patterns.NoiseTransportReadWriter = reader  # type: ignore[attr-defined]
    try:
        spent = await stream_write_cpu(frames, b"\x01" * size)
    finally:
        patterns.NoiseTransportReadWriter = BufferedNoiseTransport  # type: ignore[attr-defined]
    return 1e6 * spent / frames


async def record_us(reps: int) -> tuple[float, float]:
    host = build_host(node_key_from_seed(b"steps-r"), ["/ip4/127.0.0.1/tcp/0"])
    async with host.run(listen_addrs=[parse_multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            return cpu_us(lambda: env_to_send_in_RPC(host), reps), cpu_us(lambda: cached_record(host), reps)
        finally:
            await close_connections(host)


def batch_steps(txs: int, reps: int, rounds: int) -> None:
    msg = signed_batch(txs)
    size = len(msg.data)
    hashes = [cpu_us(lambda: sha256(msg.data), reps) for _ in range(rounds)]
    sigs = [cpu_us(lambda: signature_validator(msg), max(1, reps // 10)) for _ in range(rounds)]
    rpc = rpc_pb2.RPC(publish=[msg])
    rpc.senderRecord = b"r" * 220  # our peer record's size
    queue = RpcQueue()
    queue.max_message_size = LIBP2P_FRAME_MAX
    split = [cpu_us(lambda: queue_upstream(queue, rpc), reps) for _ in range(rounds)]
    whole = [cpu_us(lambda: queue_whole(queue, rpc), reps) for _ in range(rounds)]
    print(f"  batch of {txs} txs ({size} B): message id hash {min(hashes):.1f} us, pubsub signature check "
          f"{min(sigs):.1f} us, its RPC made ready for one peer's queue: upstream (copy, split, size) "
          f"{min(split):.1f} us, ours (copy, size) {min(whole):.1f} us")


def main(sizes: list[int], reps: int, frames: int, rounds: int) -> None:
    print(f"p2p steps: CPU per call (process_time, lowest of {rounds} alternating rounds); {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    for txs in sizes:
        batch_steps(txs, reps, rounds)
    up, ours = [], []
    for _ in range(rounds):
        a, b = trio.run(record_us, reps)
        up.append(a)
        ours.append(b)
    print(f"  our peer record per outbound RPC: upstream {min(up):.1f} us, cached {min(ours):.2f} us")
    for size in (200, 5000):
        up, ours = [], []
        for _ in range(rounds):
            up.append(trio.run(noise_frames_us, False, frames, size))
            ours.append(trio.run(noise_frames_us, True, frames, size))
        print(f"  one {size} B write, as one Yamux frame / Noise message, written and read: upstream reader "
              f"{min(up):.1f} us, buffered {min(ours):.1f} us (difference {min(up) - min(ours):.1f} us)")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="per-message CPU of the p2p layer's steps")
    parser.add_argument("--txs", default="28,50", help="transactions per batch, comma-separated")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main([int(t) for t in args.txs.split(",")], args.reps, args.frames, args.rounds)
