"""RPC bench: the work behind `models` on a large state, and a client's `broadcast_txs`, each against a baseline
measured in the same run.

    python -m bench.rpc [--part all|models|broadcast|block|observer|driver] [--entries 200000] [--models 50] [--txs 8192]

`models` (real LevelDB): baseline: what `models` did before the index, a walk of every state entry for the `M` prefix (the state's
tree orders keys by hash, so a prefix cannot be seeked). Ours: a page of 100 from `node.queries.ModelIndex`
once built (its one build is the same walk, done once, in a worker thread), and the per-block cost of
keeping it (noting a block's upload chunks).

`broadcast`: the CPU a node spends per transaction a client submits through `broadcast_txs` (batches of 64,
as bench/devnet.py's driver sends them; the JSON body parsed, the transactions decoded, verified, admitted,
handed to the gossip batcher, the answer rendered), against the baseline of the work no entry can skip: one
Ed25519 verification and the mempool's admission with the signature known, each measured alone in the same
run. The difference is the RPC path's own cost (docs/performance-cpu.md, "CPU per transaction").

`asgi` line: the same batches POSTed to `/` of the server's ASGI app (`build_app`: the guard, the route, the
body read, the answer sent), in process without a socket (hypercorn's HTTP parsing is not counted).

`block`: the per-transaction part of a `block` answer (each transaction's summary and result as JSON; the
devnet bench's observer reads every block of node 0 this way) for tiny inferences with their outputs.
Baseline: the sender's address written by BIP-350's reference checksum loop, as before; ours: the
table-driven checksum for a sender not seen yet, and the memo for one seen in an earlier block
(docs/performance-throughput.md, "Per-inference CPU in the node"). Last line: the raw block's hex per transaction, which
every answer carries and is all an answer with `summaries: false` carries.

`observer`: what the devnet bench's observer costs per committed transaction, node and client side, reading
a block of transfers with `summaries: false` (the raw block decoded by the client, as before) against
`hashes: true` (the transactions' hashes only, as now).

`driver`: the devnet bench's driver's own CPU per transaction it sends through `broadcast_txs` (batches of 64,
a real server on a socket) and per `status` poll of its observer: `node.client.Client` (httpx) against
bench.driver_rpc.DriverRpc.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from core.state import AuthenticatedMap
from core.tx import Transaction
from core.types import Amount, Hash32
from node import gctune
from node.config import ConsensusSection, NodeConfig, P2PSection, RPCSection
from node.home import init_home
from node.leveldb import LevelDBStore
from node.queries import ModelIndex
from node.rpc.dispatch import handle_payload
from node.rpc.server import build_app, build_registry, render_answer
from node.service import Node
from tools.genesis import DEFAULT_SEED_PHRASE, account_key, make_genesis, validator_key
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.state import model_key
from vm.txs import Transfer, build_tx

_BATCH = 50_000


def build(state: AuthenticatedMap, entries: int, models: int) -> int:
    version = 0
    for start in range(0, entries, _BATCH):
        version += 1
        changes = {b"A" + i.to_bytes(20, "big"): b"\x01" * 40 for i in range(start, min(entries, start + _BATCH))}
        if start == 0:
            changes.update({model_key(Hash32(i.to_bytes(32, "big"))): b"\x02" * 300 for i in range(models)})
        state.commit(version, changes)
    return version


def walk(state: AuthenticatedMap, version: int) -> list[bytes]:
    return [k[1:] for k, _ in state.items(version) if k.startswith(b"M") and len(k) == 33]


def models_part(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, LevelDBStore(Path(tmp) / "db") as db:
        state = AuthenticatedMap(db)
        start = time.perf_counter()
        version = build(state, args.entries, args.models)
        built_s = time.perf_counter() - start
        start = time.perf_counter()
        found = walk(state, version)
        walk_s = time.perf_counter() - start
        assert len(found) == args.models
        index = ModelIndex()
        start = time.perf_counter()
        index.page(state, version, None, 100)
        first_s = time.perf_counter() - start
        rounds = 200
        start = time.perf_counter()
        for _ in range(rounds):
            page = index.page(state, version, None, 100)
        page_s = (time.perf_counter() - start) / rounds
        assert len(page) == min(100, args.models)
    print(f"rpc bench: `models` over {args.entries:,} state entries holding {args.models} models "
          f"(state built in {built_s:.1f} s)")
    print(f"  baseline: walk the state (old `models`) {walk_s * 1e3:10.1f} ms per call, on the event loop")
    print(f"  index: first call (one walk, in a thread) {first_s * 1e3:9.1f} ms once")
    print(f"  index: a page of 100 ids               {page_s * 1e6:10.1f} us per call   "
          f"ratio walk / page {walk_s / page_s:10.0f}")


# ------------------------------------------------------------------------------------------------ broadcast

BROADCAST_SENDERS = 512
BROADCAST_BATCH = 64  # what bench/devnet.py's load driver sends per call


def broadcast_workload(chain_id: str, n: int) -> list[Transaction]:
    """`n` signed transfers from BROADCAST_SENDERS genesis accounts (16 per sender at the default 8,192)."""
    keys = [account_key(DEFAULT_SEED_PHRASE, i) for i in range(1, BROADCAST_SENDERS + 1)]
    sink = account_key(DEFAULT_SEED_PHRASE, 0).address
    return [build_tx(keys[i % BROADCAST_SENDERS], Transfer(sink, Amount(1)), chain_id=chain_id,
                     nonce=i // BROADCAST_SENDERS, gas_limit=1000, fee=1000) for i in range(n)]


def request_body(txs: Sequence[Transaction]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "broadcast_txs",
                       "params": {"txs": [tx.encode().hex() for tx in txs]}}).encode()


async def asgi_post(app: Any, body: bytes) -> tuple[int, bytes]:
    """POST `body` to `/` of an ASGI app as hypercorn would hand it over (one body message); status, body."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:26657"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 26657)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _broadcast_line(root: Path, doc: dict[str, Any], line: str, txs: list[Transaction]) -> float:
    """CPU per transaction (process time: the signature worker threads included) of one line, on a fresh
    in-process validator that commits nothing meanwhile."""
    cfg = NodeConfig(p2p=P2PSection(listen_addrs=("/ip4/127.0.0.1/tcp/0",)), rpc=RPCSection(enabled=False),
                     consensus=ConsensusSection(timeout_commit_ms=600_000, next_block_delay_ms=600_000))
    bodies = [request_body(txs[i:i + BROADCAST_BATCH]) for i in range(0, len(txs), BROADCAST_BATCH)]
    home = init_home(root, doc, config=cfg, node_key_seed=b"bench",
                     validator_key=validator_key(DEFAULT_SEED_PHRASE, 0))
    node = Node(home, executor=LocalExecutor())
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        registry, bound = build_registry(), {"api": node.queries}
        gctune.freeze(gctune.get_setting())
        start = time.process_time()
        if line == "verify":  # the Ed25519 floor: each signature once
            for tx in txs:
                assert tx.verify_signature()
        elif line == "mempool":  # admission alone, signatures checked: what the RPC adds work to
            for tx in txs:
                assert node.mempool.add(tx, signature_checked=True, from_client=True).accepted
        elif line == "asgi":  # the same through the server's ASGI app (guard, route, body, answer): no socket
            app = build_app(node.queries, None, RPCSection(requests_per_s=1e9, burst=10**9))
            for body in bodies:
                status, rendered = await asgi_post(app, body)
                assert status == 200 and b'"accepted":false' not in rendered
        else:  # a client's broadcast_txs: JSON, parse, verify, admit, hand to the batcher, answer
            for body in bodies:
                answer = await handle_payload(registry, body, bound)
                rendered = await render_answer(answer)
                assert b'"accepted":false' not in rendered
        spent = (time.process_time() - start) / len(txs)
        if line == "asgi":  # the app's own cost per request: a cheap method through it, against dispatch alone
            spent_app = await _app_per_request(build_app(node.queries, None, RPCSection(
                requests_per_s=1e9, burst=10**9)), registry, bound)
        assert len(node.mempool) == (len(txs) if line != "verify" else 0)
        nursery.cancel_scope.cancel()
    if line == "asgi":
        APP_SAMPLES.append(spent_app)
    return spent


APP_SAMPLES: list[float] = []
APP_REQUESTS = 2000


async def _app_per_request(app: Any, registry: Any, bound: dict[str, Any]) -> float:
    """CPU per `health` request through the ASGI app minus the same request's dispatch and rendering alone."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}).encode()
    start = time.process_time()
    for _ in range(APP_REQUESTS):
        await render_answer(await handle_payload(registry, body, bound))
    alone = time.process_time() - start
    start = time.process_time()
    for _ in range(APP_REQUESTS):
        assert (await asgi_post(app, body))[0] == 200
    return (time.process_time() - start - alone) / APP_REQUESTS


def broadcast_part(n: int, rounds: int) -> None:
    gctune.apply(gctune.get_setting())  # the node process's collector settings (node/cli/runner.py)
    doc = make_genesis(1, accounts=BROADCAST_SENDERS + 1)
    txs = broadcast_workload(parse_genesis(doc).chain_id, n)
    samples: dict[str, list[float]] = {"verify": [], "mempool": [], "rpc": [], "asgi": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):  # the lines interleaved, medians kept: a shared machine's load hits all alike
            for line, values in samples.items():
                values.append(trio.run(_broadcast_line, Path(tmp) / f"{line}{r}", doc, line, txs))
    rows = {line: statistics.median(values) for line, values in samples.items()}
    floor = rows["verify"] + rows["mempool"]
    print(f"rpc bench: broadcast_txs of {n:,} transfers from {BROADCAST_SENDERS} senders, {BROADCAST_BATCH} per "
          f"call, one in-process validator (CPU per transaction, process time; medians of {rounds} rounds)")
    print(f"  Ed25519 verification               {rows['verify'] * 1e6:8.1f} us")
    print(f"  mempool admission, signature known {rows['mempool'] * 1e6:8.1f} us")
    print(f"  baseline: the two together         {floor * 1e6:8.1f} us")
    print(f"  broadcast_txs, request to answer   {rows['rpc'] * 1e6:8.1f} us   ratio to baseline "
          f"{rows['rpc'] / floor:5.2f}   RPC's own {(rows['rpc'] - floor) * 1e6:+7.1f} us")
    print(f"  the same through the ASGI app      {rows['asgi'] * 1e6:8.1f} us   ratio to baseline "
          f"{rows['asgi'] / floor:5.2f}   RPC's own {(rows['asgi'] - floor) * 1e6:+7.1f} us")
    print(f"  the ASGI app's own per request (guard, route, body, answer; `health`) "
          f"{statistics.median(APP_SAMPLES) * 1e6:6.1f} us = {statistics.median(APP_SAMPLES) / BROADCAST_BATCH * 1e6:4.2f}"
          f" us per transaction at {BROADCAST_BATCH} per call")
    print("  rounds (verify / mempool / rpc / asgi, us): " + "; ".join(
        " / ".join(f"{samples[line][r] * 1e6:.0f}" for line in samples) for r in range(rounds)))

def block_part(n: int, rounds: int) -> None:
    import numpy as np

    import node.rpc.methods as methods
    from core.address import _encode_address, encode_address
    from core.header import TxResult, TxStatus
    from core.keys import PrivateKey
    from core.tensor import Tensor
    from core.types import Gas
    from tools.bech32_reference import reference_encode
    from vm.txs import Infer, build_tx

    rng = np.random.default_rng(0)
    model = Hash32(bytes(32))
    txs = [build_tx(PrivateKey.derive("bench", "block", i), Infer(model, (Tensor.from_numpy(
        rng.integers(0, 256, size=(1, 64), dtype=np.uint8)),), Amount(0)), chain_id="bench", nonce=0,
        gas_limit=100_000, fee=100_000) for i in range(n)]
    results = [TxResult(TxStatus.OK, Gas(60_000), (Tensor.from_numpy(rng.integers(-128, 128, size=(1, 10),
                                                                                    dtype=np.int8)),), b"", "")
               for _ in range(n)]

    def render() -> float:
        t0 = time.process_time()
        json.dumps({"txs": [methods.tx_summary(tx) for tx in txs],
                    "results": [methods.result_json(r) for r in results]})
        return (time.process_time() - t0) / n

    def render_raw() -> float:
        # What every `block` answer carries, and all that `summaries: false` carries: the block's bytes in hex
        # (here its transactions' and results' encodings, the bulk of it).
        t0 = time.process_time()
        json.dumps({"raw": b"".join([*(tx.encode() for tx in txs), *(r.encode() for r in results)]).hex()})
        return (time.process_time() - t0) / n

    samples: dict[str, list[float]] = {"reference": [], "cold": [], "warm": [], "raw": []}
    for _ in range(rounds):
        methods.encode_address = lambda address: reference_encode(bytes(address))  # type: ignore[assignment]
        samples["reference"].append(render())
        methods.encode_address = encode_address
        _encode_address.cache_clear()
        samples["cold"].append(render())
        samples["warm"].append(render())
        samples["raw"].append(render_raw())
    rows = {line: statistics.median(values) for line, values in samples.items()}
    base = rows["reference"]
    print(f"rpc bench: the per-transaction part of a `block` answer, {n:,} tiny inferences (CPU per transaction, "
          f"process time; medians of {rounds} rounds)")
    print(f"  baseline: reference bech32m loop        {base * 1e6:8.1f} us")
    print(f"  table checksum, sender not seen yet      {rows['cold'] * 1e6:8.1f} us   {rows['cold'] / base:5.2f}x")
    print(f"  sender seen in an earlier block (memo)   {rows['warm'] * 1e6:8.1f} us   {rows['warm'] / base:5.2f}x")
    print(f"  the raw block in hex (every answer; all of `summaries: false`) {rows['raw'] * 1e6:8.1f} us")


def observer_part(n: int, rounds: int) -> None:
    """The devnet bench's observer reading one committed block of `n` transfers: before, `block` with
    `summaries: false` (the raw block and commit in hex, decoded by the client, each transaction hashed and
    measured); ours, `block` with `hashes: true` (the hashes, total size and last-commit figures only). Node:
    the answer built and rendered to JSON; client: the JSON parsed and each hash taken for the observer's
    table. The socket's bytes are not counted (the raw block's hex is ~5x the hashes')."""
    from core.block import Block as WireBlock
    from core.votes import Commit
    from node.client import BlockHashes
    from node.rpc.methods import block_hashes_json, block_json
    from node.rpc.server import _render_json
    from tests.node.simchain import SimChain

    chain = SimChain(n_accounts=64)
    chain.produce()
    sink = chain.account_keys[0].address
    for i in range(n):
        chain.pending.append(chain.transfer(i % 64, sink, 1))
    chain.produce()
    block, commit = chain.blocks[1], chain.commits[2]
    assert len(block.txs) == n and block.last_commit is not None
    # The node answers from a block it decoded from its store (as BlockStore.block does).
    block = WireBlock.decode(block.encode())

    def node_old() -> bytes:
        return _render_json({"jsonrpc": "2.0", "id": 1, "result": block_json(block, commit, summaries=False)})

    def node_new() -> bytes:
        return _render_json({"jsonrpc": "2.0", "id": 1, "result": block_hashes_json(block)})

    def client_old(body: bytes) -> dict[bytes, float]:
        o = json.loads(body)["result"]
        Commit.decode(bytes.fromhex(o["commit"]))
        got = WireBlock.decode(bytes.fromhex(o["raw"]))
        committed = {bytes(tx.hash): 1.0 for tx in got.txs}
        sum(len(tx.encode()) for tx in got.txs)
        return committed

    def client_new(body: bytes) -> dict[bytes, float]:
        got = BlockHashes.from_json(json.loads(body)["result"])
        return dict.fromkeys(got.tx_hashes, 1.0)

    old_body, new_body = node_old(), node_new()
    assert client_old(old_body) == client_new(new_body)

    def cpu(fn: Any, *args: Any) -> float:
        t0 = time.process_time()
        for _ in range(5):
            fn(*args)
        return (time.process_time() - t0) / 5 / n

    samples: dict[str, list[float]] = {"node_old": [], "node_new": [], "client_old": [], "client_new": []}
    for _ in range(rounds):  # alternating, medians kept
        samples["node_old"].append(cpu(node_old))
        samples["node_new"].append(cpu(node_new))
        samples["client_old"].append(cpu(client_old, old_body))
        samples["client_new"].append(cpu(client_new, new_body))
    rows = {line: statistics.median(values) for line, values in samples.items()}
    print(f"rpc bench: the devnet observer reading a block of {n:,} transfers (CPU per transaction, process time; "
          f"medians of {rounds} rounds)")
    print(f"  answer bytes per tx: summaries false {len(old_body) / n:6.1f}   hashes true {len(new_body) / n:6.1f}")
    for side in ("node", "client"):
        old, new = rows[f"{side}_old"], rows[f"{side}_new"]
        print(f"  {side:6s} baseline (summaries: false) {old * 1e6:7.2f} us   hashes: true {new * 1e6:7.2f} us   "
              f"ratio {new / old:5.2f}")


def driver_part(batches: int, rounds: int) -> None:
    """The devnet bench's driver against a real server on a socket (tests' SimChain behind it, in a thread of
    this process): the calling thread's own CPU (thread time: the server's work is not counted) per
    transaction sent in `broadcast_txs` batches of 64, and per `status` call (the observer polls it ~20 times a
    second). Baseline: `node.client.Client` (httpx; a batch encoded by json.dumps), as the driver called
    before; ours: bench.driver_rpc.DriverRpc."""
    from bench.driver_rpc import DriverRpc
    from node.client import Client
    from node.config import RPCSection
    from tests.node.rpc_harness import ServerThread
    from tests.node.simchain import SimChain

    chain = SimChain(n_accounts=64)
    sink = chain.account_keys[0].address
    hexes = [chain.transfer(i % 64, sink, 1, nonce=i // 64).encode().hex() for i in range(BROADCAST_BATCH * 8)]
    work = [hexes[i:i + BROADCAST_BATCH] for i in range(0, len(hexes), BROADCAST_BATCH)]
    samples: dict[str, list[float]] = {"client": [], "ours": [], "client_status": [], "ours_status": []}
    unlimited = RPCSection(requests_per_s=1e9, burst=10**9)
    with ServerThread(chain, config=unlimited) as served, Client(served.url, timeout=60) as client, \
            DriverRpc(served.url, timeout=60) as ours:
        def send_client(batch: list[str]) -> list[dict[str, Any]]:
            answers: list[dict[str, Any]] = client.call("broadcast_txs", {"txs": batch, "mode": "sync"}, timeout=60)
            return answers

        senders = {"client": send_client, "ours": ours.broadcast}
        pollers = {"client_status": client.status, "ours_status": ours.status}
        assert send_client(work[0]) == ours.broadcast(work[0]) and client.status() == ours.status()
        for _ in range(rounds):  # alternating, medians kept
            for line, send in senders.items():
                t0 = time.thread_time()
                for b in range(batches):
                    answers = send(work[b % len(work)])
                    assert answers[0]["accepted"]
                samples[line].append((time.thread_time() - t0) / (batches * BROADCAST_BATCH))
                served.on_loop(chain.pending.clear)
            for line, poll in pollers.items():
                t0 = time.thread_time()
                for _ in range(batches):
                    poll()
                samples[line].append((time.thread_time() - t0) / batches)
    rows = {line: statistics.median(values) for line, values in samples.items()}
    print(f"rpc bench: the devnet driver's own CPU, a real server on a socket ({batches} calls a round; thread time "
          f"of the calling thread; medians of {rounds} rounds)")
    print(f"  broadcast_txs of {BROADCAST_BATCH}, per tx: baseline Client.call (httpx, json.dumps) "
          f"{rows['client'] * 1e6:7.2f} us   DriverRpc {rows['ours'] * 1e6:7.2f} us   ratio "
          f"{rows['ours'] / rows['client']:5.2f}")
    print(f"  status, per call:              baseline Client.status         "
          f"{rows['client_status'] * 1e6:7.1f} us   DriverRpc {rows['ours_status'] * 1e6:7.1f} us   ratio "
          f"{rows['ours_status'] / rows['client_status']:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("all", "models", "broadcast", "block", "observer", "driver"), default="all")
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--txs", type=int, default=8192, help="transfers submitted in the broadcast part")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the broadcast part")
    args = parser.parse_args()
    if args.part in ("all", "models"):
        models_part(args)
    if args.part in ("all", "broadcast"):
        broadcast_part(args.txs, args.rounds)
    if args.part in ("all", "block"):
        block_part(2000, args.rounds)
    if args.part in ("all", "observer"):
        observer_part(2000, args.rounds)
    if args.part in ("all", "driver"):
        driver_part(100, args.rounds)


if __name__ == "__main__":
    main()
