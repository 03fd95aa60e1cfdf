"""Fixtures shared by the node tests that serve the RPC API over a simulated chain (test_rpc, test_client,
test_driver_rpc); a test file's own fixture of the same name takes precedence."""

from __future__ import annotations

import pytest

from tests.node.simchain import SimChain


@pytest.fixture
def chain() -> SimChain:
    return SimChain()
