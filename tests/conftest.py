"""Suite-wide rules: every test belongs to exactly one suite marker, so `make test`'s marker filters
(parallel CPU-bound suites, serial real-time suites) can never silently skip a test."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

SUITES = ("core", "vm", "consensus", "p2p", "node", "e2e")


# CI runs the property tests derandomized: the same examples on every run, so a red CI is reproducible and a
# green one is not luck. Runs on a developer's machine keep exploring new examples (hypothesis's default).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(s) for s in SUITES)]
    if unmarked:
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) carry no suite marker ({', '.join(SUITES)}), e.g. {unmarked[0]}; "
            "add `pytestmark = pytest.mark.<suite>` to the module")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests.realnet import report

    report.begin()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed test that used a real network (tests/realnet) shows each node's state and log tail."""
    from tests.realnet import report

    outcome = yield
    report.attach(outcome)  # type: ignore[arg-type]
    return outcome
