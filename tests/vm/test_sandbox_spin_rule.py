"""The spin-wait's contention rule (vm/sandbox/channel.py `SpinWait.record`), judged with a given clock: one
contended spin among uncontended ones (a timer interrupt, one short preemption on an idle machine) leaves
spinning on; TRIP_AFTER contended spins within the last WINDOW judged ones (a core another task wants) turn it
off for the back-off, which doubles on each further trip and starts over once the window holds no contended
spin; `gate` counts the waits the rule made block. No timing is asserted: every clock value is given."""

from __future__ import annotations

import os

import pytest

from vm.sandbox.channel import SpinWait

pytestmark = pytest.mark.vm

_TWO_CORES = len(os.sched_getaffinity(0)) >= 2
_WALL = 1e-3
_SHARED = 0.4 * _WALL  # 40 % of the spin's wall time on the CPU: contended
_ALONE = _WALL


def _spin() -> SpinWait:
    spin = SpinWait(0.002)
    if not _TWO_CORES:
        pytest.fail("these decisions need two usable cores (a one-core SpinWait never spins)")
    return spin


def test_one_contended_spin_among_uncontended_ones_leaves_spinning_on() -> None:
    spin = _spin()
    now = 100.0
    for i in range(40):  # one preemption every WINDOW spins: never TRIP_AFTER in a window
        now += 0.001
        spin.record(_SHARED if i % SpinWait.WINDOW == 0 else _ALONE, _WALL, True, now)
        assert spin.gate(now)
    assert spin.contended == 5 and spin.trips == 0 and spin.gated == 0


def test_the_old_rule_turns_spinning_off_on_a_single_contended_spin() -> None:
    spin = SpinWait(0.002, rule=SpinWait.OLD_RULE)
    if not _TWO_CORES:
        pytest.fail("these decisions need two usable cores")
    spin.record(_ALONE, _WALL, True, 100.0)
    spin.record(_SHARED, _WALL, True, 100.001)
    assert spin.trips == 1
    assert not spin.gate(100.002) and spin.gated == 1


def test_trip_after_contended_spins_in_the_window_turns_spinning_off_for_the_back_off() -> None:
    spin = _spin()
    now = 100.0
    for _ in range(SpinWait.TRIP_AFTER - 1):
        spin.record(_SHARED, _WALL, True, now)
        assert spin.gate(now)
    spin.record(_ALONE, _WALL, True, now)  # an uncontended spin in between: the window still counts them
    spin.record(_SHARED, _WALL, False, now)
    assert spin.trips == 1 and list(spin.contended_shares) == [0.4] * SpinWait.TRIP_AFTER
    assert not spin.gate(now + SpinWait.FIRST_BACKOFF_S / 2)
    assert spin.gated == 1
    assert spin.gate(now + SpinWait.FIRST_BACKOFF_S)


def test_contended_spins_that_left_the_window_do_not_count() -> None:
    spin = _spin()
    now = 100.0
    for _ in range(SpinWait.TRIP_AFTER - 1):
        spin.record(_SHARED, _WALL, True, now)
    for _ in range(SpinWait.WINDOW - SpinWait.TRIP_AFTER + 2):  # pushes the first contended one out
        spin.record(_ALONE, _WALL, True, now)
    spin.record(_SHARED, _WALL, True, now)
    assert spin.trips == 0 and spin.gate(now)


def _tripped_once() -> tuple[SpinWait, float]:
    """A rule that tripped once on TRIP_AFTER contended spins, and the clock at the end of its back-off."""
    spin = _spin()
    for _ in range(SpinWait.TRIP_AFTER):
        spin.record(_SHARED, _WALL, False, 100.0)
    assert spin.trips == 1
    return spin, 100.0 + SpinWait.FIRST_BACKOFF_S


def test_the_back_off_doubles_on_each_further_trip_and_starts_over_once_the_window_is_clean() -> None:
    spin, now = _tripped_once()
    assert spin.gate(now)
    spin.record(_SHARED, _WALL, False, now)  # one contended spin after the back-off: the trip's spins are spent
    assert spin.trips == 1 and spin.gate(now)
    spin.record(_SHARED, _WALL, False, now)  # still contended: off again, twice as long
    assert spin.trips == 2
    assert not spin.gate(now + 2 * SpinWait.FIRST_BACKOFF_S - 1e-3)
    assert spin.gate(now + 2 * SpinWait.FIRST_BACKOFF_S)
    for _ in range(30):  # capped
        now += SpinWait.MAX_BACKOFF_S
        spin.record(_SHARED, _WALL, False, now)
        spin.record(_SHARED, _WALL, False, now)
    assert spin.trips == 32
    assert not spin.gate(now + SpinWait.MAX_BACKOFF_S - 1e-3) and spin.gate(now + SpinWait.MAX_BACKOFF_S)
    now += SpinWait.MAX_BACKOFF_S
    for _ in range(SpinWait.WINDOW):  # the core is free again: a clean window
        spin.record(_ALONE, _WALL, True, now)
    for _ in range(SpinWait.TRIP_AFTER):
        spin.record(_SHARED, _WALL, False, now)
    assert not spin.gate(now + SpinWait.FIRST_BACKOFF_S / 2) and spin.gate(now + SpinWait.FIRST_BACKOFF_S)


def test_after_a_back_off_single_preemptions_leave_spinning_on() -> None:
    """A quiet machine's pattern after one trip: an interrupt now and then. Kept, the trip's contended spins
    made each such preemption a new trip with a doubled back-off."""
    spin, now = _tripped_once()
    for i in range(10 * SpinWait.WINDOW):  # one preemption every WINDOW spins
        now += 0.001
        assert spin.gate(now)
        spin.record(_SHARED if i % SpinWait.WINDOW == 0 else _ALONE, _WALL, True, now)
    assert spin.trips == 1 and spin.gated == 0


def test_spins_too_short_to_judge_count_neither_way() -> None:
    spin = _spin()
    for _ in range(SpinWait.WINDOW):
        spin.record(0.0, 5e-6, False, 100.0)
    assert spin.contended == 0 and spin.trips == 0 and spin.gate(100.0)
    assert (spin.spins, spin.hits) == (SpinWait.WINDOW, 0)


def test_a_rule_outside_its_window_is_refused() -> None:
    with pytest.raises(ValueError):
        SpinWait(0.002, rule=(4, 5))
    with pytest.raises(ValueError):
        SpinWait(0.002, rule=(8, 0))


def test_a_worker_describes_its_rule_counts_and_its_collections() -> None:
    """The census benches read: the worker's spins, trips, blocked waits and contended shares, and its
    collections by generation with the time spent in them, through describe()."""
    import numpy as np

    from vm.models import load_model
    from vm.sandbox.executor import InferJob, ModelPackage
    from vm.sandbox.worker import WorkerPool

    model = load_model("digits_int8")
    package = ModelPackage(b"digits_int8", model.model_bytes, model.spec, model.golden)
    job = InferJob(package, {"u": np.random.default_rng(1).integers(0, 256, (1, 64)).astype(np.uint8)})
    with WorkerPool(1) as pool:
        for _ in range(20):
            pool.run_batch([job])
        (info,) = pool.describe()
    assert {"spins", "spin_hits", "spins_contended", "spin_trips", "spin_gated"} <= info.keys()
    assert info["spin_trips"] <= info["spins_contended"] <= info["spins"]
    assert all(0.0 <= share < SpinWait.MIN_SHARE for share in info["spin_contended_shares"])
    assert len(info["gc_collections"]) == 3 and len(info["gc_seconds"]) == 3
    assert sum(info["gc_collections"]) >= 1  # the model's load and check allocate enough for one at least
    assert pool.spin.trips <= pool.spin.contended
