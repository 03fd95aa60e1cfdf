"""Wire vectors of the governance types (vm/gov/types.py): values as the chain would hold them, built from
the world's accounts and parameters."""

from __future__ import annotations

from collections.abc import Callable

from core.codec import Wire
from core.types import Amount, Height
from tools.vectors.world import World
from vm.gov import types as g


def add_gov_cases(world: World, add: Callable[[str, Wire], None]) -> None:
    proposer = world.accounts[0].address
    voter = world.accounts[1].address
    params = world.app.view().params()
    add("gov_params", params.gov)
    change = g.ParamChange("consensus.max_block_gas", 100_000_000)
    add("max_block_gas_change", change)
    param_content = g.ParameterChangeProposal((change, g.ParamChange("vm.gas_schedule.per_node", 120)))
    add("parameter_change", param_content)
    add("add_poi_model", g.PoiModelsProposal((world.model_id("digits_int8"),), ()))
    add("retire_models", g.RetireModelsProposal((world.model_id("digits_int8"),), False))
    upgrade = g.SoftwareUpgradeProposal("v2", Height(1000), "inferchain 0.2.0")
    add("upgrade_v2_at_1000", upgrade)
    add("text", g.TextProposal())
    submit = g.SubmitProposal("Halve the block gas", "Blocks validate in half the time.", param_content,
                              params.gov.min_deposit)
    add("submit_parameter_change", submit)
    add("deposit_on_1", g.Deposit(1, Amount(5)))
    add("vote_yes_on_1", g.Vote(1, g.VoteOption.YES))
    tally = g.TallyResult(Amount(30_000), Amount(0), Amount(10_000), Amount(0), Amount(40_000))
    add("tally_passed", tally)
    add("proposal_passed", g.Proposal(1, proposer, submit.title, submit.summary, submit.content,
                                      g.ProposalStatus.PASSED, Height(3), Height(1003), Height(3), Height(1003),
                                      submit.initial_deposit, tally, "passed and executed"))
    entry = g.DepositEntry(proposer, submit.initial_deposit)
    add("deposit_entry", entry)
    add("deposits_of_1", g.DepositList((entry,)))
    vote = g.VoteEntry(voter, g.VoteOption.NO_WITH_VETO)
    add("vote_entry", vote)
    add("votes_of_1", g.VoteList((vote,)))
    add("ending_at_1003", g.ProposalQueue((1, 2)))
    event = g.GovEvent(1, g.ProposalStatus.PASSED, "passed and executed")
    add("event_passed", event)
    add("events_at_1003", g.GovEvents((event, g.GovEvent(2, g.ProposalStatus.REJECTED, "rejected: vetoed"))))
    add("plan_v2", g.UpgradePlan(upgrade.name, upgrade.height, upgrade.info, 2))
    applied = g.AppliedUpgrade("v2", Height(1000))
    add("applied_v2", applied)
    add("applied_upgrades", g.AppliedUpgrades((applied,)))
