"""Storing and reading a 64 MiB model: chunk bytes in state leaves (the old layout) against content-addressed
blobs named by hash (node.blobstore + vm.blobrefs), with one fsynced file write as the disk's floor, all
measured in the same run on the same disk.

Run: `python -m bench.blobs [--mib N]`. Each figure is the best of 3; the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.hashing import sha256
from core.state import AuthenticatedMap
from core.types import Hash32
from node.blobstore import FileBlobStore
from node.leveldb import LevelDBStore
from vm.blobrefs import stage_blob_changes
from vm.state import BlobChanges

CHUNK = 256 * 1024


def best_of(fn: Callable[[int], object], repeat: int = 3) -> float:
    best = float("inf")
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    model = np.random.default_rng(1).bytes(args.mib << 20)
    chunks = [model[i:i + CHUNK] for i in range(0, len(model), CHUNK)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def raw_file(i: int) -> None:
            fd = os.open(root / f"raw{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, model)
                os.fsync(fd)
            finally:
                os.close(fd)

        def state_leaves(i: int) -> None:  # before: one state record per chunk, holding its bytes
            with LevelDBStore(root / f"leaves{i}") as db:
                state = AuthenticatedMap(db)
                changes = {b"C" + bytes(32) + n.to_bytes(2, "big"): c for n, c in enumerate(chunks)}
                update = state.compute_update(None, 1, changes)
                with db.write_batch(sync=True) as batch:
                    state.stage(batch, update)

        def blobs(i: int) -> None:  # after: one blob per chunk; the state lists their hashes
            with LevelDBStore(root / f"blobdb{i}") as db:
                store = FileBlobStore(root / f"blobs{i}")
                state = AuthenticatedMap(db)
                new = {bytes(sha256(c)): c for c in chunks}
                update = state.compute_update(None, 1, {b"U" + bytes(32): b"".join(new)})
                with db.write_batch(sync=True) as batch:
                    stage_blob_changes(db, store, batch, BlobChanges(new, dict.fromkeys(new, 1)))
                    state.stage(batch, update)

        t_raw, t_leaves, t_blobs = best_of(raw_file), best_of(state_leaves), best_of(blobs)

        def read_leaves() -> bytes:
            with LevelDBStore(root / "leaves0") as db:
                state = AuthenticatedMap(db)
                parts = [state.get(b"C" + bytes(32) + n.to_bytes(2, "big"), 1) or b"" for n in range(len(chunks))]
            return b"".join(parts)

        digest = sha256(model)
        FileBlobStore(root / "whole").put_blobs({bytes(digest): model})

        def read_blob() -> bytes:
            return FileBlobStore(root / "whole").get_blob(Hash32(digest)) or b""

        assert read_leaves() == model and read_blob() == model
        r_leaves, r_blob = best_of(lambda i: read_leaves()), best_of(lambda i: read_blob())
    mib = args.mib
    print(f"store {mib} MiB in {len(chunks)} chunks (sync)")
    print(f"  one fsynced file (floor)        {t_raw * 1e3:9.1f} ms  {mib / t_raw:8.1f} MiB/s")
    print(f"  state leaves (before)           {t_leaves * 1e3:9.1f} ms  {mib / t_leaves:8.1f} MiB/s  "
          f"{t_leaves / t_raw:5.2f}x the floor")
    print(f"  blobs + hashes in state (after) {t_blobs * 1e3:9.1f} ms  {mib / t_blobs:8.1f} MiB/s  "
          f"{t_blobs / t_raw:5.2f}x the floor, {t_blobs / t_leaves:5.2f}x before")
    print("read the model back (checked by its hash after)")
    print(f"  from state leaves (before)      {r_leaves * 1e3:9.1f} ms")
    print(f"  one blob (after)                {r_blob * 1e3:9.1f} ms  {r_blob / r_leaves:5.2f}x before")


if __name__ == "__main__":
    main()
