"""A p2p node as an OS process for tests and benches, driven by JSON lines on stdin/stdout.

    python -m p2p.testing.node --seed n0 --listen /ip4/127.0.0.1/tcp/40001 --peer <addr> [--serve-chain 500]

Events are printed as `@@ {json}` lines, because py-libp2p itself prints to stdout (pitfall 7). Commands:
`publish_votes`, `publish_timed`, `offer_txs`, `sync`, `stats`, `peers`, `quit` (see `_handle`).
`NodeProcess` is the trio-side driver used by tests/p2p and bench/p2p.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

MARK = "@@ "
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAIN = "p2p-testnet"
TIMED_VOTE_HEIGHT = 1_000_000  # votes from this height up are timed probes (`publish_timed_votes`)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peer_addr_for(seed: str, port: int) -> str:
    from p2p.identity import node_key_from_seed, peer_id_of

    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(node_key_from_seed(seed.encode()))}"


# ---------------------------------------------------------------------------------------------- the node


class _Node:
    def __init__(self, args: argparse.Namespace) -> None:
        from core.keys import PrivateKey
        from p2p.coalesce import COALESCE_BYTES
        from p2p.config import P2PConfig
        from p2p.dontwant import DontWantPolicy
        from p2p.identity import node_key_from_seed
        from p2p.service import P2PService
        from p2p.testing.chain import build_chain

        self.args = args
        self.service = P2PService(
            P2PConfig(chain_id=args.chain, listen_addrs=(args.listen,), bootstrap=tuple(args.peer),
                      dont_want=DontWantPolicy(enabled=not args.no_dont_want),
                      coalesce_bytes=0 if args.no_coalesce else COALESCE_BYTES,
                      coalesce_bulk=not args.no_bulk_coalesce, consensus_lane=not args.no_lane),
            node_key_from_seed(args.seed.encode()),
        )
        self.key = PrivateKey.derive("testnode", args.seed, 0)
        self.chain = build_chain(args.chain, args.serve_chain, txs_per_block=args.txs_per_block,
                                 tx_payload=args.tx_payload) if args.serve_chain else None
        self.echo = args.echo
        self.latencies_ns: list[int] = []
        self.vote_latencies_ms: list[int] = []  # timed votes (`publish_timed_votes`): receipt less signing time
        self.tx_seen: set[bytes] = set()
        self.vote_seq = 0
        self.nonce = 0
        self.prepared: list[bytes] = []
        self.first_tx_at: float | None = None
        self.cpu_at_reset = time.process_time()
        self.last_tx_at: float | None = None

    def emit(self, event: str, **fields: Any) -> None:
        sys.stdout.write(MARK + json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()

    def install(self) -> None:
        from core.types import Height
        from p2p.messages import ChainStatus
        from p2p.topics import TopicKind

        gossip = self.service.gossip

        async def on_vote(message: Any) -> None:
            await trio.lowlevel.checkpoint()
            if int(message.value.height) >= TIMED_VOTE_HEIGHT:
                self.vote_latencies_ms.append(time.time_ns() // 1_000_000 - int(message.value.timestamp))
            if self.echo:
                self.emit("recv", kind="votes", id=message.msg_id.hex(), origin=str(message.origin),
                          height=int(message.value.height))

        async def on_txs(message: Any) -> None:
            await trio.lowlevel.checkpoint()
            now = time.time_ns()
            for tx in message.value.txs:
                if tx.kind == 1:  # timed probe: payload starts with the send time
                    self.latencies_ns.append(now - int.from_bytes(tx.payload[:8], "big"))
                else:
                    self.first_tx_at = self.first_tx_at or time.monotonic()
                    self.last_tx_at = time.monotonic()
                self.tx_seen.add(bytes(tx.hash))

        self.set_checks(not self.args.no_checks)
        gossip.set_handler(TopicKind.VOTES, on_vote)
        gossip.set_handler(TopicKind.TXS, on_txs)
        chain = self.chain
        if chain is not None:
            async def status() -> ChainStatus:
                await trio.lowlevel.checkpoint()
                return ChainStatus(chain.chain_id, Height(len(chain.blocks)), chain.head.id, Height(1))

            async def block(height: Height) -> Any:
                await trio.lowlevel.checkpoint()
                return chain.stored(height)

            self.service.reqresp.serve_status(status)
            self.service.reqresp.serve_blocks(block)

    def set_checks(self, enabled: bool) -> None:
        """Bench baseline switch: with checks off, messages are accepted without decoding or signature checks
        (transaction batches are still decoded, for the timestamps the handler reads)."""
        from p2p.envelope import core_envelopes
        from p2p.messages import TxBatch
        from p2p.topics import TopicKind

        gossip = self.service.gossip
        checks = core_envelopes(self.args.chain)
        for kind in TopicKind:
            gossip.set_envelope(kind, checks[kind] if enabled else (lambda data: None))
        if not enabled:
            gossip.set_envelope(TopicKind.TXS, TxBatch.decode)

    async def run(self) -> None:
        self.install()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.service.run)
            head = self.chain.head.id.hex() if self.chain is not None else None
            self.emit("ready", addr=self.service.addr, peer_id=str(self.service.peer_id), pid=os.getpid(),
                      head=head)
            stdin = trio.wrap_file(sys.stdin)
            while True:
                line = await stdin.readline()
                if not line:
                    break
                command = json.loads(line)
                if command.get("cmd") == "quit":
                    break
                nursery.start_soon(self._handle, command)
            nursery.cancel_scope.cancel()
        self.emit("bye")

    async def _handle(self, command: dict[str, Any]) -> None:
        from core.types import Height, Round, SignatureBytes, Timestamp
        from core.votes import Vote, VoteType
        from p2p.topics import TopicKind

        cmd = command["cmd"]
        if cmd == "publish_votes":
            ids = []
            for _ in range(command.get("count", 1)):
                self.vote_seq += 1
                vote = Vote(VoteType.PREVOTE, Height(command.get("height", 1)), Round(0), None,
                            Timestamp(time.time_ns() // 1_000_000 + self.vote_seq), self.key.public_key, None,
                            SignatureBytes(b"\0" * 64)).signed(self.key, self.args.chain)
                ids.append((await self.service.publish(TopicKind.VOTES, vote.encode())).hex())
            self.emit("published", ids=ids)
        elif cmd == "publish_timed_votes":
            await self._publish_timed_votes(command["count"], command["rate"])
        elif cmd == "publish_timed":
            await self._publish_timed(command["size"], command["count"], command["rate"])
        elif cmd == "prepare_txs":
            self.prepared = [self._tx(0, os.urandom(command.get("payload", 120))).encode()
                             for _ in range(command["count"])]
            self.emit("prepared", count=len(self.prepared))
        elif cmd == "offer_txs":
            await self._offer_txs(command["rate"])
        elif cmd == "sync":
            await self._sync(command["peer"], command["to"])
        elif cmd == "peers":
            self.emit("peers", peers=[str(p) for p in self.service.connected_peers()],
                      mesh=[str(p) for p in self.service.gossip.mesh_peers(TopicKind.VOTES)])
        elif cmd == "stats":
            span = (self.last_tx_at - self.first_tx_at) if self.first_tx_at and self.last_tx_at else 0.0
            self.emit("stats", latencies_ns=self.latencies_ns, vote_latencies_ms=self.vote_latencies_ms,
                      txs=len(self.tx_seen), tx_span_s=span,
                      cpu_s=time.process_time() - self.cpu_at_reset, counters=self.service.counters.snapshot())
        elif cmd == "set_checks":
            self.set_checks(bool(command["enabled"]))
            self.emit("checks", enabled=bool(command["enabled"]))
        elif cmd == "reset_stats":
            self.latencies_ns.clear()
            self.vote_latencies_ms.clear()
            self.tx_seen.clear()
            self.first_tx_at = self.last_tx_at = None
            self.cpu_at_reset = time.process_time()
            self.emit("reset")

    def _tx(self, kind: int, payload: bytes) -> Any:
        from core.tx import Transaction

        self.nonce += 1
        return Transaction.create(self.key, chain_id=self.args.chain, nonce=self.nonce, gas_limit=1, fee=1,
                                  kind=kind, payload=payload)

    async def _publish_timed(self, size: int, count: int, rate: float) -> None:
        """`count` messages of ~`size` bytes at `rate`/s, each one transaction stamped with its send time."""
        from p2p.batcher import encode_tx_batch
        from p2p.topics import TopicKind

        overhead = len(encode_tx_batch([self._tx(1, b"").encode()]))
        start = trio.current_time()
        for n in range(count):
            await trio.sleep_until(start + n / rate)
            pad = os.urandom(max(0, size - overhead - 8))
            tx = self._tx(1, time.time_ns().to_bytes(8, "big") + pad)
            await self.service.publish(TopicKind.TXS, encode_tx_batch([tx.encode()]))
        self.emit("published_timed", count=count)

    async def _publish_timed_votes(self, count: int, rate: float) -> None:
        """`count` votes at `rate`/s, each of its own height from `TIMED_VOTE_HEIGHT` up, stamped (ms) when
        signed: receivers record how late each arrives (`vote_latencies_ms`)."""
        from core.types import Height, Round, SignatureBytes, Timestamp
        from core.votes import Vote, VoteType
        from p2p.topics import TopicKind

        start = trio.current_time()
        for n in range(count):
            await trio.sleep_until(start + n / rate)
            self.vote_seq += 1
            vote = Vote(VoteType.PREVOTE, Height(TIMED_VOTE_HEIGHT + self.vote_seq), Round(0), None,
                        Timestamp(time.time_ns() // 1_000_000), self.key.public_key, None,
                        SignatureBytes(b"\0" * 64)).signed(self.key, self.args.chain)
            await self.service.publish(TopicKind.VOTES, vote.encode())
        self.emit("published_timed_votes", count=count)

    async def _offer_txs(self, rate: float) -> None:
        """Offer the prepared (already signed) transactions at `rate` per second through the batcher."""
        from p2p.batcher import TxBatcher
        from p2p.topics import TopicKind

        txs, self.prepared = self.prepared, []
        total = len(txs)
        batcher = TxBatcher(lambda data: self.service.publish(TopicKind.TXS, data, check=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.run)
            start = trio.current_time()
            step = max(1, int(rate / 100))  # feed in 10 ms slices
            for i in range(0, total, step):
                await trio.sleep_until(start + i / rate)
                for tx in txs[i:i + step]:
                    await batcher.add(tx)
            with trio.move_on_after(5.0):  # let the last batch flush (up to the batcher's busy interval)
                while batcher.txs < total:  # noqa: ASYNC110 - the batcher's count has no event to wait on
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        self.emit("offered", count=total, batches=batcher.batches,
                  seconds=round(trio.current_time() - start, 3))

    async def _sync(self, peer: str, to: int) -> None:
        from p2p.host import parse_peer_addr

        info = parse_peer_addr(peer)
        self.service.add_peer(peer)
        with trio.fail_after(30):
            while not self.service.host.get_network().get_connections(info.peer_id):  # noqa: ASYNC110
                await trio.sleep(0.05)
        started = time.monotonic()
        status = await self.service.reqresp.status(info.peer_id)
        blocks: list[Any] = []

        async def on_blocks(chunk: list[Any]) -> None:
            for synced in chunk:  # a real node verifies each commit against its validator set here
                if blocks and synced.block.header.last_block_id != blocks[-1].block.id:
                    raise ValueError(f"chain broken at height {synced.block.height}")
                blocks.append(synced)
            await trio.lowlevel.checkpoint()

        count = await self.service.reqresp.fetch_blocks(info.peer_id, 1, min(to, status.height), on_blocks)
        self.emit("synced", count=count, head=blocks[-1].block.id.hex() if blocks else None,
                  peer_height=int(status.height), seconds=round(time.monotonic() - started, 3),
                  requests=self.service.counters.snapshot().get("requests_failed.blocks", 0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", required=True)
    parser.add_argument("--chain", default=CHAIN)
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--serve-chain", type=int, default=0)
    parser.add_argument("--txs-per-block", type=int, default=2)
    parser.add_argument("--tx-payload", type=int, default=2000)
    parser.add_argument("--echo", action="store_true", help="print every received vote")
    parser.add_argument("--no-checks", action="store_true",
                        help="bench baseline: accept every message without decoding or signature checks")
    parser.add_argument("--no-dont-want", action="store_true",
                        help="neither send nor honour IDONTWANT (the behaviour before p2p/dontwant.py)")
    parser.add_argument("--no-coalesce", action="store_true",
                        help="write each queued RPC as its own frame (the behaviour before p2p/coalesce.py)")
    parser.add_argument("--no-bulk-coalesce", action="store_true",
                        help="merge only consensus RPCs into frames, not transaction batches (the earlier behaviour)")
    parser.add_argument("--no-lane", action="store_true",
                        help="no consensus lane: one stream per peer (the behaviour before p2p/lane.py)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trio.run(_Node(args).run)


# ---------------------------------------------------------------------------------------------- the driver


class NodeProcess:
    """One testnode process: start, send commands, wait for events, kill -9 or stop (bounded)."""

    def __init__(self, seed: str, port: int, peers: list[str], *extra: str, chain: str = CHAIN,
                 log: str | None = None, root: str = _REPO_ROOT) -> None:
        """`root`: the checkout whose code the process runs (another worktree, for a bench's baseline)."""
        self.seed, self.port, self.peers, self.extra, self.chain = seed, port, peers, extra, chain
        self.root = root
        self.log = log  # stderr goes here if given (it holds the node's own log lines)
        self.addr = peer_addr_for(seed, port)
        self.process: trio.Process | None = None
        self._events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        argv = [sys.executable, "-m", "p2p.testing.node", "--seed", self.seed, "--chain", self.chain,
                "--listen", f"/ip4/127.0.0.1/tcp/{self.port}", *[a for p in self.peers for a in ("--peer", p)],
                *self.extra]
        self._events = []
        stderr: Any = subprocess.DEVNULL
        if self.log is not None:
            stderr = open(self.log, "ab")  # noqa: SIM115, ASYNC230 - handed to the child, closed below
        try:
            self.process = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=self.root,
            )
        finally:
            if self.log is not None:
                stderr.close()
        nursery.start_soon(self._read, self.process)

    async def _read(self, process: trio.Process) -> None:
        assert process.stdout is not None
        buffer = b""
        async for data in process.stdout:
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text.startswith(MARK):
                    self._events.append(json.loads(text[len(MARK):]))
                    self._changed.set()
                    self._changed = trio.Event()

    async def send(self, cmd: str, **fields: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps({"cmd": cmd, **fields}) + "\n").encode())

    async def expect(self, event: str, where: Callable[[dict[str, Any]], bool] = lambda e: True,
                     *, since: int = 0) -> dict[str, Any]:
        """The first event named `event` (at index >= since) satisfying `where`; callers bound the wait."""
        while True:
            for e in self._events[since:]:
                if e["event"] == event and where(e):
                    return e
            await self._changed.wait()

    async def changed(self) -> None:
        """Return after the next event arrives."""
        await self._changed.wait()

    def events(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self._events if e["event"] == event]

    def mark(self) -> int:
        return len(self._events)

    async def request(self, cmd: str, reply: str, **fields: Any) -> dict[str, Any]:
        since = self.mark()
        await self.send(cmd, **fields)
        return await self.expect(reply, since=since)

    def kill(self) -> None:
        """SIGKILL: no goodbye, sockets die with the process."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, grace: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.send("quit")
        with trio.move_on_after(grace):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    main()
