"""What a big registration costs a validator's block path: the completing block's validation when it runs the
check there (the synchronous path) against when it only queues the model (deferred activation,
vm/deferred.py), and the activation block's validation with and without the node's background precompute
(node/precompute.py: the verdict is then in the check memo).

The deferred completing block twice more: recomputed (the validator reads, hashes and parses the model, as
main did on every execution) against prepared (the node assembled the upload ahead, node/uploadahead.py: the
facts in the memo, vm/assembly.py, and the model's blob already stored by both nodes), and its commit on
both nodes (wall time: each writes and fsyncs the model's blob unless it holds it).

One validator (real LevelDB, a file blob store, the in-process sandbox) of a 2-node devnet; a MatMul model of
MIB MiB of random weights, tolerant, one golden input. The deferred runs lower `vm.defer_check_gas_over` to 10M
so that the same model takes that path. Printed: CPU seconds (medians), ratios against the synchronous
completing block measured in the same run, and the load average.

    .venv/bin/python -m bench.deferred [--mib 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from bench.synth import Synth, weights
from core.tensor import DType
from node.blobstore import FileBlobStore
from tests.vm.deferred_models import upload
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import meta_for, spec
from vm.assembly import prepare_assembly
from vm.sandbox.executor import LocalExecutor
from vm.txs import ModelClass, split_model


def _run(tmp: Path, synth: Synth, mode: str) -> tuple[float, float, float]:
    """CPU seconds of the validator's validation of the completing block, wall seconds of its commit on both
    nodes, and CPU
    seconds of its validation of the activation block (0 on the synchronous path). `mode`: sync, deferred (no
    precompute), precomputed, or prepared (the upload assembled ahead, no precompute)."""
    output = onnx.load_from_string(synth.model_bytes).graph.output[0].name
    meta = meta_for(synth.name, synth.model_bytes, [spec(synth.input_name, DType.FLOAT32, synth.input_shape)],
                    [spec(output, DType.FLOAT32, synth.output_shape)], ModelClass.TOLERANT, [[synth.sample(1)]],
                    grid_k=16, tol_abs=64, tol_rel_ppm=1000)
    vm = {} if mode == "sync" else {"defer_check_gas_over": 10_000_000}
    net = Devnet.start(tmp, devnet_genesis(vm=vm), nodes=2, blobs=lambda i: FileBlobStore(tmp / f"blobs{i}"))
    try:
        validator = net.apps[1]
        txs = upload(net, net.account(5), synth.model_bytes, meta)
        net.step_until_landed(txs[:-1])
        if mode == "prepared":  # what node/uploadahead.py does once the last chunk is in the mempool
            chunks = split_model(synth.model_bytes, meta, 256 * 1024)
            assert chunks[0].header is not None
            for app in net.apps:  # each node's own preparation: its memo, its blob
                whole = prepare_assembly(chunks[0].header, [c.data for c in chunks], app.assembly_memo)
                assert whole is not None
                app.blobs.put_blobs({bytes(chunks[0].header.bytes_hash): whole})
        completing = net.propose(txs[-1:])
        assert len(completing.txs) == 1 and completing.results[0].status.name == "OK", completing.results
        # Not prepared: the builder's miss memoized it in its own application's memo only; the validator
        # recomputes, as on main.
        start = time.process_time()
        assert validator.validate_block(completing).is_valid
        first = time.process_time() - start
        start = time.perf_counter()
        net.commit(completing)  # both nodes: the builder's and the validator's (only the validator prepared)
        commit = time.perf_counter() - start
        if mode in ("sync", "prepared"):  # prepared: its activation is the deferred mode's
            return first, commit, 0.0
        activates_at = int.from_bytes(completing.results[0].data, "big")
        if mode == "precomputed":  # what the node's background task does between the two blocks
            assert validator.precompute_deferred(LocalExecutor()) == 1
        while net.height < activates_at - 1:
            net.step()
        activation = net.propose()
        start = time.process_time()
        assert validator.validate_block(activation).is_valid
        second = time.process_time() - start
        net.commit(activation)
        return first, commit, second
    finally:
        net.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16, help="weights of the model, MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    synth = weights(args.mib << 20)
    runs: dict[str, list[tuple[float, float, float]]] = {"sync": [], "deferred": [], "precomputed": [],
                                                          "prepared": []}
    for _ in range(args.repeat):
        for mode, out in runs.items():
            with tempfile.TemporaryDirectory() as tmp:
                out.append(_run(Path(tmp), synth, mode))
    load = os.getloadavg()
    base = float(np.median([r[0] for r in runs["sync"]]))
    print(f"model {synth.name}, {len(synth.model_bytes) / (1 << 20):.1f} MiB, {args.repeat} rounds back to back, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"  completing block, check in it (sync)        median {base:7.3f} s CPU   ratio 1.000")
    for mode in ("deferred", "precomputed", "prepared"):
        first = float(np.median([r[0] for r in runs[mode]]))
        print(f"  completing block, queued ({mode:<11})   median {first:7.3f} s CPU   ratio {first / base:.3f}")
    commit = float(np.median([r[1] for r in runs["deferred"]]))
    for mode in ("deferred", "prepared"):
        wall = float(np.median([r[1] for r in runs[mode]]))
        print(f"  its commit ({mode:<11})                 median {wall:7.3f} s wall  ratio {wall / commit:.3f} "
              "(both nodes; against deferred)")
    for mode in ("deferred", "precomputed"):
        second = float(np.median([r[2] for r in runs[mode]]))
        print(f"  activation block ({mode:<11})          median {second:7.3f} s CPU   ratio {second / base:.3f}")

if __name__ == "__main__":
    main()
