"""The pool-worker socket (vm/sandbox/channel.py): messages arrive whole and in order whatever their size and
however the reads cut them, arrays keep dtype, shape and bytes (and stay writable), a memfd travels with the
message that announces it, and the pool's end never takes a descriptor a worker sends.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading

import numpy as np
import pytest

from vm.sandbox.channel import Channel
from vm.sandbox.handoff import ArrayRef
from vm.sandbox.protocol import ShareArena

pytestmark = pytest.mark.vm


def _pair(accept_fds: bool = False) -> tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(a), Channel(b, accept_fds=accept_fds)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_messages_of_every_size_arrive_whole_and_in_order() -> None:
    sender, receiver = _pair()
    big = np.arange(3 << 18, dtype=np.int32)  # 3 MiB: many reads, straight into a buffer of its size
    messages: list[object] = [("small", i) for i in range(50)]  # many in one read
    messages += [big, ArrayRef("<f4", (2, 3), 64), b"x" * 70_000, ("after", 1)]
    # A thread writes while this one reads: a 3 MiB message does not fit the socket's buffer.
    writer = threading.Thread(target=lambda: [sender.send(m) for m in messages])
    writer.start()
    try:
        received = [receiver.recv() for _ in messages]
    finally:
        writer.join(30)
    assert not writer.is_alive()
    assert received[:50] == messages[:50]
    assert np.array_equal(received[50], big) and received[50].dtype == big.dtype
    assert received[51:] == messages[51:]
    assert not receiver.poll(0)
    sender.close()
    assert receiver.poll(1)
    with pytest.raises(EOFError):
        receiver.recv()
    receiver.close()


@pytest.mark.parametrize("value", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.zeros((0, 5), np.int64),
    np.array(7, np.uint8),
    np.array([True, False]),
    np.arange(10, dtype=np.int16)[::3],  # not contiguous: numpy's own pickling
    np.asfortranarray(np.ones((2, 3))),
    np.frombuffer(bytes(range(16)), np.uint8).reshape(4, 4),  # read-only
    np.array(["text"]),  # not a plain number: still crosses, the worker refuses it as an input mismatch
])
def test_arrays_keep_dtype_shape_and_bytes_and_arrive_writable(value: np.ndarray) -> None:
    sender, receiver = _pair()
    sender.send({"x": value})
    got = receiver.recv()["x"]
    assert got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value)
    assert got.flags.writeable
    sender.close()
    receiver.close()


def test_a_memfd_travels_with_its_message_to_the_worker_end() -> None:
    sender, receiver = _pair(accept_fds=True)
    fd = os.memfd_create("channel-test", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 4096)
        os.pwrite(fd, b"arena", 0)
        sender.send(("before", 0))
        sender.send(ShareArena(4096), (fd,))
        sender.send(("after", 0))
        assert receiver.recv() == ("before", 0)
        assert receiver.recv() == ShareArena(4096)
        received = receiver.take_fd()
        assert received != fd
        with mmap.mmap(received, 4096) as mapped:
            assert mapped[:5] == b"arena"
        os.close(received)
        assert receiver.recv() == ("after", 0)
        with pytest.raises(OSError, match="no file descriptor"):
            receiver.take_fd()
    finally:
        os.close(fd)
        sender.close()
        receiver.close()


def test_the_pool_end_never_takes_a_descriptor_a_worker_sends() -> None:
    worker_end, pool_end = _pair(accept_fds=False)
    fd = os.memfd_create("from-a-worker", os.MFD_CLOEXEC)
    try:
        before = _open_fds()
        for _ in range(20):
            worker_end.send(("reply", 1), (fd,))
        for _ in range(20):
            assert pool_end.recv() == ("reply", 1)
        assert _open_fds() == before  # the kernel dropped them: nothing installed in this process
        assert not pool_end.fds
    finally:
        os.close(fd)
        worker_end.close()
        pool_end.close()


def test_a_stream_cut_mid_message_is_an_eof() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    receiver = Channel(b)
    a.sendall((1000).to_bytes(8, "little") + b"partial")
    a.close()
    with pytest.raises(EOFError):
        receiver.recv()
    receiver.close()


def test_a_length_beyond_the_limit_is_refused_before_allocating() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    receiver = Channel(b)
    a.sendall((1 << 62).to_bytes(8, "little") + b"x")
    with pytest.raises(OSError, match="exceeds the channel's limit"):
        receiver.recv()
    a.close()
    receiver.close()
