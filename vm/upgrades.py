"""Software upgrades: the registry of state migrations a release ships, keyed by upgrade name, and the
rule that runs one at its height (Cosmos x/upgrade).

A passed upgrade proposal stores an `UpgradePlan` (name, height). Block `height` begins by running the
plan's migration and recording the name as applied; a node whose registry lacks the name cannot apply that
block and stops (`UpgradeNeeded`): it is the old version, and the plan's `info` says which one to run.
A release adds its upgrade with `register`; rules that change with it ask `is_upgrade_applied`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.errors import LocalError
from core.types import Height
from vm.gov.store import KEY_APPLIED_UPGRADES, KEY_UPGRADE_PLAN, get_applied_upgrades, get_upgrade_plan
from vm.gov.types import AppliedUpgrade, AppliedUpgrades
from vm.state import StateView

Migration = Callable[[StateView, Height], None]


@dataclass(frozen=True, slots=True)
class Upgrade:
    name: str
    migrate: Migration  # writes the new rules' state at the upgrade height (deterministic; may do nothing)


class UpgradeNeeded(LocalError):
    """This node's software lacks the upgrade the chain scheduled for the next block."""


# The upgrades this build knows. Empty in this release: the first upgrade's release adds its entry.
REGISTRY: dict[str, Upgrade] = {}


def register(upgrade: Upgrade, registry: dict[str, Upgrade] = REGISTRY) -> None:
    if upgrade.name in registry:
        raise ValueError(f"upgrade {upgrade.name!r} is registered twice")
    registry[upgrade.name] = upgrade


def no_migration(view: StateView, height: Height) -> None:
    """The migration of an upgrade that only changes code paths (gated by `is_upgrade_applied`)."""


def is_upgrade_applied(view: StateView, name: str) -> bool:
    return any(entry.name == name for entry in get_applied_upgrades(view).entries)


def upgrade_needed_message(name: str, height: int, info: str) -> str:
    return (f"upgrade {name!r} is scheduled at height {height}: this node cannot apply that block; "
            f"stop and run {info or 'a release that carries it'}")


def process_upgrade(view: StateView, height: Height, registry: Mapping[str, Upgrade] | None = None) -> None:
    """At the beginning of block `height`: run the plan scheduled for it, or raise UpgradeNeeded."""
    plan = get_upgrade_plan(view)
    if plan is None or plan.height != height:
        return
    upgrade = (REGISTRY if registry is None else registry).get(plan.name)
    if upgrade is None:
        raise UpgradeNeeded(upgrade_needed_message(plan.name, int(height), plan.info))
    upgrade.migrate(view, height)
    applied = get_applied_upgrades(view)
    view.put(KEY_APPLIED_UPGRADES, AppliedUpgrades((*applied.entries, AppliedUpgrade(plan.name, height))))
    view.delete(KEY_UPGRADE_PLAN)
