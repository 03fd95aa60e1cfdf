"""A sandbox worker taken over (an ONNX Runtime exploit in a crafted model) sends the pool a pickle that would
run code in the node: the pool's allow-list unpickler refuses it, discards the worker and serves the next
batch with a fresh one (docs/security.md, "A sandbox worker taken over sends the node a code-running pickle").

The payloads are live: the control test runs one through a plain unpickler and sees the file it creates.
"""

from __future__ import annotations

import os
import pickle
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import vm.sandbox.worker as worker_module
from core.errors import InferenceError, InvalidModel
from vm.models import load_model, model_names
from vm.sandbox.channel import _HEADER, Channel, _array_from, dumps
from vm.sandbox.errors import (
    IndexOutOfRange,
    InputMismatch,
    NonFiniteOutput,
    OffGridOutput,
    UndecodableReply,
    WorkerFault,
)
from vm.sandbox.executor import InferJob, JobResult, LocalExecutor, ModelPackage
from vm.sandbox.handoff import ArrayRef
from vm.sandbox.protocol import (
    REPLY_GLOBALS,
    Described,
    Done,
    Fault,
    GoldenFault,
    Ready,
    SharedOutputs,
)
from vm.sandbox.spec import ArraySpec, CompareMode, ModelInfo
from vm.sandbox.worker import WorkerPool, _well_formed

pytestmark = pytest.mark.vm

_MARKER_ENV = "INFERCHAIN_TEST_HIJACK"  # "<mode> <marker path>" for the hijacked worker


class _Touch:
    """Unpickles as os.system("touch <path>"): what a taken-over worker would run in the node."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(self.path)}",)


class _Eval:
    """Unpickles as builtins.eval(...) creating the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return eval, (f"open({self.path!r}, 'w').close()",)


def _evil_done(payload: object) -> bytes:
    """A reply shaped like a real Done whose one output unpickles as the payload."""
    return dumps(Done(((0, JobResult(outputs={"y": payload})),), None))  # type: ignore[dict-item]


def _frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, Channel]]:
    """A worker's raw socket and the pool's end of it, decoding as the pool does."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = Channel(ours, allowed=REPLY_GLOBALS)
    try:
        yield theirs, channel
    finally:
        channel.close()
        theirs.close()


@pytest.mark.parametrize("make", [_Touch, _Eval])
def test_payload_runs_code_through_a_plain_unpickler(tmp_path: Path, make: type) -> None:
    marker = tmp_path / "pwned"
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    plain = Channel(ours)  # no allow-list: the channel as the pool had it before
    try:
        theirs.sendall(_frame(_evil_done(make(str(marker)))))
        plain.recv()
    finally:
        plain.close()
        theirs.close()
    assert marker.exists()


@pytest.mark.parametrize("make", [_Touch, _Eval])
def test_pool_end_refuses_code_and_stays_in_step(pair: tuple[socket.socket, Channel], tmp_path: Path,
                                                 make: type) -> None:
    theirs, channel = pair
    marker = tmp_path / "pwned"
    theirs.sendall(_frame(_evil_done(make(str(marker)))) + _frame(dumps(Fault("next"))))
    with pytest.raises(UndecodableReply, match="not allowed"):
        channel.recv()
    assert not marker.exists()
    assert channel.recv() == Fault("next")


class _Forged:
    """Unpickles as `call(*args)`: an allowed global called with arguments no honest worker sends."""

    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


@pytest.mark.parametrize("body", [
    pytest.param(dumps(_Forged(_array_from, bytearray(8), "|O", (1,))), id="object-array-from-bytes"),
    pytest.param(dumps(Done(((0, JobResult()),), None))[:-7], id="truncated"),
    pytest.param(b"\x80\x05garbage", id="garbage"),
    pytest.param(pickle.dumps(Path("/"), 5), id="unlisted-class"),
    pytest.param(dumps(_Forged(Ready, 1)), id="wrong-arity"),
])
def test_pool_end_refuses_malformed_bodies(pair: tuple[socket.socket, Channel], body: bytes) -> None:
    theirs, channel = pair
    theirs.sendall(_frame(body) + _frame(dumps(Fault("next"))))
    with pytest.raises(UndecodableReply):
        channel.recv()
    assert channel.recv() == Fault("next")


def test_every_reply_the_protocol_sends_decodes(pair: tuple[socket.socket, Channel]) -> None:
    theirs, channel = pair
    info = _info()
    small = np.arange(6, dtype=np.int64).reshape(2, 3)
    big_endian = np.arange(3, dtype=">f8")  # not raw bytes on the channel: numpy's own pickling
    flags = np.array([True, False])
    verdicts: tuple[InvalidModel | InferenceError, ...] = (
        InvalidModel("why"), InputMismatch("x"), NonFiniteOutput("y"), OffGridOutput("z"), IndexOutOfRange("i"))
    replies: list[object] = [
        Ready(123, ("OMP_NUM_THREADS",), "1.20"),
        Done((
            (0, JobResult(outputs={"y": small, "z": big_endian, "f": flags})),
            (1, JobResult(info=info, golden=({"y": small}, None))),
            (2, SharedOutputs((("y", ArrayRef("<i8", (2, 3), 64)), ("z", small)))),
            *((3 + i, JobResult(error=error)) for i, error in enumerate(verdicts)),
        ), frozenset({b"m1", b"m2"})),
        GoldenFault(b"m1", "differs", None),
        Fault("out of memory", internal=True),
        Described({"pid": 1, "run_seconds": 0.5, "env": ["A"]}),
    ]
    for reply in replies:
        theirs.sendall(_frame(dumps(reply)))
        got = channel.recv()
        assert type(got) is type(reply)
        if isinstance(reply, Done):
            assert isinstance(got, Done)
            for (i, a), (j, b) in zip(reply.results, got.results, strict=True):
                assert i == j and type(a) is type(b)
                if isinstance(a, JobResult) and isinstance(b, JobResult):
                    assert a.info == b.info and type(a.error) is type(b.error) and str(a.error) == str(b.error)
                    for name, value in (a.outputs or {}).items():
                        assert b.outputs is not None and b.outputs[name].dtype == value.dtype
                        np.testing.assert_array_equal(b.outputs[name], value)
            assert got.cached == reply.cached
        else:
            assert got == reply


def _info(**changes: object) -> ModelInfo:
    fields: dict[str, object] = dict(
        sha256=b"\1" * 32, model_class=CompareMode.TOLERANT, inputs=(ArraySpec("x", "float32", (1, 3)),),
        outputs=(ArraySpec("y", "int64", (1,)),), opset=17, gas_per_call=10, macs=3, elementwise_ops=4,
        activation_bytes=5, parameter_bytes=6, node_count=7, op_histogram=(("Add", 1),))
    fields.update(changes)
    return ModelInfo(**fields)  # type: ignore[arg-type]


_SMALL = np.arange(3, dtype=np.int64)


def _unchecked_spec(name: str, dtype: str, shape: tuple[int, ...]) -> ArraySpec:
    """An ArraySpec its __post_init__ would refuse, as a pickle builds it (NEWOBJ + BUILD, no __init__)."""
    spec = object.__new__(ArraySpec)
    for field, value in (("name", name), ("dtype", dtype), ("shape", shape)):
        object.__setattr__(spec, field, value)
    return spec


@pytest.mark.parametrize(("results", "ok"), [
    pytest.param(((0, JobResult(outputs={"y": _SMALL})), (1, JobResult(info=_info()))), True, id="honest"),
    pytest.param(((1, JobResult(info=_info())), (0, JobResult(outputs={"y": _SMALL}))), False, id="reordered"),
    pytest.param(((0, JobResult(outputs={"y": _SMALL})),), False, id="one-missing"),
    pytest.param(((0, JobResult(outputs={"y": np.array([1, "x"], dtype=object)})), (1, JobResult())), False,
                 id="object-array"),
    pytest.param(((0, JobResult(outputs={"y": _SMALL})), (1, JobResult(info=_info(gas_per_call="lots")))), False,
                 id="info-field-type"),
    pytest.param(((0, JobResult(outputs={"y": _SMALL})),
                  (1, JobResult(info=_info(inputs=(_unchecked_spec("x", "object", (1,)),))))), False,
                 id="spec-dtype-unchecked"),
    pytest.param(((0, SharedOutputs((("y", "not an array"),))), (1, JobResult())), False,  # type: ignore[arg-type]
                 id="shared-str"),
    pytest.param(((0, JobResult(error=ValueError("x"))), (1, JobResult())), False,  # type: ignore[arg-type]
                 id="foreign-error"),
])
def test_pool_refuses_done_it_cannot_read(pair: tuple[socket.socket, Channel], results: tuple[object, ...],
                                          ok: bool) -> None:
    """Allowed classes with contents no honest worker sends (a pickle sets fields without the constructors'
    checks): what the pool would read from the Done is checked before it is used."""
    theirs, channel = pair
    theirs.sendall(_frame(dumps(Done(results, None))))  # type: ignore[arg-type]
    try:
        got = channel.recv()
    except UndecodableReply:
        assert not ok
        return
    assert _well_formed(got.results, got.cached, [0, 1]) is ok


# ---- the attack against the real pool -------------------------------------------------------------------


def _hijacked_worker_main(sock: socket.socket, limits: object, *spin: object) -> None:
    """A real worker whose batch replies are replaced on the socket, as a worker taken over through ONNX
    Runtime would write them: `exec` a pickle that touches the marker, `index` an allowed but malformed Done."""
    mode, marker = os.environ[_MARKER_ENV].split(" ", 1)
    real_send = Channel.send

    def send(self: Channel, message: object, fds: tuple[int, ...] = ()) -> None:
        if not isinstance(message, Done):
            real_send(self, message, fds)
        elif mode == "exec":
            self._sock.sendall(_frame(_evil_done(_Touch(marker))))
        else:
            real_send(self, Done(((99, JobResult()),), None))

    Channel.send = send  # type: ignore[method-assign]
    worker_module._worker_main(sock, limits, *spin)  # type: ignore[arg-type]


def _jobs() -> list[InferJob]:
    model = load_model(model_names()[0])
    package = ModelPackage(b"m0", model.model_bytes, model.spec, model.golden)
    spec = model.spec.inputs[0]
    rng = np.random.default_rng(5)
    value = (rng.integers(0, 256, size=spec.shape, dtype=np.uint8) if spec.dtype == "uint8"
             else rng.random(spec.shape, dtype=np.float32))
    return [InferJob(package, {spec.name: value})]


def test_taken_over_worker_cannot_run_code_in_the_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    jobs = _jobs()
    expected = LocalExecutor().run_batch(jobs)
    with WorkerPool(1) as pool:
        real_main = worker_module._worker_main
        for mode, error in (("exec", "not allowed"), ("index", "malformed Done")):
            monkeypatch.setenv(_MARKER_ENV, f"{mode} {marker}")
            monkeypatch.setattr(worker_module, "_worker_main", _hijacked_worker_main)
            with pytest.raises(WorkerFault) as caught:
                pool.run_batch(jobs)
            assert not marker.exists()  # the node ran nothing the worker sent
            assert error in str(caught.value)
            monkeypatch.setattr(worker_module, "_worker_main", real_main)
        results = pool.run_batch(jobs)  # a fresh, honest worker
        assert pool.restarts == 2
    assert not marker.exists()
    assert len(results) == 1 and results[0].outputs is not None and expected[0].outputs is not None
    assert list(results[0].outputs) == list(expected[0].outputs)
    for name, value in expected[0].outputs.items():
        np.testing.assert_array_equal(results[0].outputs[name], value)
