"""node.lazyindex against a dict of current keys: random marks, forgets, flushes (whole and in slices) and
reads (heap: `take` below a bound, then `put_back`; no heap: `ordered`) give the keys a sorted list of the
current ones would, and a read leaves the index as it was."""

from __future__ import annotations

import random

import pytest

from node.lazyindex import LazyIndex

pytestmark = pytest.mark.node


@pytest.mark.parametrize(("seed", "heap"), [(s, h) for s in range(4) for h in (True, False)])
def test_reads_give_the_current_keys_in_order(seed: int, heap: bool) -> None:
    rng = random.Random(seed)
    owners = [b"%02d" % i for i in range(40)]
    truth: dict[bytes, tuple[int, int, bytes] | None] = {}
    seq = 0
    index: LazyIndex[tuple[int, int, bytes]] = LazyIndex(lambda owner: truth.get(owner), heap=heap)
    for _ in range(3000):
        op = rng.random()
        owner = rng.choice(owners)
        if op < 0.6:  # the owner's key changes (or goes, or comes back equal to an old one)
            seq += 1
            truth[owner] = None if rng.random() < 0.15 else (rng.randrange(5), rng.choice([seq, seq % 7]), owner)
            index.mark(owner)
        elif op < 0.7:
            truth.pop(owner, None)
            index.forget(owner)
        elif op < 0.8:
            index.flush(rng.choice([None, 1, 3]))
        else:
            index.flush()
            expected = sorted(k for k in truth.values() if k is not None)
            if heap:
                bound = (rng.randrange(6), 0)
                taken = []
                while (key := index.take(bound)) is not None:
                    taken.append(key)
                index.put_back()
                assert taken == [k for k in expected if k < bound]
            assert index.ordered() == expected and index.consistent()
            assert len(index._heap) <= 2 * len(expected) + 64 + 40  # stale keys are dropped or rebuilt away
