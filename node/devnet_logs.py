"""`devnet logs`: the nodes' logs as one stream, each line prefixed with its node.

Node log lines start with their time (`2026-12-06 14:00:00,123 INFO ...`, node.cli.node_cmd), so the files
merge in time order; a line without a time (a traceback's continuation) stays with the line before it.
Following (`-f`) prints new lines as they are written, in the order they are read.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
FOLLOW_POLL_S = 0.2


def _entries(label: str, path: Path) -> Iterator[tuple[str, int, str]]:
    """(time, order, text) per log entry; continuation lines belong to the entry before them."""
    stamp = ""
    with open(path, errors="replace") as f:
        for order, raw in enumerate(f):
            line = raw.rstrip("\n")
            if _STAMP.match(line):
                stamp = line[:23]
            yield stamp, order, f"{label} | {line}"


def merged(logs: dict[str, Path]) -> Iterator[str]:
    """Every existing log's lines, merged by time (ties keep each file's order)."""
    streams = [_entries(label, path) for label, path in sorted(logs.items()) if path.exists()]
    for _, _, text in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
        yield text


def follow(logs: dict[str, Path], emit: Callable[[str], None], *, stop: Callable[[], bool],
           from_start: bool = False) -> None:
    """Print lines appended to the logs (or, with from_start, everything) until `stop()` says so."""
    offsets = {label: (0 if from_start or not path.exists() else path.stat().st_size)
               for label, path in logs.items()}
    partial = dict.fromkeys(logs, "")
    while not stop():
        for label, path in sorted(logs.items()):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[label]:  # truncated or replaced (a restored snapshot): start over
                offsets[label] = 0
            if size == offsets[label]:
                continue
            with open(path, "rb") as f:
                f.seek(offsets[label])
                chunk = f.read(size - offsets[label])
            offsets[label] = size
            text = partial[label] + chunk.decode(errors="replace")
            *lines, partial[label] = text.split("\n")
            for line in lines:
                emit(f"{label} | {line}")
        time.sleep(FOLLOW_POLL_S)
