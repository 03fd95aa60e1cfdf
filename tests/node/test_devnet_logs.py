"""`devnet logs`: node logs merged in time order with a node prefix (tracebacks stay with their line), and
`-f` printing lines as they are appended, a partly written line only once it is complete."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from node.devnet_logs import follow, merged

pytestmark = pytest.mark.node


def test_logs_merge_in_time_order_and_keep_continuations(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("2026-01-01 00:00:01,000 INFO x: one\n2026-01-01 00:00:03,000 ERROR x: boom\nTraceback (most\n"
                 "  line\n")
    b.write_text("2026-01-01 00:00:02,000 INFO y: two\n2026-01-01 00:00:04,000 INFO y: four\n")
    assert list(merged({"node0": a, "node1": b, "node2": tmp_path / "absent.log"})) == [
        "node0 | 2026-01-01 00:00:01,000 INFO x: one",
        "node1 | 2026-01-01 00:00:02,000 INFO y: two",
        "node0 | 2026-01-01 00:00:03,000 ERROR x: boom",
        "node0 | Traceback (most",
        "node0 |   line",
        "node1 | 2026-01-01 00:00:04,000 INFO y: four",
    ]


def test_follow_prints_appended_lines_once_complete(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text("old line\n")
    seen: list[str] = []
    done = threading.Event()
    worker = threading.Thread(target=follow, args=({"node0": log}, seen.append),
                              kwargs={"stop": done.is_set, "from_start": True})
    worker.start()
    try:
        with open(log, "a") as f:
            f.write("new li")
            f.flush()
            time.sleep(0.5)
            f.write("ne\nsecond\n")
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        worker.join(timeout=5)
    assert seen == ["node0 | old line", "node0 | new line", "node0 | second"]
