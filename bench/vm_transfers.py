"""The VM's CPU per transfer in a full block, as the nodes of a devnet run it (issue 11's VM line).

A block of transfers from many funded senders to one sink (the devnet bench's traffic, `bench/devnet.py`),
built by a proposer and met by a validator as a node meets it: rebuilt from a compact proposal (its
transactions the mempool's, decoded from gossip and hashed; its results decoded), signatures already in the
node's cache (the gossip check and the mempool verified them). Each round gives every validator a fresh copy
of the genesis database, so each runs the same height and commits it for real. Measured in CPU time
(`time.process_time`), medians over `--rounds`, per transfer:

  build      `build_block` on the proposer (selection, execution, results, state root)
  validate   `validate_block` on a validator (block bytes and roots, re-execution, state root)
  checked    the same on a node, whose `BlockChecks` already compared the header's hashes with the body
             (on gossip): the VM does not compare them again
  reuse      `validate_block` of the proposer's own block (execution kept from the build): the body's
             hashes compared with the header, or not when the node's `BlockChecks` did
  commit     `finalize_block` after `validate_block` plus the LevelDB batch write (staging only)
  apply      `finalize_block` of a block the node did not validate (sync, replay: `apply_block`, signatures
             verified from a cold cache)
  body       the node's own check of a received block (`Block.validate_basic` on a freshly decoded copy,
             what `node.blockcheck.BlockChecks` runs), and its results root alone: each distinct result
             encoded once (`core.block.encode_results`) against each result encoded alone (the rule before)

Ed25519 verification of the same transactions is printed as the baseline (the signature floor of a node).

Run: `python -m bench.vm_transfers [--txs 2000] [--senders 256] [--rounds 9] [--profile STEP]`.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.app import BlockTemplate, Verdict
from core.block import Block, compute_results_root
from core.hashing import ZERO_HASH
from core.merkle import merkle_root
from core.tx import Transaction
from core.types import Amount, Hash32, Height, Round, Timestamp
from node.leveldb import LevelDBStore
from node.sigcache import SigCache
from tools.genesis import account_key, make_genesis
from vm.app import VMApplication
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.txs import Transfer, build_tx

FIRST_SENDER = 4  # accounts 0-3 own the validators


def _cpu(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--profile", choices=("build", "validate", "finalize", "apply"), default=None,
                    help="print a cProfile of three runs of this step instead of the figures")
    args = ap.parse_args()

    doc = make_genesis(4, accounts=FIRST_SENDER + args.senders, models=("digits_int8",),
                       overrides={"consensus": {"max_block_gas": 10**12}})
    with tempfile.TemporaryDirectory(prefix="bench-vm-transfers-") as tmp_name:
        tmp = Path(tmp_name)
        genesis = parse_genesis(json.loads(json.dumps(doc)))
        seed = genesis.seed_phrase or ""
        keys = [account_key(seed, FIRST_SENDER + i) for i in range(args.senders)]
        sink = account_key(seed, 0).address
        txs = [build_tx(keys[i % args.senders], Transfer(sink, Amount(1)), chain_id=genesis.chain_id,
                        nonce=i // args.senders, gas_limit=1000, fee=1000) for i in range(args.txs)]
        sigs = SigCache()  # the node's cache: the mempool and the gossip check verified every transfer
        for tx in txs:
            sigs.mark_verified(tx.hash)
        proposer = VMApplication(LevelDBStore(tmp / "p"), genesis, executor=LocalExecutor(), verify_tx=sigs.verify)
        VMApplication(LevelDBStore(tmp / "genesis"), genesis, executor=LocalExecutor()).store.close()
        vset = proposer.validator_set(Height(1))
        template = BlockTemplate(genesis.chain_id, Height(1), Round(0), Timestamp(genesis.genesis_time + 1000),
                                 vset.entries[1].address, ZERO_HASH, None, ())
        built = proposer.build_block(template, txs)
        raw = built.encode()
        n = len(built.txs)
        fresh = iter(range(10**6))

        def node(verify: Callable[[Transaction, Hash32], bool],
                 body_checked: Callable[[Block], bool] | None = None) -> VMApplication:
            """A validator at genesis (a copy of the genesis database), with its own signature cache."""
            path = tmp / f"node{next(fresh)}"
            shutil.copytree(tmp / "genesis", path)
            return VMApplication(LevelDBStore(path), genesis, executor=LocalExecutor(), verify_tx=verify,
                                 body_checked=body_checked)

        def received() -> Block:
            """The block as a validator's node hands it over: rebuilt from a compact proposal, so its
            transactions are the mempool's (decoded from gossip, hashed) and its results decoded."""
            decoded = Block.decode(raw)
            gossiped = tuple(Transaction.decode(tx.encode()) for tx in built.txs)
            for tx in gossiped:
                _ = tx.hash
            return Block(decoded.header, gossiped, decoded.results, decoded.last_commit, decoded.evidence)

        def close(app: VMApplication) -> None:
            app.close()
            app.store.close()

        def build() -> float:
            return _cpu(lambda: proposer.build_block(template, txs))

        def validate_and_commit(checked: bool = False) -> tuple[float, float]:
            block = received()
            app = node(sigs.verify, (lambda b: b is block) if checked else None)
            validate = _cpu(lambda: _expect_valid(app.validate_block(block)))
            commit = _cpu(lambda: _commit(app, block))
            close(app)
            return validate, commit

        def reuse(checked: bool) -> float:
            """The proposer meets its own proposal: `validate_block` finds the build's execution."""
            path = tmp / f"node{next(fresh)}"
            shutil.copytree(tmp / "genesis", path)
            block: list[Block] = []
            app = VMApplication(LevelDBStore(path), genesis, executor=LocalExecutor(), verify_tx=sigs.verify,
                                body_checked=(lambda b: bool(block) and b is block[0]) if checked else None)
            block.append(app.build_block(template, txs))
            cpu = _cpu(lambda: _expect_valid(app.validate_block(block[0])))
            close(app)
            return cpu

        def apply() -> float:
            """A block this node did not validate (block sync, replay), its signatures not cached."""
            app, block = node(SigCache().verify), Block.decode(raw)
            cpu = _cpu(lambda: _commit(app, block))
            close(app)
            return cpu

        def body() -> float:
            block = Block.decode(raw)
            return _cpu(block.validate_basic)

        def results_root(alone: bool) -> float:
            results = Block.decode(raw).results  # distinct objects, as decoded from a proposal
            if alone:
                return _cpu(lambda: merkle_root([r.encode() for r in results]))
            return _cpu(lambda: compute_results_root(results))

        if args.profile:
            profiled: dict[str, Callable[[], object]] = {
                "build": build, "validate": lambda: validate_and_commit()[0], "finalize": validate_and_commit,
                "apply": apply}
            profiled[args.profile]()  # warm
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(3):
                profiled[args.profile]()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        samples: dict[str, list[float]] = {name: [] for name in ("verify", "build", "validate", "checked", "commit",
                                                                  "apply", "reuse", "reuse_checked", "body",
                                                                  "root_alone", "root_shared")}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            samples["verify"].append(_cpu(lambda: [tx.verify_signature() for tx in built.txs]))
            samples["build"].append(build())
            validate, commit = validate_and_commit()
            samples["validate"].append(validate)
            samples["commit"].append(commit)
            samples["checked"].append(validate_and_commit(checked=True)[0])
            samples["apply"].append(apply())
            samples["reuse"].append(reuse(checked=False))
            samples["reuse_checked"].append(reuse(checked=True))
            samples["body"].append(body())
            samples["root_alone"].append(results_root(alone=True))
            samples["root_shared"].append(results_root(alone=False))
        close(proposer)
        us = {name: 1e6 * statistics.median(values) / n for name, values in samples.items()}
        print(f"{n:,} transfers from {args.senders} senders to one sink, {len(raw):,} bytes; CPU per transfer, "
              f"median of {args.rounds}; load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
        print(f"  {'Ed25519 verify (baseline)':<46}{us['verify']:8.1f} us")
        for name, label in (("build", "build_block (proposer, signatures cached)"),
                            ("validate", "validate_block (signatures cached)"),
                            ("checked", "the same, body checked by the node"),
                            ("reuse", "validate_block of the proposer's own block"),
                            ("reuse_checked", "the same, body checked by the node"),
                            ("commit", "finalize_block after it + batch write"),
                            ("apply", "finalize_block, not validated (verifies)"),
                            ("body", "the node's check of a received block's body"),
                            ("root_alone", "results root, each result encoded alone"),
                            ("root_shared", "results root, encode_results (now)")):
            spread = 1e6 * (max(samples[name]) - min(samples[name])) / n
            print(f"  {label:<46}{us[name]:8.1f} us   {us[name] / us['verify']:5.2f}x verify   (range {spread:.1f} us)")
        validator = us["validate"] + us["commit"]
        print(f"  {'a validator: validate + commit':<46}{validator:8.1f} us   {validator / us['verify']:5.2f}x verify")


def _expect_valid(verdict: Verdict) -> None:
    assert verdict.is_valid, verdict


def _commit(app: VMApplication, block: Block) -> None:
    """finalize_block and the batch write, as the node commits a block (durably)."""
    with app.store.write_batch(sync=True) as batch:
        app.finalize_block(block, batch)

if __name__ == "__main__":
    main()
