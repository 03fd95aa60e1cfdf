"""Frames cut out of chunked reads (p2p/frames.py): any split of the bytes gives the same frames, limits hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.utils.varint import encode_varint_prefixed

from p2p.frames import FrameBuffer

pytestmark = [pytest.mark.p2p]


@given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(1, 400), max_size=30))
def test_any_split_of_the_bytes_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_varint_prefixed(p) for p in payloads)
    frames = FrameBuffer(limit=1000)
    got: list[bytes] = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        frames.feed(wire[pos:pos + cut])
        pos += cut
        got += frames.take()
    frames.feed(wire[pos:])
    got += frames.take()
    assert got == payloads
    assert len(frames) == 0


def test_a_declared_length_over_the_limit_is_refused_before_its_body_arrives() -> None:
    frames = FrameBuffer(limit=100)
    frames.feed(encode_varint_prefixed(b"x" * 100))
    assert frames.take() == [b"x" * 100]
    frames.feed(encode_varint_prefixed(b"y" * 101)[:3])  # the prefix alone
    with pytest.raises(MessageTooLarge):
        frames.take()


def test_a_prefix_longer_than_a_64_bit_varint_is_refused() -> None:
    frames = FrameBuffer(limit=100)
    frames.feed(b"\xff" * 11)
    with pytest.raises(ParseError):
        frames.take()
