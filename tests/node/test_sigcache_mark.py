"""`SigCache.mark_verified`, one key at a time: a new key goes in last, a known one moves to the end, and the
cache keeps its capacity by dropping the least recently used."""

from __future__ import annotations

import pytest

from node.sigcache import SigCache

pytestmark = pytest.mark.node


def test_mark_verified_keeps_the_most_recent_keys_within_capacity() -> None:
    cache = SigCache(capacity=3)
    for key in (b"a", b"b", b"c"):
        cache.mark_verified(key)
    cache.mark_verified(b"a")  # known: moves to the end, so "b" is now the oldest
    cache.mark_verified(b"d")
    assert len(cache) == 3
    assert b"b" not in cache and all(key in cache for key in (b"a", b"c", b"d"))
    cache.mark_verified(b"e")
    assert b"c" not in cache and all(key in cache for key in (b"a", b"d", b"e"))
