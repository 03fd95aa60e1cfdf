"""`python -m tools.vectors [--out DIR] [--check]`: regenerate the spec vectors, or check the stored ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.vectors.generate import VECTORS_DIR, differences, generate, on_disk, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.vectors", description=__doc__)
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="output directory (default: tests/vectors)")
    parser.add_argument("--check", action="store_true", help="compare with the stored files; write nothing")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        diff = differences(files, on_disk(args.out))
        for line in diff:
            print(line)
        print(f"{len(files)} vector files; {'all match' if not diff else f'{len(diff)} differ'}")
        return 1 if diff else 0
    changes = write(args.out, files)
    for line in changes:
        print(line)
    print(f"wrote {len(files)} vector files to {args.out} ({len(changes)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
