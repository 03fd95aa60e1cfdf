"""Validating the next round's block that holds the same completing model chunk (issue 11: a large model's
registration decided only in round 4, every round's new proposal checked again from scratch).

One validator (real LevelDB, the in-process sandbox) validates round 0's block, then round 1's block at the
same height: same completing chunk, another header. Printed: CPU seconds of round 1's validation with the
registration-check memo (vm/checkmemo.py) against the same validation with the sandbox called directly (the
code before the memo), measured back to back in this run, with the load average.

    .venv/bin/python -m bench.check_memo [--model resnet50|MIB] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from bench.synth import Synth, resnet50, weights
from core.app import BlockTemplate
from core.tensor import DType
from core.types import Timestamp
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.helpers import meta_for, spec, upload_txs
from vm.sandbox.limits import DEFAULT_LIMITS
from vm.txs import ModelClass


def _synth(model: str) -> Synth:
    if model == "resnet50":
        return resnet50(DEFAULT_LIMITS)
    return weights(int(model) << 20)


def _round1_cpu(tmp: Path, synth: Synth, memo: bool) -> tuple[float, float, int]:
    """CPU seconds of validating round 0's block and round 1's, and the model's size."""
    output = onnx.load_from_string(synth.model_bytes).graph.output[0].name
    meta = meta_for(synth.name, synth.model_bytes, [spec(synth.input_name, DType.FLOAT32, synth.input_shape)],
                    [spec(output, DType.FLOAT32, synth.output_shape)], ModelClass.TOLERANT, [[synth.sample(1)]],
                    grid_k=16, tol_abs=64, tol_rel_ppm=1000)
    net = Devnet.start(tmp, devnet_genesis(), nodes=2)
    try:
        validator = net.apps[1]
        if not memo:  # the code before the memo: the engine hands checks to the sandbox itself
            validator.engine.executor = validator.executor
        txs = upload_txs(net.account(5), synth.model_bytes, meta, params=net.genesis.params,
                         chain_id=net.genesis.chain_id, first_nonce=0)
        net.step_until_landed(txs[:-1])
        round0 = net.propose(txs[-1:])
        assert len(round0.txs) == 1 and round0.results[0].status.name == "OK", round0.results
        t = net.template()
        round1 = net.apps[0].build_block(BlockTemplate(t.chain_id, t.height, t.round, Timestamp(int(t.time) + 3000),
                                                       t.proposer, t.last_block_id, t.last_commit, t.evidence),
                                         txs[-1:])
        start = time.process_time()
        assert validator.validate_block(round0).is_valid
        first = time.process_time() - start
        start = time.process_time()
        assert validator.validate_block(round1).is_valid
        second = time.process_time() - start
        return first, second, len(synth.model_bytes)
    finally:
        net.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50",
                        help="resnet50 (onnx's light_resnet50, canonical) or a size in MiB (a MatMul's weights)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    before, after, r0 = [], [], []
    size = 0
    synth = _synth(args.model)
    for _ in range(args.repeat):
        for memo in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                first, second, size = _round1_cpu(Path(tmp), synth, memo)
            (after if memo else before).append(second)
            r0.append(first)
    load = os.getloadavg()
    print(f"model {synth.name}, {size / (1 << 20):.1f} MiB, {args.repeat} pairs back to back, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"  round 0 validation (check runs)     median {np.median(r0):7.3f} s CPU")
    print(f"  round 1 validation, no memo         median {np.median(before):7.3f} s CPU")
    print(f"  round 1 validation, memo            median {np.median(after):7.3f} s CPU   "
          f"ratio {np.median(after) / np.median(before):.3f}")


if __name__ == "__main__":
    main()
