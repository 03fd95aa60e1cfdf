"""The WAL: records with length and CRC, replay from the last NewHeight, torn tail cut, mid-log damage refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.events import NewHeight, TimeoutFired, VoteReceived
from consensus.params import Step
from consensus.proposer import ProposerPriorities
from consensus.wal import FileWAL, MemoryWAL
from core.errors import StorageError
from core.hashing import ZERO_HASH
from core.types import Height, Round, Timestamp
from core.votes import VoteType
from tests.consensus.test_state import make_world, signed_vote

pytestmark = pytest.mark.consensus

WORLD = make_world([1, 2, 3])


def new_height(h: int) -> NewHeight:
    vs = WORLD.validators
    return NewHeight(Timestamp(h), Height(h), ProposerPriorities.genesis(vs), vs.entries, (), ZERO_HASH,
                     Timestamp(1), None)


def events(h: int, n: int) -> list:  # type: ignore[type-arg]
    out: list = [new_height(h)]  # type: ignore[type-arg]
    for i in range(n):
        if i % 2:
            out.append(TimeoutFired(Timestamp(i), Height(h), Round(i), Step.PREVOTE))
        else:
            out.append(VoteReceived(Timestamp(i), signed_vote(WORLD.keys[i % 3], VoteType.PREVOTE, h, i, None)))
    return out


def test_file_wal_replays_the_current_height_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    wal = FileWAL(path)
    for ev in events(1, 5):
        wal.append(ev, sync=isinstance(ev, VoteReceived))
    later = events(2, 4)
    for ev in later:
        wal.append(ev)
    wal.close()
    reopened = FileWAL(path)
    assert reopened.replay() == later
    assert reopened.truncated_bytes == 0
    reopened.close()


def test_a_torn_last_record_is_cut_at_every_possible_offset(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    wal = FileWAL(path)
    evs = events(3, 3)
    for ev in evs:
        wal.append(ev)
    wal.close()
    whole = path.read_bytes()
    full_len = len(whole)
    wal = FileWAL(path)
    last = events(3, 4)[-1]
    wal.append(last)
    wal.close()
    with_last = path.read_bytes()
    for cut in range(full_len + 1, len(with_last)):
        path.write_bytes(with_last[:cut])
        reopened = FileWAL(path)
        assert reopened.replay() == evs, cut
        assert reopened.truncated_bytes == cut - full_len
        reopened.close()
        assert path.read_bytes() == whole
    # A flipped bit in the last record is a torn write too.
    damaged = bytearray(with_last)
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))
    reopened = FileWAL(path)
    assert reopened.replay() == evs
    reopened.close()


def test_damage_before_the_last_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    wal = FileWAL(path)
    for ev in events(1, 4):
        wal.append(ev)
    wal.close()
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError):
        FileWAL(path)


def test_new_height_starts_a_fresh_log(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    wal = FileWAL(path)
    for ev in events(1, 50):
        wal.append(ev)
    size_one = path.stat().st_size
    wal.append(new_height(2))
    assert path.stat().st_size < size_one / 10
    assert wal.replay() == [new_height(2)]
    wal.close()


def test_memory_wal_power_loss_keeps_only_synced_records() -> None:
    wal = MemoryWAL()
    evs = events(1, 4)
    wal.append(evs[0])  # NewHeight is always synced
    wal.append(evs[1], sync=True)
    wal.append(evs[2])
    wal.crash(power_loss=False)
    assert wal.replay() == evs[:3]
    wal.crash(power_loss=True)
    assert wal.replay() == evs[:2]
