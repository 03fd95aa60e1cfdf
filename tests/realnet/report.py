"""Node logs in the report of a failed test: every network a test used gets a section per node.

`tests/conftest.py` calls `begin` before each test and `attach` on each failed phase's report; a network
counts as used by the test when it was alive as the test began or was started during it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from tests.realnet.network import RealNet

SECTION_LINES = 60

_used: list[RealNet] = []


def begin() -> None:
    """A test begins: the networks it uses are those alive now and those it starts."""
    from tests.realnet.network import live_networks

    _used[:] = live_networks()


def touch(net: RealNet) -> None:
    if net not in _used:
        _used.append(net)


def attach(report: pytest.TestReport) -> None:
    """Add each node's state and log tail to a failed report (shown under the failure by pytest)."""
    if not report.failed:
        return
    for number, net in enumerate(_used):
        title = f"realnet {net.devnet.root}" if len(_used) == 1 else f"realnet #{number} {net.devnet.root}"
        report.sections.append((title, net.describe(SECTION_LINES)))
