"""Governance on the real VM (issue 15): proposals are checked at submission as genesis checks its
parameters, deposits open the vote or are burned, the stake-weighted tally gives every x/gov v1 outcome,
and a passed proposal that can no longer execute leaves state unchanged and says why. Real LevelDB state,
real ONNX Runtime (the PoI challenges of every block), blocks built, validated and applied by two nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import LocalError
from core.types import Address, Amount, Hash32, Height
from tests.vm.devnet import Devnet, devnet_genesis
from vm import delegation, upgrades
from vm.genesis import Genesis
from vm.gov.reader import GovReader
from vm.gov.store import ESCROW, get_applied_upgrades, get_next_proposal_id, get_proposal, get_upgrade_plan
from vm.gov.types import (
    MAX_QUEUED,
    Content,
    Deposit,
    ParamChange,
    ParameterChangeProposal,
    PoiModelsProposal,
    Proposal,
    ProposalStatus,
    SoftwareUpgradeProposal,
    SubmitProposal,
    TextProposal,
    Vote,
    VoteOption,
)

pytestmark = pytest.mark.vm

VOTING = 3
DEPOSIT_BLOCKS = 3
MIN_DEPOSIT = 1_000
GAS = 100_000


@pytest.fixture(scope="module")
def gov_genesis() -> Genesis:
    # max_tx_gas below the block limit, so a proposal can lower max_block_gas and stay valid.
    return devnet_genesis(4, gov={"voting_blocks": VOTING, "max_deposit_blocks": DEPOSIT_BLOCKS,
                                  "min_deposit": MIN_DEPOSIT}, vm={"max_tx_gas": 100_000_000})


@pytest.fixture
def net(tmp_path: Path, gov_genesis: Genesis) -> Iterator[Devnet]:
    devnet = Devnet.start(tmp_path, gov_genesis, nodes=2)
    yield devnet
    devnet.close()


def submit(net: Devnet, owner: int, content: Content, deposit: int = MIN_DEPOSIT, title: str = "t") -> Any:
    return net.tx(net.account(owner), SubmitProposal(title, "why", content, Amount(deposit)), gas_limit=GAS)


def vote(net: Devnet, owner: int, proposal_id: int, option: VoteOption) -> Any:
    return net.tx(net.account(owner), Vote(proposal_id, option), gas_limit=GAS)


def proposal(net: Devnet, proposal_id: int) -> Proposal:
    found = get_proposal(net.apps[0].view(), proposal_id)
    assert found is not None
    return found


def balance(net: Devnet, address: Address) -> int:
    return int(net.apps[0].view().account(address).balance)


def assert_conserved(net: Devnet) -> None:
    """genesis + issued - burned = balances + stakes + unbonding, the escrow's deposits among the balances."""
    supply = net.apps[0].view().supply()
    assert supply.genesis + supply.issued - supply.burned == net.holdings() + balance(net, ESCROW)


def all_ok(block: Any) -> None:
    assert all(r.status == 0 for r in block.results), [r.log for r in block.results]


def burned(net: Devnet) -> int:
    return int(net.apps[0].view().supply().burned)


def step_to(net: Devnet, height: int) -> int:
    """Step with empty blocks to `height`; what its block burned (no fees in it: only deposits)."""
    while net.height < height - 1:
        net.step()
    before = burned(net)
    net.step()
    return burned(net) - before


def run_vote(net: Devnet, content: Content, votes: dict[int, VoteOption]) -> tuple[Proposal, int]:
    """Submit `content` with the minimum deposit (opens the vote at once), cast `votes` by validator owner,
    step to the end of the voting period; the proposal as the tally left it, and what the tally burned."""
    pid = get_next_proposal_id(net.apps[0].view())
    all_ok(net.step([submit(net, 4, content)]))
    assert proposal(net, pid).status is ProposalStatus.VOTING_PERIOD
    all_ok(net.step([vote(net, owner, pid, option) for owner, option in votes.items()]))
    burn = step_to(net, proposal(net, pid).voting_end)
    return proposal(net, pid), burn


# ------------------------------------------------------------------------------------------------ submission


def test_invalid_proposals_are_refused_at_submission_and_cost_only_the_fee(net: Devnet) -> None:
    digits_mlp = next(m.model_id for m in net.genesis.models if m.name == "digits_mlp")
    poi = net.genesis.params.poi_models[0]
    refused = {
        "rewards.fee_burn_bps must be at most 10000":
            ParameterChangeProposal((ParamChange("rewards.fee_burn_bps", 20_000),)),
        "unknown parameter 'consensus.no_such'": ParameterChangeProposal((ParamChange("consensus.no_such", 1),)),
        "vm.max_tx_gas must not exceed consensus.max_block_gas":
            ParameterChangeProposal((ParamChange("consensus.max_block_gas", 1_000),)),
        "slashing.max_evidence_age must be between 1 and staking.unbonding_blocks":
            ParameterChangeProposal((ParamChange("staking.unbonding_blocks", 10),)),
        "cannot be changed by governance": ParameterChangeProposal((ParamChange("slashing.max_evidence_age", 5),)),
        "worst-block bound": ParameterChangeProposal((ParamChange("consensus.timeout_propose_ms", 1_000),)),
        "out of range": ParameterChangeProposal((ParamChange("rewards.poi_reward_per_block", -1),)),
        "must be of class exact": PoiModelsProposal((digits_mlp,), ()),
        "is not registered": PoiModelsProposal((Hash32(bytes(32)),), ()),
        "at least one PoI model must remain": PoiModelsProposal((), (poi,)),
        "is already a PoI model": PoiModelsProposal((poi,), ()),
        "must be after height": SoftwareUpgradeProposal("v2", Height(2), "inferchain 0.2"),
    }
    before = balance(net, net.account(4).address)
    block = net.step([submit(net, 4, content) for content in refused.values()])
    for result, expected in zip(block.results, refused, strict=True):
        assert result.status != 0 and expected in result.log, (expected, result.log)
        assert result.log.startswith("invalid proposal: ")
    assert get_next_proposal_id(net.apps[0].view()) == 1  # nothing opened
    assert balance(net, net.account(4).address) == before - len(refused) * GAS
    assert balance(net, ESCROW) == 0
    assert_conserved(net)


def test_a_deposit_below_the_minimum_waits_then_others_open_the_vote(net: Devnet) -> None:
    all_ok(net.step([submit(net, 4, TextProposal(), deposit=MIN_DEPOSIT // 2)]))
    assert proposal(net, 1).status is ProposalStatus.DEPOSIT_PERIOD
    assert balance(net, ESCROW) == MIN_DEPOSIT // 2
    block = net.step([net.tx(net.account(6), Deposit(1, Amount(15)), gas_limit=GAS),
                      net.tx(net.account(5), Deposit(1, Amount(MIN_DEPOSIT // 2)), gas_limit=GAS),
                      net.tx(net.account(5), Deposit(9, Amount(100)), gas_limit=GAS)])
    # Dust from a new depositor is refused: 64 depositors must always add up to the minimum (1000 / 64).
    assert "first deposit must be at least 16" in block.results[0].log
    assert block.results[1].status == 0 and "no proposal 9" in block.results[2].log
    opened = proposal(net, 1)
    assert opened.status is ProposalStatus.VOTING_PERIOD and opened.total_deposit == MIN_DEPOSIT
    assert opened.voting_end == net.height + VOTING
    assert balance(net, ESCROW) == MIN_DEPOSIT
    assert_conserved(net)


def test_a_deposit_period_that_ends_below_the_minimum_burns_the_deposit(net: Devnet) -> None:
    all_ok(net.step([submit(net, 4, TextProposal(), deposit=20)]))
    assert step_to(net, proposal(net, 1).deposit_end) == 20
    closed = proposal(net, 1)
    assert closed.status is ProposalStatus.REJECTED and "below the minimum" in closed.result_log
    assert balance(net, ESCROW) == 0
    assert_conserved(net)
    # A closed proposal takes neither deposits nor votes.
    block = net.step([net.tx(net.account(5), Deposit(1, Amount(5)), gas_limit=GAS), vote(net, 0, 1, VoteOption.YES)])
    assert "no longer takes deposits" in block.results[0].log and "not in its voting period" in block.results[1].log


# ------------------------------------------------------------------------------------------------ tally


def test_a_passed_parameter_change_takes_effect_at_the_next_block_and_refunds_the_deposit(net: Devnet) -> None:
    proposer = net.account(4).address
    before = balance(net, proposer)
    digits = next(m.model_id for m in net.genesis.models if m.name == "digits_int8")
    priced = net.apps[0].view().model(digits)
    change = ParameterChangeProposal((ParamChange("consensus.max_block_gas", 150_000_000),
                                      ParamChange("gov.burn_vote_quorum", 1),
                                      ParamChange("vm.gas_schedule.per_node", 400)))
    done, burn = run_vote(net, change, {0: VoteOption.YES, 1: VoteOption.YES, 2: VoteOption.NO})
    assert done.status is ProposalStatus.PASSED and burn == 0, done.result_log
    assert done.tally is not None and done.tally.yes == 2 * done.tally.no == done.tally.bonded // 2
    params = net.apps[0].view().params()
    assert params.consensus.max_block_gas == 150_000_000 and params.gov.burn_vote_quorum
    assert dict((n.name, n.value) for n in params.vm.gas_schedule)["per_node"] == 400
    assert net.apps[0].view().model(digits) == priced  # registered models keep their metered prices
    assert balance(net, proposer) == before - GAS  # the deposit came back; the submission's fee did not
    assert balance(net, ESCROW) == 0
    assert_conserved(net)
    net.step()  # the next block is built and validated under the new limit by both nodes


def test_a_vote_below_the_threshold_is_rejected_and_refunded(net: Devnet) -> None:
    done, burn = run_vote(net, TextProposal(), {0: VoteOption.YES, 1: VoteOption.NO, 2: VoteOption.ABSTAIN})
    assert done.status is ProposalStatus.REJECTED and done.result_log == "rejected: threshold not reached"
    assert balance(net, ESCROW) == 0 and burn == 0
    assert_conserved(net)


def test_a_veto_rejects_and_burns_the_deposit(net: Devnet) -> None:
    done, burn = run_vote(net, TextProposal(), {0: VoteOption.YES, 1: VoteOption.YES, 2: VoteOption.NO_WITH_VETO,
                                          3: VoteOption.NO_WITH_VETO})
    assert done.status is ProposalStatus.REJECTED and done.result_log == "rejected: vetoed"
    events = GovReader(net.apps[0].view()).events(int(done.voting_end)).events
    assert [(e.proposal_id, e.status, e.log) for e in events] == [(1, ProposalStatus.REJECTED, "rejected: vetoed")]
    assert burn == MIN_DEPOSIT
    assert_conserved(net)


def test_without_quorum_the_proposal_is_rejected_and_the_deposit_refunded(net: Devnet) -> None:
    done, burn = run_vote(net, TextProposal(), {0: VoteOption.YES})  # a quarter of the stake: below 33.4 %
    assert done.status is ProposalStatus.REJECTED and done.result_log == "rejected: no quorum"
    assert done.tally is not None and done.tally.yes * 4 == done.tally.bonded
    assert burn == 0 and balance(net, ESCROW) == 0
    assert_conserved(net)


def test_all_abstaining_rejects(net: Devnet) -> None:
    done, burn = run_vote(net, TextProposal(), {0: VoteOption.ABSTAIN, 1: VoteOption.ABSTAIN})
    assert done.result_log == "rejected: every vote abstained" and burn == 0


def test_accounts_without_stake_cannot_vote(net: Devnet) -> None:
    """Else funded accounts with no stake could fill the proposal's voter list (1,024) for the price of
    their fees and shut the validators' owners out of the vote."""
    all_ok(net.step([submit(net, 4, TextProposal())]))
    block = net.step([vote(net, 6, 1, VoteOption.NO), vote(net, 0, 1, VoteOption.YES)])
    assert "no stake to vote with" in block.results[0].log and block.results[1].status == 0
    assert [e.voter for e in GovReader(net.apps[0].view()).votes(1).entries] == [net.account(0).address]


def test_a_later_vote_replaces_the_earlier_one(net: Devnet) -> None:
    all_ok(net.step([submit(net, 4, TextProposal())]))
    all_ok(net.step([vote(net, 0, 1, VoteOption.NO), vote(net, 1, 1, VoteOption.YES)]))
    all_ok(net.step([vote(net, 0, 1, VoteOption.YES)]))
    while net.height < proposal(net, 1).voting_end:
        net.step()
    assert proposal(net, 1).status is ProposalStatus.PASSED


def test_a_delegator_that_votes_moves_its_delegation_out_of_its_validators_vote(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delegation branch's `delegations_of` is the one input: account 5 delegates 4,000 tokens' worth
    to validator 0 and votes no; validator 0's owner votes yes with the rest."""
    validator0 = next(a for a in net.keys if net.keys[a].public_key == net.genesis.validators[0].public_key)
    delegator = net.account(5).address
    delegated = 4_000 * 10**6

    def delegations_of(view: Any, account: Address) -> list[tuple[Address, int]]:
        return [(validator0, delegated)] if account == delegator else []

    monkeypatch.setattr(delegation, "delegations_of", delegations_of)
    done, _ = run_vote(net, TextProposal(), {0: VoteOption.YES, 5: VoteOption.NO})
    stake0 = net.genesis.validators[0].stake
    assert done.tally is not None
    assert (done.tally.yes, done.tally.no) == (stake0 - delegated, delegated)


# ------------------------------------------------------------------------------------------------ execution


def test_a_passed_proposal_that_no_longer_executes_fails_and_leaves_state_unchanged(net: Devnet) -> None:
    """Two changes, each valid alone, pass at the same height: the first lowers max_block_gas below the
    max_tx_gas the second raises to. The second fails at execution, records why, and writes nothing."""
    lower = ParameterChangeProposal((ParamChange("consensus.max_block_gas", 120_000_000),))
    raise_tx = ParameterChangeProposal((ParamChange("vm.max_tx_gas", 150_000_000),))
    all_ok(net.step([submit(net, 4, lower), submit(net, 5, raise_tx)]))
    yes = [vote(net, owner, pid, VoteOption.YES) for owner in range(4) for pid in (1, 2)]
    all_ok(net.step(yes))
    while net.height < proposal(net, 2).voting_end:
        net.step()
    first, second = proposal(net, 1), proposal(net, 2)
    events = GovReader(net.apps[0].view()).events(int(second.voting_end)).events
    assert [(e.proposal_id, e.status) for e in events] == [(1, ProposalStatus.PASSED), (2, ProposalStatus.FAILED)]
    assert events[1].log == second.result_log
    assert first.status is ProposalStatus.PASSED
    assert second.status is ProposalStatus.FAILED
    assert second.result_log == ("passed, but execution failed: vm.max_tx_gas must not exceed "
                                 "consensus.max_block_gas")
    params = net.apps[0].view().params()
    assert params.consensus.max_block_gas == 120_000_000
    assert params.vm.max_tx_gas == net.genesis.params.vm.max_tx_gas
    assert balance(net, ESCROW) == 0  # a failed execution still refunds: the vote passed
    assert_conserved(net)


def test_poi_models_are_added_and_retired(net: Devnet) -> None:
    digits_int8 = next(m.model_id for m in net.genesis.models if m.name == "digits_int8")
    poi_mix = net.genesis.params.poi_models[0]
    yes = {i: VoteOption.YES for i in range(4)}
    assert run_vote(net, PoiModelsProposal((digits_int8,), ()), yes)[0].status is ProposalStatus.PASSED
    assert net.apps[0].view().params().poi_models == (poi_mix, digits_int8)
    assert run_vote(net, PoiModelsProposal((), (poi_mix,)), yes)[0].status is ProposalStatus.PASSED
    assert net.apps[0].view().params().poi_models == (digits_int8,)
    for _ in range(3):  # challenges now run digits_int8; both nodes agree on every PoI score
        net.step()
    record = net.apps[0].view().validator(next(iter(net.keys)))
    assert record is not None and record.poi_correct > 0 and record.poi_wrong == 0


def test_a_software_upgrade_stops_an_old_node_and_runs_on_a_new_one(
        net: Devnet, monkeypatch: pytest.MonkeyPatch) -> None:
    height = net.height + 2 + VOTING + 2
    done, burn = run_vote(net, SoftwareUpgradeProposal("v2", Height(height), "inferchain 0.2.0"),
                          {i: VoteOption.YES for i in range(4)})
    assert done.status is ProposalStatus.PASSED and burn == 0
    plan = get_upgrade_plan(net.apps[0].view())
    assert plan is not None and (plan.name, plan.height) == ("v2", height)
    while net.height < height - 1:
        net.step()
    with pytest.raises(upgrades.UpgradeNeeded) as stopped:  # the old version: no "v2" in its registry
        net.propose()
    assert isinstance(stopped.value, LocalError)
    assert str(stopped.value) == (f"upgrade 'v2' is scheduled at height {height}: this node cannot apply that "
                                  "block; stop and run inferchain 0.2.0")
    migrated: list[int] = []
    monkeypatch.setattr(upgrades, "REGISTRY", {"v2": upgrades.Upgrade("v2", lambda v, h: migrated.append(h))})
    net.step()  # the new version: its migration runs at the upgrade height, on every node
    assert net.height == height and migrated.count(height) >= 2
    view = net.apps[0].view()
    assert get_upgrade_plan(view) is None
    assert [(e.name, e.height) for e in get_applied_upgrades(view).entries] == [("v2", height)]
    assert upgrades.is_upgrade_applied(view, "v2")
    refused = net.step([submit(net, 4, SoftwareUpgradeProposal("v2", Height(height + 50), ""))])
    assert "has already run" in refused.results[0].log


def test_end_of_block_work_is_bounded_per_height(net: Devnet) -> None:
    """At most 64 proposals end their deposit period at one height: the 65th submission of a block fails
    (a spammer cannot make one block's governance step arbitrarily long), and the 64 close together."""
    txs = [net.tx(net.account(4 + i % 4), SubmitProposal("spam", "", TextProposal(), Amount(20)), gas_limit=GAS)
           for i in range(MAX_QUEUED + 1)]
    block = net.step(txs)
    assert all(r.status == 0 for r in block.results[:MAX_QUEUED])
    assert "too many proposals already end their deposit period" in block.results[MAX_QUEUED].log
    assert step_to(net, proposal(net, 1).deposit_end) == 20 * MAX_QUEUED  # each deposit burned
    assert {proposal(net, pid).status for pid in range(1, MAX_QUEUED + 1)} == {ProposalStatus.REJECTED}
    assert_conserved(net)
