"""Node bench: committed transfers per second through a whole single-validator node (RPC-side submit,
mempool, consensus driver with WAL and signer, real libp2p host, VM, atomic LevelDB commits), against a
baseline of the bare VM doing the same blocks (build_block + finalize_block in one batch, no node).

    python -m bench.node [--txs 3000] [--kind transfer|infer]

`--kind infer`: tiny exact-class inferences (digits_int8, as bench.gossip_rx builds them) instead of transfers;
the node's overhead over the bare VM per kind (docs/performance-throughput.md, "Per-inference CPU in the node").

Both run in this process with the VM's in-process executor; the ratio is the node's overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from core.app import BlockTemplate
from core.hashing import ZERO_HASH
from core.tx import Transaction
from core.types import Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Commit, Vote, VoteType
from node.config import ConsensusSection, NodeConfig, P2PSection, RPCSection
from node.home import init_home
from node.leveldb import LevelDBStore
from node.service import Node
from tools.genesis import DEFAULT_SEED_PHRASE, account_key, make_genesis, validator_key
from vm.app import VMApplication
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

SENDERS = 100


def workload(chain_id: str, n: int) -> list[Transaction]:
    keys = [account_key(DEFAULT_SEED_PHRASE, i) for i in range(1, SENDERS + 1)]
    sink = account_key(DEFAULT_SEED_PHRASE, 0).address
    per = -(-n // SENDERS)
    return [build_tx(keys[s], Transfer(sink, 1), chain_id=chain_id, nonce=k, gas_limit=1000, fee=1000)
            for k in range(per) for s in range(SENDERS)][:n]


def infer_workload(chain_id: str, n: int, root: Path) -> list[Transaction]:
    from bench.gossip_rx import tiny_infer_payloads

    keys = [account_key(DEFAULT_SEED_PHRASE, i) for i in range(1, SENDERS + 1)]
    per = -(-n // SENDERS)
    payloads, gas = tiny_infer_payloads(genesis_doc(), per * SENDERS, root / "probe")
    return [build_tx(keys[s], payloads[k * SENDERS + s], chain_id=chain_id, nonce=k, gas_limit=gas, fee=gas)
            for k in range(per) for s in range(SENDERS)][:n]


def genesis_doc() -> dict:  # type: ignore[type-arg]
    return make_genesis(1, accounts=SENDERS + 1)


async def node_rate(root: Path, txs: list[Transaction]) -> tuple[float, int]:
    cfg = NodeConfig(p2p=P2PSection(listen_addrs=("/ip4/127.0.0.1/tcp/0",)), rpc=RPCSection(enabled=False),
                     consensus=ConsensusSection(timeout_commit_ms=0, timeout_propose_ms=1000))
    home = init_home(root / "node", genesis_doc(), config=cfg, node_key_seed=b"bench",
                     validator_key=validator_key(DEFAULT_SEED_PHRASE, 0))
    node = Node(home, executor=LocalExecutor())
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        start_height = node.height
        start = time.perf_counter()
        for i in range(0, len(txs), 500):
            verdicts = await node.submit_txs(txs[i:i + 500])
            assert all(v.accepted for v in verdicts), [v.reason for v in verdicts if not v.accepted][:3]
        last = txs[-1].hash
        while node.blockstore.tx_location(last) is None or len(node.mempool):  # noqa: ASYNC110
            await trio.sleep(0.005)
        elapsed = time.perf_counter() - start
        blocks = node.height - start_height
        nursery.cancel_scope.cancel()
    return len(txs) / elapsed, blocks


def vm_rate(root: Path, txs: list[Transaction], max_txs: int) -> float:
    genesis = parse_genesis(genesis_doc())
    db = LevelDBStore(root / "vm")
    app = VMApplication(db, genesis, executor=LocalExecutor())
    key = validator_key(DEFAULT_SEED_PHRASE, 0)
    last_commit: Commit | None = None
    last_id = ZERO_HASH
    t = int(genesis.genesis_time)
    pending = list(txs)
    start = time.perf_counter()
    h = 0
    while pending:
        h += 1
        t += 1000
        template = BlockTemplate(genesis.chain_id, Height(h), Round(0), Timestamp(t), key.address, last_id,
                                 last_commit, ())
        block = app.build_block(template, pending[:max_txs])
        included = {bytes(tx.hash) for tx in block.txs}
        pending = [tx for tx in pending if bytes(tx.hash) not in included]
        with db.write_batch(sync=True) as batch:
            app.finalize_block(block, batch)
        vote = Vote(VoteType.PRECOMMIT, Height(h), Round(0), block.id, Timestamp(t), key.public_key,
                    app.poi_commitment(Height(h), key.address), ZERO_SIGNATURE).signed(key, genesis.chain_id)
        last_commit, last_id = Commit(Height(h), Round(0), block.id, (vote,)), block.id
    elapsed = time.perf_counter() - start
    app.close()
    db.close()
    return len(txs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--txs", type=int, default=3000)
    parser.add_argument("--kind", choices=("transfer", "infer"), default="transfer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chain_id = parse_genesis(genesis_doc()).chain_id
        txs = workload(chain_id, args.txs) if args.kind == "transfer" else infer_workload(chain_id, args.txs, root)
        cpu = time.process_time()
        ours, blocks = trio.run(node_rate, root, txs)
        cpu_us = 1e6 * (time.process_time() - cpu) / len(txs)
        per_block = -(-len(txs) // max(blocks, 1))
        baseline = vm_rate(root, txs, per_block)
    print(f"node bench: {len(txs)} {args.kind}s from {SENDERS} senders, single validator, in-process VM")
    print(f"  node: submit -> committed      {ours:>10,.0f} tx/s   ({blocks} blocks, ~{per_block} tx/block)")
    print(f"  bare VM, same block sizes      {baseline:>10,.0f} tx/s")
    print(f"  ratio node / bare VM           {ours / baseline:10.2f}")
    print(f"  node CPU per transaction       {cpu_us:10.0f} us  (every thread, node start and stop included)")


if __name__ == "__main__":
    main()
