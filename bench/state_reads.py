"""What a node pays per transaction for the committed state between blocks (issue 11's state-read line).

A node reads the committed state outside block execution once per transaction or more: the mempool checks
each new sender's account (and rechecks pending senders after every commit) through a fresh view of the
latest state, `VMApplication.view().account(address)`, which asks the latest height (`last_height`) and walks
the state tree down to the account's leaf. This bench runs a proposer and a validator on real LevelDBs that
have been running (not freshly opened: their caches hold what they committed): each height the proposer
builds a block of transfers (every sender once), the validator validates it and both commit it
(`finalize_block` in a synced batch); after each commit the validator reads every sender's account as the
mempool's recheck does. Medians over the rounds:

  validate         CPU time (`time.process_time`) of the validator's `validate_block`, per transfer
  commit           CPU time of its `finalize_block` and the batch write, per transfer
  view + account   CPU time of `app.view().account(address)`, per read
  last_height      CPU time of `app.last_height` alone
  LevelDB gets     reads the validator's state map makes per validated transfer and per account read
                   (counted in the rounds not timed)
  verify           Ed25519 verification of one transfer (the baseline: the node's per-transaction floor)

The process runs with the node's garbage-collector settings (node/gctune.py), frozen once both are built.

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
from core.block import Block
from core.hashing import ZERO_HASH
from core.keys import PrivateKey
from core.types import Amount, Height, Round, Timestamp
from core.votes import ZERO_SIGNATURE, Commit, Vote, VoteType
from node import gctune
from node.leveldb import LevelDBStore
from node.sigcache import SigCache
from tools.genesis import account_key, make_genesis, validator_key
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


def precommits(app: VMApplication, block: Block) -> Commit:
    """Every validator's precommit of `block`, with its PoI commitment (what the next block's header needs)."""
    h = block.height
    votes = []
    for entry in app.validator_set(h).entries:
        key = KEYS[bytes(entry.address)]
        commitment = app.poi_commitment(h, entry.address)
        vote = Vote(VoteType.PRECOMMIT, h, Round(0), block.id, Timestamp(block.header.time + 1), key.public_key,
                    commitment, ZERO_SIGNATURE)
        votes.append(vote.signed(key, app.chain_id))
    return Commit(h, Round(0), block.id, tuple(votes))


KEYS: dict[bytes, PrivateKey] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senders", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    gc_setting = gctune.get_setting()  # the node's collector settings, as `inferchain node` applies them
    gctune.apply(gc_setting)
    doc = make_genesis(4, accounts=FIRST_SENDER + args.senders, models=("digits_int8",),
                       overrides={"consensus": {"max_block_gas": 10**12}})
    genesis = parse_genesis(json.loads(json.dumps(doc)))
    seed = genesis.seed_phrase or ""
    for i in range(4):
        key = validator_key(seed, i)
        KEYS[bytes(key.address)] = key
    keys = [account_key(seed, FIRST_SENDER + i) for i in range(args.senders)]
    addresses = [k.address for k in keys]
    sink = account_key(seed, 0).address
    sigs = SigCache()
    with tempfile.TemporaryDirectory(prefix="bench-state-reads-") as tmp:
        proposer = VMApplication(LevelDBStore(Path(tmp) / "p"), genesis, executor=LocalExecutor(),
                                 verify_tx=sigs.verify)
        app = VMApplication(CountingStore(Path(tmp) / "v"), genesis, executor=LocalExecutor(), verify_tx=sigs.verify)
        gctune.freeze(gc_setting)
        last_id, last_commit = ZERO_HASH, None
        samples: dict[str, list[float]] = {name: [] for name in ("validate", "commit", "read", "height", "verify",
                                                                  "validate_gets", "read_gets")}
        load = os.getloadavg()[0]
        for height in range(1, 2 * args.rounds + 2):
            txs = [build_tx(k, Transfer(sink, Amount(1)), chain_id=genesis.chain_id, nonce=height - 1,
                            gas_limit=1000, fee=1000) for k in keys]
            for tx in txs:
                sigs.mark_verified(tx.hash)
            entries = proposer.validator_set(Height(height)).entries
            template = BlockTemplate(genesis.chain_id, Height(height), Round(0),
                                     Timestamp(genesis.genesis_time + 1000 * height),
                                     entries[height % len(entries)].address, last_id, last_commit, ())
            block = proposer.build_block(template, txs)
            last_id, last_commit = block.id, precommits(proposer, block)
            with proposer.store.write_batch(sync=True) as batch:
                proposer.finalize_block(block, batch)
            timed = height % 2 == 0  # the others count the gets: counting costs time
            gets, cpu = CountingStore.gets, time.process_time()
            verdict = app.validate_block(block)
            assert verdict.is_valid, verdict
            validate = time.process_time() - cpu
            samples["validate" if timed else "validate_gets"].append(
                (validate if timed else CountingStore.gets - gets) / len(txs))
            cpu = time.process_time()
            with app.store.write_batch(sync=True) as batch:
                app.finalize_block(block, batch)
            if timed:
                samples["commit"].append((time.process_time() - cpu) / len(txs))
            app.challenge_output(height)  # as its precommit of this height does, before the next blocks need it
            gets, cpu = CountingStore.gets, time.process_time()
            for address in addresses:
                app.view().account(address)
            samples["read" if timed else "read_gets"].append(
                ((time.process_time() - cpu) if timed else CountingStore.gets - gets) / len(addresses))
            if not timed:
                continue
            start = time.process_time()
            for _ in addresses:
                _ = app.last_height
            samples["height"].append((time.process_time() - start) / len(addresses))
            start = time.process_time()
            for tx in txs[:200]:
                tx.verify_signature()
            samples["verify"].append((time.process_time() - start) / 200)
        for each in (proposer, app):
            each.close()
            each.store.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    verify = med["verify"]
    print(f"a validator that has been running: {args.senders:,} transfers per block, every sender read after "
          f"each commit; medians of {args.rounds} heights; load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  {'Ed25519 verify (baseline)':<38}{1e6 * verify:7.2f} us")
    for name, label in (("validate", "validate_block, per transfer"), ("commit", "finalize_block + write, per transfer"),
                        ("read", "view + account, per read"), ("height", "last_height")):
        print(f"  {label:<38}{1e6 * med[name]:7.2f} us   {med[name] / verify:5.3f}x verify")
    print(f"  {'LevelDB gets per validated transfer':<38}{med['validate_gets']:7.2f}")
    print(f"  {'LevelDB gets per account read':<38}{med['read_gets']:7.2f}")

if __name__ == "__main__":
    main()
