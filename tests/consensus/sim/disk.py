"""File-backed WAL and sign state for simulated nodes, with crashes that tear the WAL's unsynced tail."""

from __future__ import annotations

import os
import random
from pathlib import Path

from consensus.events import Event, NewHeight
from consensus.signer import FileSignState
from consensus.wal import FileWAL


class DiskWAL:
    """A FileWAL that remembers how much of it was fsynced, so a simulated power cut can tear the rest."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.wal = FileWAL(path)
        self.synced = os.path.getsize(path) if path.exists() else 0
        self.torn = 0

    def append(self, event: Event, *, sync: bool = False) -> None:
        self.wal.append(event, sync=sync)
        if sync or isinstance(event, NewHeight):
            self.synced = os.path.getsize(self.path)

    def sync(self) -> None:
        self.wal.sync()
        self.synced = os.path.getsize(self.path)

    def replay(self) -> list[Event]:
        return self.wal.replay()

    def crash(self, *, power_loss: bool = False) -> None:
        """Close as a killed process would; on power loss keep the synced part plus a random torn prefix of
        what followed, then reopen (which cuts the torn record)."""
        self.wal.close()
        if power_loss:
            size = os.path.getsize(self.path)
            keep = self.synced + self.rng.randint(0, size - self.synced)
            if keep < size:
                self.torn += 1
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
        self.wal = FileWAL(self.path)

    def close(self) -> None:
        self.wal.close()


def disk_storage(directory: Path, index: int, rng: random.Random) -> tuple[DiskWAL, FileSignState]:
    directory.mkdir(parents=True, exist_ok=True)
    return DiskWAL(directory / f"wal-{index}", rng), FileSignState(directory / f"sign-state-{index}")
