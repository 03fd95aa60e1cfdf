"""Index-write bench: CPU per transfer of writing the explorer's index after a commit (node/chainindex.py, real
LevelDB), at the block sizes a devnet commits at 2,000 transfers/s.

    python -m bench.index_write [--blocks 10] [--txs 1500] [--accounts 64] [--rounds 5]

Blocks come from memory, as the node's block store hands over its freshly committed blocks from its cache, so
only the index's own work is timed: its per-transaction Python and the LevelDB batch. Baseline: the index's
previous per-transaction loop (`_BeforeIndex`, kept here unchanged), over the same blocks into a fresh LevelDB;
base and ours alternate round by round and must write the same keys and values. Figures are the indexing
thread's CPU time (`time.thread_time`), the median over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from core.block import Block
from core.errors import DecodeError
from core.header import TxStatus
from core.types import Hash32
from node.chainindex import _ACCOUNT, _CALLS, _HEAD_ID, _HEIGHT, _POI, ChainIndex, _infer_model, _u64
from node.leveldb import LevelDBStore
from tests.node.simchain import SimChain
from vm.txs import Transfer, TxKind


class _BeforeIndex(ChainIndex):
    """The index's write loop before this round: the baseline, kept as it was."""

    def _index(self, block: Block, previous: Block | None) -> None:
        height = int(block.height)
        calls: dict[bytes, int] = {}
        with self.db.write_batch() as batch:
            for index, (tx, result) in enumerate(zip(block.txs, block.results, strict=False)):
                if tx.kind == TxKind.INFER and result.status == TxStatus.OK:
                    model_id = _infer_model(tx.payload)
                    if model_id is not None:
                        calls[model_id] = calls.get(model_id, self.model_calls(Hash32(model_id))) + 1
                suffix = _u64(height) + index.to_bytes(4, "big")
                batch.put(_ACCOUNT + bytes(tx.sender_address) + suffix, bytes(tx.hash))
                if tx.kind == TxKind.TRANSFER:
                    try:
                        to = Transfer.decode(tx.payload).to
                    except DecodeError:
                        continue
                    if to != tx.sender_address:
                        batch.put(_ACCOUNT + bytes(to) + suffix, bytes(tx.hash))
            for model_id, count in calls.items():
                batch.put(_CALLS + model_id, _u64(count))
            scored = self._score(block, previous)
            if scored is not None:
                batch.put(_POI + _u64(height - 2), scored)
            batch.put(_HEIGHT, _u64(height))
            batch.put(_HEAD_ID, bytes(block.id))


def build(blocks: int, txs: int, accounts: int) -> SimChain:
    chain = SimChain(n_accounts=accounts)
    nonces = [0] * accounts
    for h in range(blocks):
        for i in range(txs):
            sender = (h * txs + i) % accounts
            to = chain.account_keys[(sender * 7 + i + 1) % accounts].address
            tx = chain.transfer(sender, to, 1 + i, nonce=nonces[sender])
            nonces[sender] += 1
            chain.pending.append(tx)
        chain.produce()
    return chain


def one_round(cls: type[ChainIndex], chain: SimChain, path: Path) -> tuple[float, dict[bytes, bytes]]:
    db = LevelDBStore(path)
    index = cls(db, lambda h: chain.blocks[h - 1] if 1 <= h <= chain.height() else None, chain.height,
                lambda h: [(e.address, int(e.power)) for e in chain.vset])
    start = time.thread_time()
    while index.catch_up():
        pass
    spent = time.thread_time() - start
    written = dict(db.iterate())
    db.close()
    return spent, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--txs", type=int, default=1500, help="transfers per block")
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print("load at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    start = time.perf_counter()
    chain = build(args.blocks, args.txs, args.accounts)
    for block in chain.blocks:  # as the node's blocks arrive: hashes and senders already derived once
        for tx in block.txs:
            tx.hash  # noqa: B018
            tx.sender_address  # noqa: B018
    print(f"built {args.blocks} blocks of {args.txs} transfers among {args.accounts} accounts "
          f"in {time.perf_counter() - start:.1f} s")
    transfers = args.blocks * args.txs
    base: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            spent_base, want = one_round(_BeforeIndex, chain, Path(tmp) / f"base{r}")
            spent_ours, got = one_round(ChainIndex, chain, Path(tmp) / f"ours{r}")
            assert got == want, "the index wrote other keys or values than the baseline"
            base.append(spent_base / transfers * 1e6)
            ours.append(spent_ours / transfers * 1e6)
            print(f"  round {r + 1}: base {base[-1]:5.2f} us   ours {ours[-1]:5.2f} us of thread CPU per transfer")
    b, o = statistics.median(base), statistics.median(ours)
    print(f"index write, thread CPU per transfer (median of {args.rounds}):")
    print(f"  ours (ChainIndex)   {o:6.2f} us   previous loop {b:6.2f} us   ratio {o / b:5.2f}")


if __name__ == "__main__":
    main()
