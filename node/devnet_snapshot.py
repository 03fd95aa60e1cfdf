"""Devnet snapshots: a copy of every node home taken at one instant, restored as a whole.

A snapshot of a running devnet pauses every node (SIGSTOP to each node's process group, sandbox workers
included), copies genesis, the manifest and every home, then resumes them (SIGCONT). All nodes are frozen
at the same moment, so the copy is what a simultaneous crash of the whole devnet would leave on disk; a
restored devnet starts the way nodes restart after SIGKILL (LevelDB and WAL recovery), and no node can have
signed anything the others' copies do not know of. A stopped devnet is copied as it is.

Snapshots live beside the devnet directory (`.devnet-snapshots/NAME`), so `devnet up --reset` keeps them.
Restoring needs a stopped devnet and replaces its genesis, manifest and homes with the snapshot's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node.devnet import MANIFEST, Devnet, DevnetError

INFO = "snapshot.json"
SKIPPED = ("node.log",)  # logs stay with the devnet that wrote them


def snapshots_root(net: Devnet) -> Path:
    return net.root.parent / f"{net.root.name}-snapshots"


def validate_snapshot_name(name: str) -> None:
    if not name or len(name) > 64 or name.startswith(".") or not all(c.isalnum() or c in "-_." for c in name):
        raise DevnetError(f"invalid snapshot name {name!r}: use letters, digits, '-', '_' and '.' (at most 64)")


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    """Every process group in `pids` stopped for the duration; continued whatever happens inside."""
    stopped = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGCONT)


def _node_dirs(net: Devnet) -> list[Path]:
    return sorted(p for p in net.root.glob("node*") if p.is_dir())


def take_snapshot(net: Devnet, name: str, *, height: int | None = None) -> dict[str, Any]:
    """Copy the devnet (pausing its nodes if they run) to snapshots_root/NAME; refuses an existing name."""
    validate_snapshot_name(name)
    target = snapshots_root(net) / name
    if target.exists():
        raise DevnetError(f"a snapshot named {name!r} exists ({target}); snapshots are never overwritten")
    if net.load_manifest() is None:
        raise DevnetError(f"no devnet in {net.root} (start one with `inferchain devnet up`)")
    nodes = {k: v for k, v in net.running_pids().items() if k.startswith("node")}
    staging = target.with_name(f".{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with paused(sorted(nodes.values())):
            shutil.copy2(net.genesis_path, staging / "genesis.json")
            shutil.copy2(net.root / MANIFEST, staging / MANIFEST)
            for home in _node_dirs(net):
                shutil.copytree(home, staging / home.name, ignore=shutil.ignore_patterns(*SKIPPED), symlinks=True)
        info = {"name": name, "taken": int(time.time()), "height": height, "running": bool(nodes),
                "nodes": [p.name for p in _node_dirs(net)]}
        (staging / INFO).write_text(json.dumps(info, indent=2) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def list_snapshots(net: Devnet) -> list[dict[str, Any]]:
    root = snapshots_root(net)
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            info = json.loads((path / INFO).read_text())
        except (OSError, ValueError):
            info = {"name": path.name, "error": "unreadable snapshot.json"}
        out.append({**info, "path": str(path)})
    return out


def restore_snapshot(net: Devnet, name: str) -> dict[str, Any]:
    """Replace the (stopped) devnet's genesis, manifest and homes with snapshot NAME's."""
    validate_snapshot_name(name)
    source = snapshots_root(net) / name
    if not (source / INFO).is_file():
        raise DevnetError(f"no snapshot named {name!r} in {snapshots_root(net)} (see `inferchain devnet snapshots`)")
    if net.running_pids():
        raise DevnetError("the devnet is running; stop it first (`inferchain devnet down`, or Ctrl-C), "
                          "then restore and start it again")
    info: dict[str, Any] = json.loads((source / INFO).read_text())
    net.root.mkdir(parents=True, exist_ok=True)
    for home in _node_dirs(net):
        log = home / "node.log"
        kept = log.read_bytes() if log.exists() else None
        shutil.rmtree(home)
        if kept is not None:
            home.mkdir()
            log.write_bytes(kept)
    for item in sorted(source.iterdir()):
        if item.name == INFO:
            continue
        if item.is_dir():
            shutil.copytree(item, net.root / item.name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(item, net.root / item.name)
    return info
