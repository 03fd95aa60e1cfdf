"""The node-local worker memory cap (config `worker_memory_mib`, docs/node.md): read from the home's config, bounded,
and the limits the node starts its sandbox workers with (its block path's pool and its background check
worker; tests/e2e/test_activation_refusal.py shows a capped node really faulting on a check the others run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from node.config import NodeConfig, config_from_dict, load_config, write_config
from node.service import Node
from tests.node.helpers import make_home
from tools.genesis import make_genesis
from vm.sandbox.limits import MIB, WorkerLimits

pytestmark = pytest.mark.node


def test_the_default_is_the_sandbox_default_and_a_setting_round_trips(tmp_path: Path) -> None:
    assert NodeConfig().worker_memory_bytes == WorkerLimits().memory_bytes
    path = tmp_path / "config.toml"
    write_config(path, NodeConfig(worker_memory_mib=300))
    assert load_config(path).worker_memory_bytes == 300 * MIB


@pytest.mark.parametrize("value", [0, 255, 1 << 21, "300", True])
def test_a_bad_value_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="worker_memory_mib"):
        config_from_dict({"worker_memory_mib": value})


def test_the_node_caps_its_workers_by_its_own_setting(tmp_path: Path) -> None:
    home = make_home(tmp_path, "node", make_genesis(1), validator=0)
    write_config(home.root / "config.toml", home.load_config().replace(worker_memory_mib=300))
    node = Node(home)
    try:
        assert node.worker_limits.memory_bytes == 300 * MIB  # its pool's and its background worker's
    finally:
        node.close()
