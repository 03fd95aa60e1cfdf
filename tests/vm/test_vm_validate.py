"""validate_block's containment: a proposer's fault is a verdict; a bug of ours is a loud local fault."""

from __future__ import annotations

from typing import NoReturn

import pytest

import vm.validate
from core.app import VerdictKind
from core.block import Block
from tests.vm.devnet import Devnet

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("bug", [KeyError, ValueError])
def test_a_bug_met_while_validating_is_an_alarmed_local_fault(net: Devnet, monkeypatch: pytest.MonkeyPatch,
                                                              bug: type[Exception]) -> None:
    net.step()
    block = net.propose()

    def broken(_: Block, **__: bool) -> NoReturn:
        raise bug("simulated bug")

    monkeypatch.setattr(vm.validate, "get_block_bytes", broken)
    verdict = net.apps[1].validate_block(block)
    # Neither a crash of every validator the block reaches nor an "invalid" verdict on an honest proposer.
    assert verdict.kind is VerdictKind.LOCAL_FAULT
    assert bug.__name__ in verdict.reason
    assert any("internal error" in alarm for alarm in net.alarms)
    monkeypatch.undo()
    assert net.apps[1].validate_block(block).kind is VerdictKind.VALID
