"""A scenario: validators, stake, network behaviour and faults, all drawn from one seed."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field


class Behaviour(enum.Enum):
    HONEST = "honest"
    EQUIVOCATE_PROPOSAL = "equivocating proposer"  # signs two blocks per proposal, splits them
    DOUBLE_VOTE = "double voter"  # signs a conflicting vote for every vote, splits them
    SILENT = "silent"  # sends nothing (until `silent_until`)
    LAZY_POI = "lazy PoI"  # makes up its proof-of-inference answers
    BAD_OUTPUTS = "bad outputs"  # proposes blocks with wrong inference outputs
    # Proposes blocks whose header names another validator (a different one each time; issue 9.5), every
    # other one with a result the others cannot reproduce, to get a user's transaction evicted as
    # "validators disagreed" under three distinct proposers.
    FOREIGN_HEADER = "foreign header"


BYZANTINE = (Behaviour.EQUIVOCATE_PROPOSAL, Behaviour.DOUBLE_VOTE, Behaviour.SILENT, Behaviour.LAZY_POI,
             Behaviour.BAD_OUTPUTS, Behaviour.FOREIGN_HEADER)


@dataclass(frozen=True)
class Crash:
    node: int
    at_ms: int
    down_ms: int
    power_loss: bool  # unsynced WAL records are lost too


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    groups: tuple[int, ...]  # group number per node; links across groups are cut


@dataclass
class Scenario:
    seed: int
    powers: list[int]
    behaviours: list[Behaviour]
    heights: int = 4  # every honest node must commit at least this many blocks
    drop: float = 0.0  # per message, until heal
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (5, 60)
    partitions: list[Partition] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    heal_ms: int = 0  # every network fault and crash is over by then
    silent_until_ms: int | None = None  # None: silent validators stay silent
    bound_ms: int = 60_000  # after heal, the run must reach its heights and commit its evidence within this
    resume_ms: int = 10_000  # after heal, every honest node commits a block within this

    @property
    def n(self) -> int:
        return len(self.powers)

    @property
    def total(self) -> int:
        return sum(self.powers)

    def faulty_power(self) -> int:
        """Power of Byzantine validators plus honest ones that ever crash."""
        crashed = {c.node for c in self.crashes}
        return sum(p for i, (p, b) in enumerate(zip(self.powers, self.behaviours, strict=True))
                   if b is not Behaviour.HONEST or i in crashed)

    def describe(self) -> str:
        byz = {i: b.value for i, b in enumerate(self.behaviours) if b is not Behaviour.HONEST}
        return (f"seed={self.seed} n={self.n} powers={self.powers} byzantine={byz} drop={self.drop:.2f} "
                f"dup={self.duplicate:.2f} delay={self.delay_ms} partitions={len(self.partitions)} "
                f"crashes={[(c.node, c.at_ms, c.down_ms, c.power_loss) for c in self.crashes]} "
                f"heal={self.heal_ms}ms")


def scenario_from_seed(seed: int) -> Scenario:
    """Less than a third of the stake faulty (Byzantine or crashing at some point), any network faults."""
    rng = random.Random(seed)
    n = rng.randint(4, 7)
    powers = [rng.randint(1, 10) for _ in range(n)]
    total = sum(powers)
    behaviours = [Behaviour.HONEST] * n
    order = list(range(n))
    rng.shuffle(order)
    budget = (total - 1) // 3  # faulty power must stay below a third: 3 * faulty < total
    used = 0
    crashes: list[Crash] = []
    heal = rng.randint(300, 4000)
    for i in order:
        if used + powers[i] > budget:
            continue
        roll = rng.random()
        if roll < 0.55:
            behaviours[i] = rng.choice(BYZANTINE)
            used += powers[i]
        elif roll < 0.8:
            at = rng.randint(0, max(1, heal - 100))
            crashes.append(Crash(i, at, rng.randint(50, max(51, heal - at)), rng.random() < 0.5))
            used += powers[i]
    partitions: list[Partition] = []
    if rng.random() < 0.4:
        start = rng.randint(0, heal // 2)
        groups = tuple(rng.randint(0, 1) for _ in range(n))
        partitions.append(Partition(start, rng.randint(start + 1, heal), groups))
    return Scenario(
        seed=seed, powers=powers, behaviours=behaviours,
        drop=rng.choice([0.0, 0.02, 0.05, 0.1, 0.2]),
        duplicate=rng.choice([0.0, 0.05, 0.2]),
        delay_ms=rng.choice([(1, 10), (5, 60), (20, 200)]),
        partitions=partitions, crashes=crashes, heal_ms=heal)


def stalled_scenario(seed: int) -> Scenario:
    """A third of the stake or more crashed or silent during [start, heal): no commits then, resume after."""
    rng = random.Random(seed)
    n = rng.randint(4, 7)
    powers = [rng.randint(1, 10) for _ in range(n)]
    total = sum(powers)
    order = list(range(n))
    rng.shuffle(order)
    behaviours = [Behaviour.HONEST] * n
    crashes: list[Crash] = []
    start = rng.randint(200, 1500)
    heal = start + rng.randint(3000, 8000)
    down = 0
    silent = rng.random() < 0.5
    for i in order:
        if 3 * down >= total:
            break
        if 3 * (total - down - powers[i]) <= 0:
            break
        down += powers[i]
        if silent:
            behaviours[i] = Behaviour.SILENT
        else:
            crashes.append(Crash(i, start, heal - start, rng.random() < 0.5))
    return Scenario(seed=seed, powers=powers, behaviours=behaviours, heights=4,
                    drop=rng.choice([0.0, 0.05]), delay_ms=(5, 60), crashes=crashes, heal_ms=heal,
                    silent_until_ms=heal if silent else None)
