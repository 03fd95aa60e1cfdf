"""All spec vectors as {path under tests/vectors: bytes}, and writing or checking them on disk."""

from __future__ import annotations

from pathlib import Path

from tools.vectors import models, poi, state, wire
from tools.vectors.world import build_world

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"
GENERATED_SUFFIX = ".json"  # every generated file; README.md and other notes are written by hand


def generate() -> dict[str, bytes]:
    world = build_world()
    try:
        files = {**wire.generate(world, REPO_ROOT), **state.generate(), **poi.generate(world),
                 **models.generate(world)}
    finally:
        world.app.close()
    return dict(sorted(files.items()))


def on_disk(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob(f"*{GENERATED_SUFFIX}")) if p.is_file()}


def differences(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[str]:
    """What differs between generated and stored files, one line each."""
    lines = [f"missing: {p}" for p in expected if p not in actual]
    lines += [f"stale: {p}" for p in actual if p not in expected]
    lines += [f"differs: {p}" for p in expected if p in actual and actual[p] != expected[p]]
    return lines


def write(out: Path, files: dict[str, bytes]) -> list[str]:
    """Write `files` under `out` and delete generated files that are no longer produced; returns the changes."""
    changes = differences(files, on_disk(out)) if out.exists() else [f"missing: {p}" for p in files]
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    for rel in on_disk(out):
        if rel not in files:
            (out / rel).unlink()
    return changes
