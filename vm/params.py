"""Chain parameters, fixed in genesis and kept in state (one record), so every rule reads them the same way.

Amounts are in the token's smallest unit; ratios are integer basis points (1/10,000) or parts per million.
"""

from __future__ import annotations

from typing import Annotated

from core.codec import I64, U8, U16, U32, U64, MaxLen, Wire, wire
from core.limits import KIB, MAX_BLOCK_BYTES, MAX_GOSSIP_TX_BYTES, MAX_TENSOR_BYTES
from core.types import Amount, Gas, Hash32
from core.units import Token

BPS = 10_000
MAX_POI_MODELS = 16
# The most genesis may set as max_block_bytes: block sync (in parts), the WAL and the signer carry blocks up to
# core.limits.MAX_BLOCK_BYTES, with this much kept free for the records around a block.
RELAY_RESERVE_BYTES = 60 * KIB
MAX_RELAY_BLOCK_BYTES = MAX_BLOCK_BYTES - RELAY_RESERVE_BYTES
# An inference transaction's bytes besides its input data: the envelope, signature and tensor framing. With
# its inputs at the cap it must still be gossiped alone (core.limits.MAX_GOSSIP_TX_BYTES): checked once, below,
# for the largest cap genesis may set (MAX_TENSOR_BYTES), so no genesis can break it.
INFER_FRAMING_BYTES = 4 * KIB
# The most `vm.max_resident_bytes` may be (governance cannot raise it past what a validator's sandbox memory
# budget holds: docs/sandbox.md, "Memory budget").
MAX_RESIDENT_BYTES = 1024 * 1024 * KIB


@wire(max_bytes=256)
class ChainConsensusParams(Wire):
    """Read by consensus and the node (timeouts); `max_block_bytes` and `max_block_gas` bind block building."""

    timeout_propose_ms: U32
    timeout_propose_delta_ms: U32
    timeout_prevote_ms: U32
    timeout_prevote_delta_ms: U32
    timeout_precommit_ms: U32
    timeout_precommit_delta_ms: U32
    timeout_commit_ms: U32
    max_block_bytes: U32
    max_block_gas: Gas


@wire(max_bytes=96)
class NamedInt(Wire):
    """One integer parameter by name: how the sandbox's own parameter records travel in genesis and state."""

    name: Annotated[str, MaxLen(48)]
    value: I64


@wire(max_bytes=4096)
class VMParams(Wire):
    """Gas prices, caps and tolerance minimums.

    Fees: the envelope's fee must be at least gas_limit x min_gas_price. Inference gas is
    `gas_infer_base + gas_infer_per_io_byte x input bytes + the model's metered gas per call`, plus the
    model's load gas on the first inference on it in a block.
    """

    min_gas_price: Amount
    max_tx_gas: Gas
    gas_transfer: Gas
    gas_stake: Gas
    gas_unstake: Gas
    gas_unjail: Gas
    # The delegation kinds (docs/staking.md, "Gas"); withdraw-rewards is per validator (x 16 for "all").
    gas_delegate: Gas
    gas_undelegate: Gas
    gas_redelegate: Gas
    gas_withdraw_rewards: Gas
    gas_edit_validator: Gas
    gas_chunk_base: Gas
    gas_chunk_per_byte: Gas
    gas_register_base: Gas
    gas_register_per_byte: Gas
    gas_register_per_node: Gas
    # Per element of the 0-D/1-D int32/int64 initializers, which ONNX's data propagation reads one by one.
    gas_register_per_propagated_element: Gas
    gas_infer_base: Gas
    gas_infer_per_io_byte: Gas
    # An upload expires upload_expiry_blocks + upload_expiry_blocks_per_mib x its size in MiB (rounded up)
    # after its first chunk: a 128 MiB model needs hundreds of blocks' worth of chunks.
    upload_expiry_blocks: U32
    upload_expiry_blocks_per_mib: U32
    max_infer_input_bytes: U32
    # Distinct models a block's inferences may use (each first use loads a model into a cold worker).
    max_block_models: U16
    # Deferred activation (docs/sandbox.md, "Deferred activation"): a completing chunk whose check gas is over
    # `defer_check_gas_over` pays `gas_register_deferred` in its transaction and its check gas in tokens; its
    # check (bounded by `max_deferred_registration_gas` with its golden runs) runs at a later height, one entry
    # per height, spaced so that activations ask for at most `background_gas_per_block` of work per block.
    defer_check_gas_over: Gas
    gas_register_deferred: Gas
    max_deferred_registration_gas: Gas
    background_gas_per_block: Gas
    # A proposer that cannot run an activation's check postpones it to the queue's tail at most
    # `max_postponements` times, then writes "could not be checked". Validators that can run the check refuse
    # both (prevote nil) in blocks built before consensus round `unchecked_verdict_round`, from which they
    # accept them anyway: the liveness escape (docs/sandbox.md, "Deferred activation").
    max_postponements: U8
    unchecked_verdict_round: U16
    # Deferred registrations are resident (vm/resident.py): loaded once and kept by every validator's workers,
    # so their bytes together, pending ones included, are bounded (docs/sandbox.md, "Memory budget").
    max_resident_bytes: U64
    # A resident model locks this deposit per KiB of its bytes at its completing chunk, refunded in full when it
    # is rejected or retired (vm/retire.py): holding the resident budget costs locked capital, not only fees.
    resident_deposit_per_kib: Amount
    # A model's owner retires it (TxKind.RETIRE_MODEL): its bytes, its resident slot and its deposit come back.
    gas_retire_model: Gas
    # The sandbox's consensus caps and metering prices (vm.sandbox.limits), by field name.
    sandbox_limits: Annotated[tuple[NamedInt, ...], MaxLen(64)]
    gas_schedule: Annotated[tuple[NamedInt, ...], MaxLen(16)]

    def validate_wire(self) -> None:
        for group in (self.sandbox_limits, self.gas_schedule):
            names = [n.name for n in group]
            if names != sorted(set(names)):
                raise ValueError("named parameters must be unique and sorted by name")


@wire(max_bytes=256)
class StakingParams(Wire):
    """A validator joins once its stake (its own plus delegations) reaches `min_validator_stake`; voting
    power = stake // power_unit. A validator's commission moves at most its `max_change_bps` once per
    `commission_change_blocks` (the chain's day, in blocks). Its owner keeps at least `min_self_stake` of
    its own bonded, or the validator is jailed (docs/staking.md, "Minimum self-stake")."""

    min_validator_stake: Amount
    power_unit: Amount
    unbonding_blocks: U32
    max_validators: U16
    commission_change_blocks: U32
    min_self_stake: Amount


@wire(max_bytes=256)
class RewardParams(Wire):
    """Per block: `poi_reward_per_block` is minted for the validators that answered the scored PoI
    challenge correctly (pro rata to power); `proposer_bonus_per_signature` is minted for the proposer per
    precommit it included; `fee_burn_bps` of the fees is burned and the rest goes to the proposer."""

    poi_reward_per_block: Amount
    proposer_bonus_per_signature: Amount
    fee_burn_bps: U16


@wire(max_bytes=256)
class SlashingParams(Wire):
    """PoI misses are counted over the last `miss_window` scored heights (≤ 64); `max_misses` of them jail
    the validator for `jail_blocks`. Slashes are basis points of bonded stake."""

    poi_wrong_slash_bps: U16
    double_sign_slash_bps: U16
    wrong_inference_slash_bps: U16
    miss_window: U8
    max_misses: U8
    jail_blocks: U32
    max_evidence_age: U32


@wire(max_bytes=256)
class GovParams(Wire):
    """Governance (docs/governance.md), after Cosmos x/gov v1: a proposal needs `min_deposit` within
    `max_deposit_blocks` to open its vote, which lasts `voting_blocks`. It passes with a quorum of bonded
    stake voting, more than `threshold_bps` of the non-abstaining votes yes, and at most `veto_threshold_bps`
    of all votes no-with-veto. The `burn_*` flags say which failures burn the deposits (else refunded)."""

    min_deposit: Amount
    max_deposit_blocks: U32
    voting_blocks: U32
    quorum_bps: U16
    threshold_bps: U16
    veto_threshold_bps: U16
    burn_deposit_prevote: bool
    burn_vote_quorum: bool
    burn_vote_veto: bool
    gas_submit_proposal: Gas
    gas_deposit: Gas
    gas_vote: Gas


@wire(max_bytes=8192)
class Params(Wire):
    consensus: ChainConsensusParams
    vm: VMParams
    staking: StakingParams
    rewards: RewardParams
    slashing: SlashingParams
    poi_models: Annotated[tuple[Hash32, ...], MaxLen(MAX_POI_MODELS)]
    gov: GovParams
    # The token's display and base units (core.units); amounts everywhere else are base units.
    token: Token

    def validate_wire(self) -> None:
        validate_params(self)


def validate_params(p: Params) -> None:
    """Rules that span fields; raises ValueError with a one-line reason."""
    if p.rewards.fee_burn_bps > BPS:
        raise ValueError("rewards.fee_burn_bps must be at most 10000")
    for name in ("poi_wrong_slash_bps", "double_sign_slash_bps", "wrong_inference_slash_bps"):
        if getattr(p.slashing, name) > BPS:
            raise ValueError(f"slashing.{name} must be at most 10000")
    if not 1 <= p.slashing.miss_window <= 64:
        raise ValueError("slashing.miss_window must be between 1 and 64")
    if not 1 <= p.slashing.max_misses <= p.slashing.miss_window:
        raise ValueError("slashing.max_misses must be between 1 and miss_window")
    if not 1 <= p.slashing.max_evidence_age <= p.staking.unbonding_blocks:
        # Stake unbonded after an offence must still be there when its evidence lands (Cosmos x/slashing).
        raise ValueError("slashing.max_evidence_age must be between 1 and staking.unbonding_blocks")
    if p.staking.power_unit == 0:
        raise ValueError("staking.power_unit must be positive")
    if p.staking.min_validator_stake < p.staking.power_unit:
        raise ValueError("staking.min_validator_stake must be at least one power_unit")
    if not 1 <= p.staking.min_self_stake <= p.staking.min_validator_stake:
        # Zero would let an owner bond nothing of its own (its slashes fall on delegators alone); above the
        # candidacy minimum, that minimum would mean nothing.
        raise ValueError("staking.min_self_stake must be between 1 and staking.min_validator_stake")
    if p.staking.commission_change_blocks == 0:
        raise ValueError("staking.commission_change_blocks must be positive")
    if not 1 <= p.staking.max_validators <= 128:
        raise ValueError("staking.max_validators must be between 1 and 128")
    if p.vm.max_tx_gas > p.consensus.max_block_gas:
        raise ValueError("vm.max_tx_gas must not exceed consensus.max_block_gas")
    if p.consensus.max_block_bytes > MAX_RELAY_BLOCK_BYTES:
        raise ValueError(f"consensus.max_block_bytes must be at most {MAX_RELAY_BLOCK_BYTES} "
                         "(vm.params.MAX_RELAY_BLOCK_BYTES)")
    if p.vm.max_infer_input_bytes > MAX_TENSOR_BYTES:
        raise ValueError(f"vm.max_infer_input_bytes must be at most {MAX_TENSOR_BYTES} (core.limits.MAX_TENSOR_BYTES)")
    if p.vm.max_infer_input_bytes + INFER_FRAMING_BYTES > p.consensus.max_block_bytes:
        # Otherwise an inference within the input cap could never be included in a block.
        raise ValueError(f"vm.max_infer_input_bytes must leave {INFER_FRAMING_BYTES} bytes of "
                         "consensus.max_block_bytes for the transaction's framing")
    if p.vm.background_gas_per_block < 1:
        raise ValueError("vm.background_gas_per_block must be positive")
    if p.vm.gas_register_deferred > p.vm.max_tx_gas:
        raise ValueError("vm.gas_register_deferred must not exceed vm.max_tx_gas")
    if p.vm.max_deferred_registration_gas < p.vm.defer_check_gas_over:
        # Otherwise every check the threshold defers would be over the bound: no such model could register.
        raise ValueError("vm.max_deferred_registration_gas must be at least vm.defer_check_gas_over")
    if p.vm.unchecked_verdict_round < 1:
        # Round 0 would let the first proposer of an activation height postpone or reject a check it could run.
        raise ValueError("vm.unchecked_verdict_round must be at least 1")
    if p.vm.max_resident_bytes > MAX_RESIDENT_BYTES:
        raise ValueError(f"vm.max_resident_bytes must be at most {MAX_RESIDENT_BYTES} (each validator's workers "
                         "hold every resident model: vm.params.MAX_RESIDENT_BYTES)")
    if p.vm.gas_retire_model > p.vm.max_tx_gas:
        raise ValueError("vm.gas_retire_model must not exceed vm.max_tx_gas")
    if p.vm.max_block_models < 1:
        raise ValueError("vm.max_block_models must be at least 1")
    if not p.poi_models:
        raise ValueError("at least one PoI model is required")
    if len(set(p.poi_models)) != len(p.poi_models):
        raise ValueError("poi_models lists a model twice")
    g = p.gov
    for name in ("quorum_bps", "threshold_bps", "veto_threshold_bps"):
        if not 1 <= getattr(g, name) <= BPS:
            raise ValueError(f"gov.{name} must be between 1 and 10000")
    if g.min_deposit == 0:
        raise ValueError("gov.min_deposit must be positive")
    if g.max_deposit_blocks < 1 or g.voting_blocks < 1:
        raise ValueError("gov.max_deposit_blocks and gov.voting_blocks must be at least 1")
    if max(g.gas_submit_proposal, g.gas_deposit, g.gas_vote) > p.vm.max_tx_gas:
        raise ValueError("gov gas prices must not exceed vm.max_tx_gas")
    from vm.state import MAX_DELEGATIONS_PER_ACCOUNT  # vm.state imports this module: read at call time

    v = p.vm
    # A withdraw-rewards from all pays its price per delegation held: an account with the most delegations
    # must still be able to withdraw them all in one transaction.
    if max(v.gas_delegate, v.gas_undelegate, v.gas_redelegate, v.gas_edit_validator,
           v.gas_withdraw_rewards * MAX_DELEGATIONS_PER_ACCOUNT) > v.max_tx_gas:
        raise ValueError(f"the delegation kinds' gas (withdraw-rewards x {MAX_DELEGATIONS_PER_ACCOUNT:d}, an account's "
                         "most delegations) must not exceed vm.max_tx_gas")



# Otherwise an inference within the input cap could not be gossiped to the proposers.
assert MAX_TENSOR_BYTES + INFER_FRAMING_BYTES <= MAX_GOSSIP_TX_BYTES, "an inference at the cap must be gossiped"
