"""Every attack of docs/design.md §2.11-§2.12 is refused at registration, with its reason.

Each case is built as real model bytes by `tools.attacks`; the verdict must be an InvalidModel whose
one-line message names the rule, whether the check runs directly or as a CheckJob of an executor.
"""

from __future__ import annotations

import pytest

from core.errors import InvalidModel
from tools.attacks import ATTACKS, Attack
from vm.sandbox.check import validate_model
from vm.sandbox.executor import CheckJob, LocalExecutor

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_with_its_reason(attack: Attack) -> None:
    model_bytes, spec = attack.build()
    with pytest.raises(InvalidModel) as refused:
        validate_model(model_bytes, spec)
    message = str(refused.value)
    assert attack.expect in message
    assert "\n" not in message and len(message) <= 300


def test_attack_names_are_unique() -> None:
    names = [a.name for a in ATTACKS]
    assert len(names) == len(set(names))


def test_refusals_are_verdicts_in_a_batch() -> None:
    """A refused registration is a result of the batch (the same on every node), not an exception."""
    chosen = [a for a in ATTACKS if a.name in ("random_bytes", "loop_1e12", "tolerant_argmax", "lying_initializer")]
    jobs = [CheckJob(*a.build()) for a in chosen]
    results = LocalExecutor().run_batch(jobs)
    for attack, result in zip(chosen, results, strict=True):
        assert isinstance(result.error, InvalidModel)
        assert attack.expect in str(result.error)
        assert result.info is None


def test_size_cap_applies_before_parsing() -> None:
    """Bytes over the cap are refused for their size even when they would not parse at all."""
    attack = next(a for a in ATTACKS if a.name == "oversized_garbage")
    model_bytes, spec = attack.build()
    with pytest.raises(InvalidModel, match="over the cap"):
        validate_model(model_bytes, spec)
    with pytest.raises(InvalidModel, match="not an ONNX model"):
        validate_model(model_bytes[: spec.limits.max_model_bytes], spec)
