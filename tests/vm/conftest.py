from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.devnet import Devnet, devnet_genesis
from vm.genesis import Genesis


@pytest.fixture(scope="session")
def genesis() -> Genesis:
    """Four validators; small windows so that jailing and unbonding happen within a few blocks."""
    return devnet_genesis(
        4,
        staking={"unbonding_blocks": 3},
        slashing={"miss_window": 4, "max_misses": 3, "jail_blocks": 2, "max_evidence_age": 3},
        vm={"upload_expiry_blocks": 3},
    )


@pytest.fixture
def net(tmp_path: Path, genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, genesis, nodes=2)
    yield devnet
    devnet.close()
