"""What a node pays per transaction for the committed state between blocks (issue 11's state-read line).

A node reads the committed state outside block execution once per transaction or more: the mempool checks
each new sender's account (and rechecks pending senders after every commit) through a fresh view of the
latest state, `VMApplication.view().account(address)`, which asks the latest height (`last_height`) and walks
the state tree down to the account's leaf. This bench commits blocks of transfers on a real LevelDB, as the
node does (build, then `finalize_block` in a synced batch), and after each commit reads every sender's
account that way, as the mempool's recheck does. Per read, medians over the rounds:

  view + account   CPU time (`time.process_time`) of `app.view().account(address)`
  last_height      CPU time of `app.last_height` alone
  LevelDB gets     reads the state map makes per account read (counted in a separate pass)
  verify           Ed25519 verification of one transfer (the baseline: the node's per-transaction floor)

Run: `python -m bench.state_reads [--senders 1000] [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from core.app import BlockTemplate
from core.hashing import ZERO_HASH
from core.types import Amount, Height, Round, Timestamp
from node.leveldb import LevelDBStore
from node.sigcache import SigCache
from tools.genesis import account_key, make_genesis
from vm.app import VMApplication
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

FIRST_SENDER = 4  # accounts 0-3 own the validators


class CountingStore(LevelDBStore):
    """A LevelDB store that counts its gets (the counting pass only)."""

    gets = 0

    def get(self, key: bytes) -> bytes | None:
        CountingStore.gets += 1
        return super().get(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senders", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    doc = make_genesis(4, accounts=FIRST_SENDER + args.senders, models=("digits_int8",),
                       overrides={"consensus": {"max_block_gas": 10**12}})
    genesis = parse_genesis(json.loads(json.dumps(doc)))
    seed = genesis.seed_phrase or ""
    keys = [account_key(seed, FIRST_SENDER + i) for i in range(args.senders)]
    addresses = [k.address for k in keys]
    sink = account_key(seed, 0).address
    sigs = SigCache()
    with tempfile.TemporaryDirectory(prefix="bench-state-reads-") as tmp:
        app = VMApplication(CountingStore(Path(tmp) / "db"), genesis, executor=LocalExecutor(), verify_tx=sigs.verify)
        vset = app.validator_set(Height(1))
        samples: dict[str, list[float]] = {"read": [], "height": [], "gets": [], "verify": []}
        load = os.getloadavg()[0]
        for height in range(1, 2 * args.rounds + 2):
            txs = [build_tx(k, Transfer(sink, Amount(1)), chain_id=genesis.chain_id, nonce=height - 1,
                            gas_limit=1000, fee=1000) for k in keys[::3]]  # a third of the senders move
            for tx in txs:
                sigs.mark_verified(tx.hash)
            template = BlockTemplate(genesis.chain_id, Height(height), Round(0),
                                     Timestamp(genesis.genesis_time + 1000 * height), vset.entries[0].address,
                                     ZERO_HASH, None, ())
            block = app.build_block(template, txs)
            with app.store.write_batch(sync=True) as batch:
                app.finalize_block(block, batch)
            if height == 1:
                continue  # the first commit warms the tree
            if height % 2:  # alternate rounds count the gets: counting costs time
                before = CountingStore.gets
                for address in addresses:
                    app.view().account(address)
                samples["gets"].append((CountingStore.gets - before) / len(addresses))
                continue
            start = time.process_time()
            for address in addresses:
                app.view().account(address)
            samples["read"].append((time.process_time() - start) / len(addresses))
            start = time.process_time()
            for _ in addresses:
                _ = app.last_height
            samples["height"].append((time.process_time() - start) / len(addresses))
            start = time.process_time()
            for tx in txs[:200]:
                tx.verify_signature()
            samples["verify"].append((time.process_time() - start) / 200)
        app.close()
        app.store.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    verify = med["verify"]
    print(f"state reads between blocks: {args.senders:,} senders read after each of {args.rounds} commits "
          f"(CPU per read, median); load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  {'Ed25519 verify (baseline)':<34}{1e6 * verify:7.2f} us")
    print(f"  {'view + account':<34}{1e6 * med['read']:7.2f} us   {med['read'] / verify:5.3f}x verify")
    print(f"  {'last_height':<34}{1e6 * med['height']:7.2f} us   {med['height'] / verify:5.3f}x verify")
    print(f"  {'LevelDB gets per account read':<34}{med['gets']:7.2f}")


if __name__ == "__main__":
    main()
