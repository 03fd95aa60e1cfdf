"""Censorship at a deferred activation (vm/activation.py, docs/security.md "Deferred registrations"): a proposer
that pretends it cannot run the check (a postponement, or "could not be checked" once the entry may not be
postponed again) has its block refused by a validator whose own check decides the entry, until the liveness
escape round (`vm.unchecked_verdict_round`); the bound on postponements is the chain parameter
`vm.max_postponements`. Real VM, LevelDB and in-process ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.app import VerdictKind
from core.block import Block
from core.errors import LocalFault
from core.header import TxStatus
from core.types import Round
from tests.vm.deferred_models import VM
from tests.vm.devnet import Devnet, devnet_genesis
from tests.vm.test_vm_deferred_verdict import queue, verdicts, with_results
from vm.activation import LOG_POSTPONED, LOG_UNCHECKED
from vm.deferred import PENDING, REGISTERED, get_deferred
from vm.gov.params_change import apply_param_changes
from vm.gov.types import ParamChange

pytestmark = pytest.mark.vm

ESCAPE_ROUND = 2  # `vm.unchecked_verdict_round` of these chains


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    """Node 0 builds (hostile where a test says so), node 1 validates, node 2 only applies committed blocks.
    One postponement at most, so the second activation is the last."""
    devnet = Devnet.start(tmp_path, devnet_genesis(vm={**VM, "max_postponements": 1,
                                                       "unchecked_verdict_round": ESCAPE_ROUND}), nodes=3)
    yield devnet
    devnet.close()


def pretend_it_cannot_check(net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node 0 claims a local fault on every deferred check (a modified node: it could run it)."""

    def refuse(*args: object) -> object:
        raise LocalFault("the proposer says its sandbox cannot run this check")

    monkeypatch.setattr(net.apps[0].engine, "check_deferred", refuse)


def propose_in_round(net: Devnet, round_: int) -> Block:
    """Node 0's block of the next height, built in consensus round `round_` (its header names the round)."""
    template = net.template()
    later = type(template)(template.chain_id, template.height, Round(round_), template.time, template.proposer,
                           template.last_block_id, template.last_commit, template.evidence)
    return net.apps[0].build_block(later, ())


def test_a_proposer_postponing_a_check_the_validator_can_run_is_refused_until_the_escape_round(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The censor postpones at round 0: the validator runs the check, which decides the entry, and refuses
    (before: a postponement was accepted unchecked, so one proposer could push a registration back at will).
    The same claim in a block built at the escape round is accepted, and every node applies it alike."""
    model_id = queue(net, 71, "censored")
    pretend_it_cannot_check(net, monkeypatch)
    censored = net.propose()
    assert censored.results[-1].status is TxStatus.POSTPONED and censored.results[-1].log == LOG_POSTPONED
    [verdict] = net.validate(censored, [1])
    assert verdict.kind is VerdictKind.INVALID and "postponed, but this node's check decides it" in verdict.reason
    [early] = net.validate(propose_in_round(net, ESCAPE_ROUND - 1), [1])
    assert early.kind is VerdictKind.INVALID
    escaped = propose_in_round(net, ESCAPE_ROUND)
    assert escaped.results[-1].status is TxStatus.POSTPONED
    [late] = net.validate(escaped, [1])
    assert late.is_valid, late
    net.commit(escaped)
    records = verdicts(net, model_id)
    assert records[0] == records[1] == records[2]
    assert records[0].status == PENDING and int(records[0].postponed) == 1  # type: ignore[attr-defined]


def test_could_not_be_checked_at_the_last_activation_is_refused_and_an_honest_round_registers(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The censor's endgame: the entry may not be postponed again (`vm.max_postponements` 1, used up), and the
    hostile proposer of its last activation writes "could not be checked". The validator that can run the
    check refuses it (before: accepted unchecked, the registration rejected and its check's tokens burnt);
    the next round's honest proposer registers the model, and every node holds that record."""
    model_id = queue(net, 72, "last")
    pretend_it_cannot_check(net, monkeypatch)
    net.commit(propose_in_round(net, ESCAPE_ROUND))  # the one postponement allowed, taken at the escape round
    record = get_deferred(net.apps[0].view(), model_id)
    assert record is not None and int(record.postponed) == 1
    while net.height < int(record.activates_at) - 1:
        net.step(validators=[1])
    final = net.propose()
    assert final.results[-1].status is TxStatus.MODEL_REJECTED and final.results[-1].log == LOG_UNCHECKED
    [verdict] = net.validate(final, [1])
    assert verdict.kind is VerdictKind.INVALID and f"{LOG_UNCHECKED}, but this node's check decides it" in verdict.reason
    monkeypatch.undo()
    honest = propose_in_round(net, 1)  # the next round's proposer runs the check
    assert honest.results[-1].status is TxStatus.OK
    [accepted] = net.validate(honest, [1])
    assert accepted.is_valid, accepted
    net.commit(honest)
    records = verdicts(net, model_id)
    assert records[0] == records[1] == records[2] and records[0].status == REGISTERED  # type: ignore[attr-defined]
    assert all(app.view().model(model_id) is not None for app in net.apps)


def test_a_postponement_beyond_the_governed_bound_is_malformed(net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vm.max_postponements` is read from the chain's parameters: with 1 used up, a block that postpones
    again is refused by its form, escape round or not, and a node applying it refuses it too."""
    model_id = queue(net, 73, "bounded")
    pretend_it_cannot_check(net, monkeypatch)
    net.commit(propose_in_round(net, ESCAPE_ROUND))
    record = get_deferred(net.apps[0].view(), model_id)
    assert record is not None
    while net.height < int(record.activates_at) - 1:
        net.step(validators=[1])
    final = propose_in_round(net, ESCAPE_ROUND)
    assert final.results[-1].log == LOG_UNCHECKED  # the proposer's own path: the bound is spent
    again = with_results(final, (*final.results[:-1], final.results[-1].replace(
        status=TxStatus.POSTPONED, log=LOG_POSTPONED)))
    [verdict] = net.validate(again, [1])
    assert verdict.kind is VerdictKind.INVALID and "vm.max_postponements 1" in verdict.reason


def test_governance_changes_the_bound_and_the_escape_round_within_their_rules(net: Devnet) -> None:
    """Both are chain parameters a proposal may change (`vm.gov.params_change`); an escape at round 0 would
    hand the first proposer of every activation height the censorship back, so genesis and governance refuse it."""
    params = net.genesis.params
    changed = apply_param_changes(params, [ParamChange("vm.max_postponements", 5),
                                           ParamChange("vm.unchecked_verdict_round", 8)])
    assert (changed.vm.max_postponements, changed.vm.unchecked_verdict_round) == (5, 8)
    with pytest.raises(ValueError, match=r"vm\.unchecked_verdict_round must be at least 1"):
        apply_param_changes(params, [ParamChange("vm.unchecked_verdict_round", 0)])
