"""The VM's CPU per inference transaction in a full block, the devnet's tiny exact-class traffic (digits_int8),
from the block's transactions to the committed state, results and chain index; the sandbox's run left out.

A block of `--txs` inferences on digits_int8 (distinct random inputs, many senders) as the inference devnet
fills one: the byte cap binds at ~2,700. The sandbox's run of each job is not this bench's slice (it is the
worker pool's, `bench/vm.py`): the executor runs each distinct job on ONNX Runtime once and then answers it
from memory, so what is measured is the block logic around it: execution, the jobs' feeds, the resolutions,
the results, the state tree and root, the batch write, and the explorer's index of the committed block.
Each round gives every validator a fresh copy of the genesis database, its senders' accounts read once
first (as a node's mempool reads them when it admits their transactions). CPU time (`time.process_time`),
medians over `--rounds`, per inference, under the node's garbage-collector settings (`node.gctune`, `INFERCHAIN_GC`):

  build      `build_block` on the proposer (selection, execution, resolution, results, state root)
  validate   `validate_block` on a validator (a block decoded as received; signatures cached)
  commit     `finalize_block` after it plus the LevelDB batch write
  apply      `finalize_block` of a block the node did not validate (committed outputs taken, signatures cached)
  index      `ChainIndex` indexing the committed block (node/chainindex.py), on the block the VM executed

Run: `python -m bench.vm_infer [--txs 3000] [--senders 256] [--rounds 7] [--profile STEP]`.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.vm_transfers import _commit, _expect_valid  # the same steps as the transfer bench's
from core.app import BlockTemplate
from core.block import Block
from core.hashing import ZERO_HASH
from core.tensor import Tensor
from core.tx import Transaction
from core.types import Amount, Height, Round, Timestamp
from node import gctune
from node.chainindex import ChainIndex
from node.leveldb import LevelDBStore
from node.sigcache import SigCache
from tools.genesis import account_key, make_genesis
from vm.app import VMApplication
from vm.execute import infer_gas
from vm.genesis import parse_genesis
from vm.sandbox.executor import InferJob, Job, JobResult, LocalExecutor
from vm.txs import Infer, build_tx, decoded_payload

FIRST_SENDER = 4  # accounts 0-3 own the validators
MODEL = "digits_int8"


class RememberingExecutor:
    """Runs each distinct inference job on ONNX Runtime once (LocalExecutor), then answers it from memory:
    the bench measures the block logic, not the sandbox's run."""

    def __init__(self) -> None:
        self._local = LocalExecutor()
        self._known: dict[tuple[bytes, tuple[bytes, ...]], JobResult] = {}

    def run_batch(self, jobs: Sequence[Job]) -> list[JobResult]:
        out: list[JobResult] = []
        for job in jobs:
            if not isinstance(job, InferJob):  # a registration's check (genesis): run as it is
                out.extend(self._local.run_batch([job]))
                continue
            key = (job.model.model_id, tuple(np.ascontiguousarray(a).tobytes() for a in job.inputs.values()))
            result = self._known.get(key)
            if result is None:
                result = self._known[key] = self._local.run_batch([job])[0]
            out.append(result)
        return out

    def close(self) -> None:
        self._local.close()


_PROFILED: dict[str, cProfile.Profile] = {}  # --profile STEP: the one step's profiler, enabled around it alone


def _cpu(fn: Callable[[], Any], step: str) -> float:
    profiler = _PROFILED.get(step)
    if profiler is not None:
        profiler.enable()
    start = time.process_time()
    fn()
    cpu = time.process_time() - start
    if profiler is not None:
        profiler.disable()
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=3000)
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--profile", choices=("build", "validate", "commit", "apply", "index"), default=None,
                    help="print a cProfile of three runs of this step instead of the figures")
    args = ap.parse_args()
    gc_setting = gctune.get_setting()  # the node's collector settings (INFERCHAIN_GC; tuned by default)
    gctune.apply(gc_setting)

    doc = make_genesis(4, accounts=FIRST_SENDER + args.senders, models=(MODEL,),
                       overrides={"consensus": {"max_block_gas": 10**12}})
    executor = RememberingExecutor()
    with tempfile.TemporaryDirectory(prefix="bench-vm-infer-") as tmp_name:
        tmp = Path(tmp_name)
        genesis = parse_genesis(json.loads(json.dumps(doc)))
        seed = genesis.seed_phrase or ""
        keys = [account_key(seed, FIRST_SENDER + i) for i in range(args.senders)]
        model = next(m for m in genesis.models if m.name == MODEL)
        first = VMApplication(LevelDBStore(tmp / "genesis"), genesis, executor=executor)
        record = first.view().model(model.model_id)
        close_app(first)
        assert record is not None
        rng = np.random.default_rng(7)
        txs = []
        for i in range(args.txs):
            x = tuple(Tensor.from_numpy(rng.integers(np.iinfo(s.dtype.numpy.name).min,
                                                     int(np.iinfo(s.dtype.numpy.name).max) + 1,
                                                     size=tuple(s.shape), dtype=s.dtype.numpy))
                      for s in record.meta.inputs)
            gas_limit = infer_gas(genesis.params, record, x)
            txs.append(build_tx(keys[i % args.senders], Infer(model.model_id, x, Amount(0)),
                                chain_id=genesis.chain_id, nonce=i // args.senders, gas_limit=gas_limit,
                                fee=gas_limit))
        sigs = SigCache()  # the node's cache: the mempool and the gossip check verified every inference
        for tx in txs:
            sigs.mark_verified(tx.hash)
        fresh = iter(range(10**6))

        def node() -> VMApplication:
            """A node at genesis (a copy of the genesis database), the signatures in its cache."""
            path = tmp / f"node{next(fresh)}"
            shutil.copytree(tmp / "genesis", path)
            app = VMApplication(LevelDBStore(path), genesis, executor=executor, verify_tx=sigs.verify)
            view = app.view()
            for key in keys:  # as the mempool's admission check read them: the state's value cache warm
                view.account(key.address)
            return app

        proposer = node()
        vset = proposer.validator_set(Height(1))
        template = BlockTemplate(genesis.chain_id, Height(1), Round(0), Timestamp(genesis.genesis_time + 1000),
                                 vset.entries[1].address, ZERO_HASH, None, ())
        built = proposer.build_block(template, txs)
        assert all(r.status.name == "OK" for r in built.results), {r.log for r in built.results}
        raw = built.encode()
        n = len(built.txs)
        def received() -> Block:
            """The block as a validator's node hands it over: its transactions the mempool's (decoded from
            gossip, hashed, their payloads decoded by the admission check), its results decoded."""
            decoded = Block.decode(raw)
            gossiped = tuple(Transaction.decode(tx.encode()) for tx in built.txs)
            for tx in gossiped:
                _ = tx.hash
                decoded_payload(tx)
            return Block(decoded.header, gossiped, decoded.results, decoded.last_commit, decoded.evidence)

        def build() -> float:
            return _cpu(lambda: proposer.build_block(template, txs), "build")

        def validate_commit_index() -> tuple[float, float, float]:
            block = received()
            app = node()
            validate = _cpu(lambda: _expect_valid(app.validate_block(block)), "validate")
            commit = _cpu(lambda: _commit(app, block), "commit")
            close_app(app)
            index_db = LevelDBStore(tmp / f"index{next(fresh)}")
            index = ChainIndex(index_db, lambda h: block if h == 1 else None, lambda: 1, lambda h: None)
            indexed = _cpu(index.catch_up, "index")
            index_db.close()
            return validate, commit, indexed

        def apply() -> float:
            app, block = node(), received()
            cpu = _cpu(lambda: _commit(app, block), "apply")
            close_app(app)
            return cpu

        gctune.freeze(gc_setting)  # as the node freezes what start-up built: the genesis, the transactions
        if args.profile:
            profiled: dict[str, Callable[[], object]] = {
                "build": build, "validate": validate_commit_index, "commit": validate_commit_index,
                "index": validate_commit_index, "apply": apply}
            profiled[args.profile]()  # warm
            profiler = _PROFILED[args.profile] = cProfile.Profile()
            for _ in range(3):
                profiled[args.profile]()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        build()  # warm
        samples: dict[str, list[float]] = {name: [] for name in ("build", "validate", "commit", "apply", "index")}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            samples["build"].append(build())
            validate, commit, indexed = validate_commit_index()
            samples["validate"].append(validate)
            samples["commit"].append(commit)
            samples["index"].append(indexed)
            samples["apply"].append(apply())
        close_app(proposer)
        us = {name: 1e6 * statistics.median(values) / n for name, values in samples.items()}
        print(f"{n:,} {MODEL} inferences from {args.senders} senders, {len(raw):,} bytes; CPU per inference, "
              f"median of {args.rounds}; load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
        for name, label in (("build", "build_block (proposer, signatures cached)"),
                            ("validate", "validate_block (signatures cached)"),
                            ("commit", "finalize_block after it + batch write"),
                            ("apply", "finalize_block, not validated"),
                            ("index", "chain index of the committed block")):
            spread = 1e6 * (max(samples[name]) - min(samples[name])) / n
            print(f"  {label:<46}{us[name]:8.1f} us   (range {spread:.1f} us)")
        validator = us["validate"] + us["commit"] + us["index"]
        print(f"  {'a validator: validate + commit + index':<46}{validator:8.1f} us")
        print(f"  {'the proposer: build + commit + index':<46}{us['build'] + us['commit'] + us['index']:8.1f} us")


def close_app(app: VMApplication) -> None:
    app.close()
    app.store.close()


if __name__ == "__main__":
    main()
