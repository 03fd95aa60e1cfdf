"""`realnet_fixture`: one real network shared by a test module (or another pytest scope).

    net = realnet_fixture(validators=4, block_time_ms=200, ready_height=2)

    def test_something(net: RealNet) -> None:
        net.wait_height(5)

The fixture starts the network in a fresh temporary directory, waits until every node serves and has
committed `ready_height`, and stops every process when the scope ends, whatever happened; it then asserts
that no process survived teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.realnet.network import START_TIMEOUT_S, RealNet


def realnet_fixture(*, validators: int = 4, block_time_ms: int | None = 200,
                    genesis: Mapping[str, Mapping[str, Any]] | None = None, accounts: int | None = None,
                    env: Mapping[str, str] | None = None, node_config: Mapping[int, Mapping[str, Any]] | None = None,
                    ready_height: int = 1,
                    scope: str = "module", timeout: float = START_TIMEOUT_S) -> Callable[..., Any]:
    """A pytest fixture (bind it to a module-level name) yielding a started `RealNet`; the arguments are
    `RealNet`'s, plus the height every node must reach before the first test runs."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNet]:
        net = RealNet(tmp_path_factory.mktemp("realnet"), validators=validators, block_time_ms=block_time_ms,
                      genesis=genesis, accounts=accounts, env=env, node_config=node_config)
        with net:
            net.start(timeout=timeout)
            if ready_height > 0:
                net.wait_height(ready_height, timeout=timeout)
            yield net

    return pytest.fixture(scope=scope)(fixture)  # type: ignore[call-overload, no-any-return]
