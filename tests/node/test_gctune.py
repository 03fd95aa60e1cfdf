"""The node process's garbage-collector setting (node/gctune.py): a real node runs with the tuned thresholds
and its start-up heap frozen, reports both and its collections' time in `/metrics`, and `INFERCHAIN_GC`
chooses the interpreter's defaults instead or is refused with a one-line error.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.errors import ConfigError
from node import gctune
from tests.realnet.fixture import realnet_fixture
from tests.realnet.network import RealNet

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]

net = realnet_fixture(validators=1, ready_height=2)


def scrape(net: RealNet) -> dict[str, float]:
    text = httpx.get(net.rpc_urls()[0] + "/metrics", timeout=10).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(inferchain_gc_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def test_a_node_process_runs_with_the_tuned_collector_and_reports_it(net: RealNet) -> None:
    net.wait_height(4)  # some blocks under the setting: the node has allocated and collected since start-up
    m = scrape(net)
    assert [m[f'inferchain_gc_threshold{{generation="{g}"}}'] for g in range(3)] == list(gctune.THRESHOLDS)
    assert m["inferchain_gc_frozen_objects"] > 50_000  # imports, genesis and stores: never scanned again
    # Frozen again after each commit (node/gctune.py, CommitFreezer): a collection would walk only what the
    # node allocated since its last commit, not the start-up heap nor anything older.
    assert 0 <= m["inferchain_gc_tracked_objects"] < 20_000
    # Timed collections (none need run: start-up allocates less than 250,000 containers, and each commit's
    # freeze zeroes the young count).
    assert m['inferchain_gc_collections_total{generation="0"}'] >= 0
    assert m['inferchain_gc_seconds_total{generation="0"}'] >= 0


def test_a_node_given_a_bad_setting_stops_at_once_with_one_line(net: RealNet) -> None:
    out = subprocess.run([sys.executable, "-m", "node.cli", "node", "run", "--home", str(net.spec(0).home)],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, gctune.ENV: "lots"}, check=False)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert [line for line in out.stderr.splitlines() if gctune.ENV in line] != []


def test_INFERCHAIN_GC_python_leaves_the_interpreters_defaults(net: RealNet) -> None:
    # Last of the tests on `net`: node 0 keeps this setting.
    net.restart(0, env={gctune.ENV: "python"})
    m = scrape(net)
    assert [m[f'inferchain_gc_threshold{{generation="{g}"}}'] for g in range(3)] == [700, 10, 10]
    assert m["inferchain_gc_frozen_objects"] == 0
    net.wait_height(net.height(0) + 1)  # and it still commits


@pytest.mark.parametrize("value", ["lots", "0,10,10", "1000,10", "1000,-1,10", "1,2,3,4"])
def test_a_setting_that_names_nothing_is_a_one_line_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=gctune.ENV) as err:
        gctune.get_setting({gctune.ENV: value})
    assert "\n" not in str(err.value)


def test_the_setting_is_read_from_the_environment() -> None:
    assert gctune.get_setting({}) == gctune.TUNED
    assert gctune.get_setting({gctune.ENV: " Tuned "}) == gctune.TUNED
    assert gctune.get_setting({gctune.ENV: "python"}) == gctune.PYTHON
    assert gctune.get_setting({gctune.ENV: "1000,5,0"}).thresholds == (1000, 5, 0)


def test_the_timer_counts_each_collection_by_generation() -> None:
    timer = gctune.GcTimer()
    timer.install()
    timer.install()  # once only
    try:
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect(1)
        gc.collect(2)
    finally:
        timer.uninstall()
    stats = timer.stats()
    assert stats.collections[1] >= 1 and stats.collections[2] >= 1
    assert stats.collected[1] >= 1  # the list that held itself
    assert 0 < stats.max_seconds[2] <= stats.seconds[2]
    gc.collect(0)
    assert timer.stats() == stats  # uninstalled: no longer called


PRELOAD_THEN_COUNT = "import gc; from node import devnet_fork; devnet_fork.preload(); print(gc.get_freeze_count())"


@pytest.mark.parametrize(("value", "frozen"), [("tuned", True), ("python", False)])
def test_a_devnet_supervisor_freezes_its_heap_before_it_forks_nodes(value: str, frozen: bool) -> None:
    out = subprocess.run([sys.executable, "-c", PRELOAD_THEN_COUNT], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, gctune.ENV: value}, check=True)
    assert (int(out.stdout) > 50_000) is frozen


class _Cell:
    """An object that can hold itself: garbage in a cycle once dropped."""

    me: object = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's heap as it was: nothing frozen after the test."""
    yield
    gc.unfreeze()


def _cycle() -> weakref.ref[_Cell]:
    cell = _Cell()
    cell.me = cell
    return weakref.ref(cell)


def test_the_commit_freezer_freezes_what_is_alive_after_each_commit(unfrozen: None) -> None:
    freezer = gctune.CommitFreezer(full_every_txs=10**9, full_every_blocks=10**9)
    held = [object()]
    assert any(o is held for o in gc.get_objects())
    freezer.after_commit(2_500)
    assert not any(o is held for o in gc.get_objects())  # frozen: no collection walks it
    assert gc.get_freeze_count() > 0 and freezer.full_collections == 0


@pytest.mark.parametrize(("every_txs", "every_blocks", "commits"), [(3, 10**9, [1, 1, 1]), (10**9, 2, [0, 0])])
def test_the_commit_freezer_frees_frozen_cycles_at_its_full_collection(unfrozen: None, every_txs: int,
                                                                       every_blocks: int, commits: list[int]) -> None:
    """A cycle that died before a freeze is kept by it (collections skip frozen objects) until the freezer's
    periodic full collection, by committed transactions or by blocks, frees it."""
    freezer = gctune.CommitFreezer(full_every_txs=every_txs, full_every_blocks=every_blocks)
    dead = _cycle()
    for txs in commits[:-1]:
        freezer.after_commit(txs)
        gc.collect()  # a full collection of the unfrozen heap does not reach it
        assert dead() is not None
    freezer.after_commit(commits[-1])
    assert dead() is None and freezer.full_collections == 1
    assert gc.get_freeze_count() > 0  # frozen again after it


def test_the_settings_that_freeze_after_each_commit() -> None:
    assert gctune.commit_freezer(gctune.TUNED) is not None
    assert gctune.commit_freezer(gctune.get_setting({gctune.ENV: "1000,5,0"})) is not None
    assert gctune.commit_freezer(gctune.get_setting({gctune.ENV: "start"})) is None
    assert gctune.commit_freezer(gctune.PYTHON) is None
    freezer = gctune.commit_freezer(gctune.TUNED, {gctune.FULL_ENV: "20000"})
    assert freezer is not None and freezer.full_every_txs == 20_000
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ConfigError, match=gctune.FULL_ENV):
            gctune.commit_freezer(gctune.TUNED, {gctune.FULL_ENV: bad})
