"""What each kind of proposal asks, checked at submission and again at execution (the state may have moved
on in between); execution checks everything before it writes, so a failure leaves state unchanged."""

from __future__ import annotations

from core.types import Hash32
from vm.genesis import poi_model_problem
from vm.gov.params_change import apply_param_changes
from vm.gov.store import KEY_UPGRADE_PLAN, get_applied_upgrades
from vm.gov.types import (
    Content,
    ParameterChangeProposal,
    PoiModelsProposal,
    RetireModelsProposal,
    SoftwareUpgradeProposal,
    TextProposal,
    UpgradePlan,
)
from vm.params import MAX_POI_MODELS, Params
from vm.retire import RetireRefused, process_retire, validate_retire
from vm.state import KEY_PARAMS, StateView


class ContentRefused(ValueError):
    """A proposal's content cannot be executed on this state; the message is one line."""


def validate_content(view: StateView, params: Params, height: int, content: Content) -> None:
    """Raise ContentRefused if `content` could not execute on `view` at `height` (submission's check)."""
    if isinstance(content, ParameterChangeProposal):
        _changed_params(params, content)
    elif isinstance(content, PoiModelsProposal):
        _changed_poi_models(view, params, content)
    elif isinstance(content, SoftwareUpgradeProposal):
        _validate_upgrade(view, content, height, params.gov.voting_blocks)
    elif isinstance(content, RetireModelsProposal):
        _validate_retirements(view, params, content)
    else:
        assert isinstance(content, TextProposal)


def execute_content(view: StateView, params: Params, height: int, content: Content, proposal_id: int) -> int:
    """Carry out a passed proposal at the end of block `height`; ContentRefused (and nothing written) if it
    can no longer be carried out. Returns the tokens it burned (a retirement's deposits: the caller's ledger)."""
    if isinstance(content, ParameterChangeProposal):
        view.put(KEY_PARAMS, _changed_params(params, content))
    elif isinstance(content, PoiModelsProposal):
        view.put(KEY_PARAMS, params.replace(poi_models=_changed_poi_models(view, params, content)))
    elif isinstance(content, SoftwareUpgradeProposal):
        _validate_upgrade(view, content, height, 0)
        view.put(KEY_UPGRADE_PLAN, UpgradePlan(content.name, content.height, content.info, proposal_id))
    elif isinstance(content, RetireModelsProposal):
        _validate_retirements(view, params, content)  # all of them, before the first write
        burned = 0
        for model_id in content.models:
            amount = process_retire(view, params, height, model_id, None, burn=content.burn_deposits)
            burned += amount if content.burn_deposits else 0  # a refund moved tokens; a burn removed them
        return burned
    return 0


def _changed_params(params: Params, content: ParameterChangeProposal) -> Params:
    try:
        return apply_param_changes(params, content.changes)
    except ValueError as exc:
        raise ContentRefused(str(exc)) from None


def _changed_poi_models(view: StateView, params: Params, content: PoiModelsProposal) -> tuple[Hash32, ...]:
    if not content.add and not content.retire:
        raise ContentRefused("a PoI model change must add or retire a model")
    named = [*content.add, *content.retire]
    if len(set(named)) != len(named):
        raise ContentRefused("a model is named twice")
    current = list(params.poi_models)
    for model_id in content.retire:
        if model_id not in current:
            raise ContentRefused(f"model {model_id.hex()[:16]} is not a PoI model")
        current.remove(model_id)
    for model_id in content.add:
        if model_id in current:
            raise ContentRefused(f"model {model_id.hex()[:16]} is already a PoI model")
        record = view.model(model_id)
        if record is None:
            raise ContentRefused(f"model {model_id.hex()[:16]} is not registered")
        problem = poi_model_problem(record.meta)
        if problem is not None:
            raise ContentRefused(f"model {model_id.hex()[:16]} cannot be a PoI model: it {problem}")
        current.append(model_id)
    if not current:
        raise ContentRefused("at least one PoI model must remain")
    if len(current) > MAX_POI_MODELS:
        raise ContentRefused(f"at most {MAX_POI_MODELS} PoI models")
    return tuple(current)


def _validate_retirements(view: StateView, params: Params, content: RetireModelsProposal) -> None:
    if not content.models:
        raise ContentRefused("a retirement must name a model")
    if len(set(content.models)) != len(content.models):
        raise ContentRefused("a model is named twice")
    for model_id in content.models:
        try:
            validate_retire(view, params, model_id, None)
        except RetireRefused as exc:
            raise ContentRefused(str(exc)) from None


def _validate_upgrade(view: StateView, content: SoftwareUpgradeProposal, height: int, margin: int) -> None:
    name = content.name
    if not name or not name.isprintable() or name.strip() != name:
        raise ContentRefused("an upgrade needs a printable name without surrounding spaces")
    if content.height <= height + margin:
        raise ContentRefused(f"upgrade height {content.height:d} must be after height {height + margin:d}")
    if any(entry.name == name for entry in get_applied_upgrades(view).entries):
        raise ContentRefused(f"upgrade {name!r} has already run")

