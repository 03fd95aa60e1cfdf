"""The bounded spin-wait of the pool-worker channel (vm/sandbox/channel.py `SpinWait`): it sees a message that
arrives while it polls, never waits past the caller's timeout, sleeps through most of a wait it expects to be
long but wakes for a message that comes early, rehearses the caller's read once between that sleep and the spin, turns itself off while its core is contended
(a real CPU hog on the same core), comes back after its back-off, and never spins on a single core; the pool
spins only for a batch its last hand-off says will be answered within the spin's bound, with the same results.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from vm.models import load_model
from vm.sandbox.channel import Channel, SpinWait
from vm.sandbox.executor import InferJob, LocalExecutor, ModelPackage
from vm.sandbox.worker import REPLY_SPIN_S, WorkerPool

pytestmark = pytest.mark.vm

_TWO_CORES = len(os.sched_getaffinity(0)) >= 2


def _pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(a), Channel(b)


def test_a_spin_sees_a_message_that_arrives_while_it_polls() -> None:
    sender, receiver = _pair()
    spin = SpinWait(30.0)  # longer than any scheduling delay of the sending thread
    if not _TWO_CORES:  # the rule for one core: never spin, the blocking wait still gets the message
        assert spin.limit_s == 0.0
    arrived = threading.Event()

    def write() -> None:
        arrived.wait(10)
        sender.send(("job", 1))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        arrived.set()
        assert receiver.poll(30.0, spin)
        assert receiver.recv() == ("job", 1)
    finally:
        writer.join(30)
    assert not writer.is_alive()
    if _TWO_CORES:
        assert (spin.spins, spin.hits) == (1, 1)
    sender.close()
    receiver.close()


def test_a_spin_never_outlasts_the_callers_timeout() -> None:
    sender, receiver = _pair()
    spin = SpinWait(30.0)
    assert not receiver.poll(0.02, spin)  # nothing sent: returns after the 20 ms timeout, not the 30 s spin
    assert spin.hits == 0
    sender.send(("late", 2))
    assert receiver.poll(0.0, spin)
    assert receiver.recv() == ("late", 2)
    sender.close()
    receiver.close()


def test_a_message_expected_later_is_waited_for_asleep_and_the_nap_ends_when_it_arrives() -> None:
    sender, receiver = _pair()
    spin = SpinWait(30.0)
    # Expected in 10 s: asleep until LEAD_S before then, but never past the caller's 20 ms timeout.
    assert not receiver.poll(0.02, spin, expect_s=10.0)
    assert spin.hits == 0
    naps_over = threading.Event()

    def write() -> None:
        naps_over.wait(10)
        sender.send(("early", 3))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        naps_over.set()
        spins = spin.spins
        assert receiver.poll(30.0, spin, expect_s=20.0)  # arrives during the nap: seen then, not 20 s later
        assert receiver.recv() == ("early", 3)
        assert spin.spins == spins  # the nap saw it; no spin began
    finally:
        writer.join(30)
    assert not writer.is_alive()
    sender.close()
    receiver.close()


def test_the_rehearsal_runs_once_between_the_nap_and_the_spin_and_never_when_the_nap_saw_the_message() -> None:
    sender, receiver = _pair()
    spin = SpinWait(30.0)
    calls: list[float] = []
    rehearse = lambda: calls.append(time.monotonic())  # noqa: E731
    start = time.monotonic()
    # Expected in 5 ms: asleep until LEAD_S before then, one rehearsal, then a spin until the 50 ms timeout.
    assert not receiver.poll(0.05, spin, expect_s=0.005, rehearse=rehearse)
    if not _TWO_CORES:  # no spin, no nap: the caller's wait is a plain blocking poll
        assert calls == []
        return
    assert len(calls) == 1 and calls[0] - start >= 0.005 - SpinWait.LEAD_S
    sender.send(("now", 4))
    assert receiver.poll(1.0, spin, expect_s=0.005, rehearse=rehearse)  # already there: no nap, no rehearsal
    assert receiver.recv() == ("now", 4)
    assert receiver.poll(0.0, spin, rehearse=rehearse) is False  # nothing expected later: no nap to end
    assert len(calls) == 1
    sender.close()
    receiver.close()


def test_contended_spins_back_off_doubling_and_an_uncontended_one_resets_the_back_off() -> None:
    """The rule before this one (a window of one spin): the back-off's doubling and reset (the window rule's
    decisions: tests/vm/test_sandbox_spin_rule.py)."""
    spin = SpinWait(0.002, rule=SpinWait.OLD_RULE)
    if not _TWO_CORES:
        assert not spin.active(0.0)
        return
    assert spin.active(100.0)
    spin.record(cpu_s=40e-6, wall_s=100e-6, hit=True, now=100.0)  # 40 % of the wall time on the CPU
    assert spin.contended == 1
    assert not spin.active(100.0 + SpinWait.FIRST_BACKOFF_S / 2)
    assert spin.active(100.0 + SpinWait.FIRST_BACKOFF_S)
    spin.record(cpu_s=0.0, wall_s=1e-3, hit=False, now=200.0)
    assert not spin.active(200.0 + SpinWait.FIRST_BACKOFF_S)  # doubled
    assert spin.active(200.0 + 2 * SpinWait.FIRST_BACKOFF_S)
    for i in range(20):
        spin.record(cpu_s=0.0, wall_s=1e-3, hit=False, now=300.0 + i)
    assert not spin.active(319.0 + SpinWait.MAX_BACKOFF_S - 0.01)  # capped, still off just before the cap
    assert spin.active(319.0 + SpinWait.MAX_BACKOFF_S)
    spin.record(cpu_s=1e-3, wall_s=1e-3, hit=True, now=400.0)  # had the core: spinning stays on
    assert spin.active(400.0)
    spin.record(cpu_s=0.0, wall_s=1e-3, hit=False, now=500.0)
    assert spin.active(500.0 + SpinWait.FIRST_BACKOFF_S)  # the back-off started over
    spin.record(cpu_s=0.0, wall_s=5e-6, hit=False, now=600.0)  # too short to judge
    assert spin.active(600.0)
    assert (spin.spins, spin.hits) == (25, 2)


def test_a_spin_on_a_core_another_process_wants_turns_spinning_off() -> None:
    """A real busy process pinned to this thread's core: each spin gets about half the core, so the spins are
    judged contended and spinning stops after TRIP_AFTER of them (the other process is not kept from its share)."""
    spin = SpinWait(0.2)
    if not _TWO_CORES:
        assert spin.limit_s == 0.0
        return
    core = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", "import sys; print(flush=True); sys.stdout.close()\nwhile True: pass"],
                           stdout=subprocess.PIPE)
    try:
        os.sched_setaffinity(hog.pid, {core})
        assert hog.stdout is not None and hog.stdout.readline() == b"\n"  # it runs
        os.sched_setaffinity(0, {core})
        sender, receiver = _pair()
        for _ in range(SpinWait.TRIP_AFTER):
            assert spin.active(time.monotonic())
            assert not receiver.poll(0.2, spin)
        assert spin.contended == SpinWait.TRIP_AFTER and spin.trips == 1
        assert not spin.active(time.monotonic())
        sender.close()
        receiver.close()
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait(10)
        if hog.stdout is not None:
            hog.stdout.close()


def test_the_pool_spins_for_a_short_batch_but_not_for_one_its_last_hand_off_says_is_longer() -> None:
    model = load_model("digits_int8")
    package = ModelPackage(b"digits_int8", model.model_bytes, model.spec, model.golden)
    rng = np.random.default_rng(5)
    jobs = [InferJob(package, {"u": rng.integers(0, 256, (1, 64)).astype(np.uint8)}) for _ in range(1000)]
    expected = [r.outputs["scores"].tolist() for r in LocalExecutor().run_batch(jobs)]  # type: ignore[index]
    # min_share 0: spins even on a contended core, so only the length rule can keep it from spinning.
    with WorkerPool(1, spin_min_share=0.0) as pool:
        assert [r.outputs["scores"].tolist() for r in pool.run_batch(jobs)] == expected  # type: ignore[index]
        long_batch = pool.spin.spins
        assert [r.outputs["scores"].tolist() for r in pool.run_batch(jobs)] == expected  # type: ignore[index]
        if pool.spin.limit_s:  # 1,000 jobs take longer than the 2 ms bound on any machine (>= 5 µs each)
            assert REPLY_SPIN_S < 1000 * 5e-6
            assert pool.spin.spins == long_batch
            pool.run_batch(jobs[:1])  # estimated from the last hand-off: 1/1000 of it, within the bound
            assert pool.spin.spins == long_batch + 1


def test_a_pool_that_rehearses_its_reads_gives_each_job_its_own_outputs_and_leaves_earlier_ones_intact() -> None:
    """Single jobs longer than the spin's bound: the pool naps, reads its last reply again, then spins. Each
    result is that job's (as computed in-process), and a result already returned is not changed by the
    rehearsals (they only read)."""
    model = _slow_model()
    rng = np.random.default_rng(7)
    jobs = [InferJob(model, {"x": rng.random((1, 16, 64, 64), dtype=np.float32)}) for _ in range(6)]
    expected = [r.outputs["y"].tolist() for r in LocalExecutor().run_batch(jobs)]  # type: ignore[index]
    with WorkerPool(1, spin_min_share=0.0) as pool:
        got = []
        for job in jobs:
            for _ in range(2):
                worker = pool._workers[0]
                if worker is not None:  # as if its last job took 2.5 ms: nap ~2 ms, rehearse, spin (the run is longer)
                    worker.seconds_per_job = REPLY_SPIN_S + 0.0005
                got.append(pool.run_batch([job])[0])
        first = [r.outputs["y"].copy() for r in got]  # type: ignore[index]
        assert [r.outputs["y"].tolist() for r in got[::2]] == expected  # type: ignore[index]
        assert [r.outputs["y"].tolist() for r in got[1::2]] == expected  # type: ignore[index]
        assert pool.flat_runs == 11  # the first job carried the model: pickled
        if pool.spin.limit_s:  # two cores: each flat job after the first napped, then read its last reply again
            assert pool.rehearsals == 10
        pool.run_batch([jobs[0]])
        assert all(np.array_equal(r.outputs["y"], f) for r, f in zip(got, first, strict=True))  # type: ignore[index]


def _slow_model() -> ModelPackage:
    """A float conv net whose run takes several ms, far longer than REPLY_SPIN_S (3x3 convs 16->64->64 channels
    on 64x64: ~190 M MACs)."""
    from onnx import TensorProto, helper, numpy_helper

    from vm.sandbox.canonicalize import canonicalize
    from vm.sandbox.spec import ArraySpec, CompareMode, ModelSpec, Tolerance

    w = numpy_helper.from_array((np.random.default_rng(1).standard_normal((64, 16, 3, 3)) * 0.05).astype(np.float32),
                                "w")
    w2 = numpy_helper.from_array((np.random.default_rng(2).standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32),
                                 "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["c", "w2"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("ReduceMean", ["c2"], ["y"], axes=[2, 3], keepdims=0)], "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 16, 64, 64))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 64))], [w, w2])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    model_bytes = canonicalize(onnx_model.SerializeToString(), {"x": (1, 16, 64, 64)})
    spec = ModelSpec((ArraySpec("x", "float32", (1, 16, 64, 64)),), CompareMode.TOLERANT, 16, Tolerance(64, 200))
    return ModelPackage(b"slow-conv", model_bytes, spec)
