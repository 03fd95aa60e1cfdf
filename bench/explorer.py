"""Explorer bench: an account's latest transactions from the index (node/chainindex.py, real LevelDB), against
answering the same question by scanning the stored blocks, as a client-side explorer would.

    python -m bench.explorer [--blocks 2000] [--txs 5]

Baseline: decode every stored block (real LevelDB, newest first) and keep the account's transactions until a
page of 25 is full. The account's first transaction is at height 1, so the scan reads every block. Ours: one
`ChainIndex.account_txs` page; also the per-block cost of writing the index after a commit.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from core.block import Block
from core.types import Address
from node.chainindex import ChainIndex
from node.leveldb import LevelDBStore
from tests.node.simchain import SimChain
from vm.txs import Transfer, TxKind

from ._util import rate, row

PAGE = 25


def scan(db: LevelDBStore, head: int, address: Address) -> list[bytes]:
    found: list[bytes] = []
    for h in range(head, 0, -1):
        raw = db.get(b"b" + h.to_bytes(8, "big"))
        assert raw is not None
        block = Block.decode(raw)
        for tx in reversed(block.txs):
            to = Transfer.decode(tx.payload).to if tx.kind == TxKind.TRANSFER else None
            if tx.sender_address == address or to == address:
                found.append(bytes(tx.hash))
                if len(found) == PAGE:
                    return found
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--txs", type=int, default=5, help="transfers per block")
    args = parser.parse_args()

    chain = SimChain(n_accounts=3)
    rare = chain.account_keys[2].address  # sends one transfer, in block 1; every other one is between 0 and 1
    start = time.perf_counter()
    for h in range(1, args.blocks + 1):
        for i in range(args.txs):
            sender = 2 if h == 1 and i == 0 else i % 2
            tx = chain.transfer(sender, chain.account_keys[1 - i % 2].address, 1)
            chain.pending.append(tx)
        chain.produce()
    print(f"built {args.blocks} blocks of {args.txs} transfers in {time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        blocks_db = LevelDBStore(Path(tmp) / "blocks")
        with blocks_db.write_batch() as batch:
            for block in chain.blocks:
                batch.put(b"b" + int(block.height).to_bytes(8, "big"), block.encode())

        def read(h: int) -> Block | None:
            raw = blocks_db.get(b"b" + h.to_bytes(8, "big"))
            return None if raw is None else Block.decode(raw)

        index = ChainIndex(LevelDBStore(Path(tmp) / "index"), read, chain.height, lambda h: None)
        start = time.perf_counter()
        while index.catch_up():
            pass
        per_block = (time.perf_counter() - start) / args.blocks
        print(f"index written after commit: {per_block * 1e6:,.0f} us per block "
              f"(read + decode + one batch), {args.blocks} blocks")

        head = chain.height()
        want = scan(blocks_db, head, rare)
        assert [bytes(e.tx_hash) for e in index.account_txs(rare, PAGE)] == want
        ours = rate(lambda: index.account_txs(rare, PAGE), batch=100)
        base = rate(lambda: scan(blocks_db, head, rare), batch=1, min_seconds=1.0)
        print(f"an account's latest {PAGE} transactions, {head} blocks stored:")
        print(row("index page (ChainIndex)", ours, base, "scan of the stored blocks"))
        blocks_db.close()
        index.db.close()


if __name__ == "__main__":
    main()
