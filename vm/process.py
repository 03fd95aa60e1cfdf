"""Block-level rules around the transactions: unbonding, upload expiry, evidence, PoI scoring, the
proposer's bonus and fees, issuance, and the validator set two heights ahead.

All integer; every token minted or burned is recorded in the `Supply` record, so a test can check
genesis + issued - burned = balances + stakes + unbonding after any block.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InvalidBlock
from core.evidence import Evidence, WrongInference, evidence_height, is_evidence_in_window, offence_id
from core.tensor import Tensor
from core.types import Address, Amount, Hash32, Height, PublicKeyBytes
from core.validators import MAX_TOTAL_POWER, ValidatorEntry, ValidatorList
from core.votes import Commit
from vm import delegation
from vm.execute import BlockContext, drop_upload
from vm.gov.endblock import process_gov_end_block
from vm.params import BPS, Params
from vm.poi import PoiOutcome, compute_rewards, score_commitments
from vm.queuecuts import process_cut_since
from vm.state import (
    KEY_CANDIDATES,
    KEY_CHAIN,
    KEY_POI,
    KEY_SUPPLY,
    CandidateList,
    ChainRecord,
    ExpiryList,
    PendingPoi,
    PoiEntry,
    StateView,
    Supply,
    UnbondingQueue,
    Upload,
    ValidatorRecord,
    evidence_key,
    expiry_key,
    unbonding_key,
    upload_key,
    vset_key,
    vset_ring,
)


class Ledger:
    """Minting and burning within one block; folded into the Supply record at the end."""

    __slots__ = ("burned", "fees", "issued")

    def __init__(self) -> None:
        self.issued = 0
        self.burned = 0
        self.fees = 0

    def mint_to(self, view: StateView, address: Address, amount: int) -> None:
        if amount:
            credit(view, address, amount)
            self.issued += amount

    def mint_to_validator(self, view: StateView, address: Address, record: ValidatorRecord, amount: int) -> None:
        """Mint `amount` earned by a validator: shared with its delegators (`delegation.pay_rewards`)."""
        if amount:
            delegation.pay_rewards(view, address, record, amount)
            self.issued += amount


def credit(view: StateView, address: Address, amount: int) -> None:
    account = view.account(address)
    view.set_account(address, account.replace(balance=Amount(account.balance + amount)))


def slash(record: ValidatorRecord, bps: int, ledger: Ledger) -> ValidatorRecord:
    amount = record.stake * bps // BPS
    ledger.burned += amount
    return record.replace(stake=Amount(record.stake - amount), slashed=Amount(record.slashed + amount))


def jail(record: ValidatorRecord, ctx: BlockContext) -> ValidatorRecord:
    until = Height(ctx.height + ctx.params.slashing.jail_blocks)
    return record.replace(jailed=True, jailed_until=max(until, record.jailed_until), miss_bits=0)


# ------------------------------------------------------------------------------------------------ begin


def release_unbonding(view: StateView, ctx: BlockContext) -> None:
    """Pay out the unbondings that mature in this block; redelegations maturing now stop being slashable."""
    delegation.release_redelegations(view, int(ctx.height))
    key = unbonding_key(ctx.height)
    queue = view.get(key, UnbondingQueue)
    if queue is None:
        return
    for entry in queue.entries:
        credit(view, entry.owner, entry.amount)
    view.delete(key)

def expire_uploads(view: StateView, ctx: BlockContext) -> None:
    key = expiry_key(ctx.height)
    expiring = view.get(key, ExpiryList)
    if expiring is None:
        return
    for model_id in expiring.model_ids:
        upload = view.get(upload_key(model_id), Upload)
        if upload is not None and upload.expires_at == ctx.height:
            drop_upload(view, model_id)
    view.delete(key)


def evidence_problem(view: StateView, ctx: BlockContext, evidence: Evidence) -> str | None:
    """Why block `ctx.height` cannot punish `evidence` (None: it can), on the state its earlier evidence left.

    The one stateful evidence rule: the proposer's filter (`select_punishable`), block validation and block
    application (`punish_evidence`) all apply it, in block order. The offence is inside the evidence window
    (never older than the unbonding period, a genesis rule); the offender was in the validator set of the
    offence height (even if it has left since: the set ring covers the window); it is not tombstoned; the
    offence was not punished before. Whether the evidence proves its offence is checked before (signatures,
    or a model re-run for a wrong inference).
    """
    h = int(evidence_height(evidence))
    if not is_evidence_in_window(h, int(ctx.height), int(ctx.params.slashing.max_evidence_age)):
        return f"evidence of height {h} is outside the window of block {ctx.height}"
    entry = offender_at(view, h, evidence.offender)
    if entry is None:
        return f"the offender was not a validator at height {h}"
    record = view.validator(entry.address)
    if record is None:
        return f"the offender of height {h} has no validator record"
    if record.tombstoned:
        return "the offender is already tombstoned"
    if view.get_raw(evidence_key(offence_id(evidence))) is not None:
        return "the offence was already punished"
    return None


def offender_at(view: StateView, height: int, public_key: bytes) -> ValidatorEntry | None:
    """The offender's entry (its power) in the validator set of `height`, or None if it was not in it."""
    return next((e for e in view.validator_list(height) if e.public_key == public_key), None)


def punish_evidence(view: StateView, ctx: BlockContext, evidence: Sequence[Evidence],
                    ledger: Ledger) -> list[Evidence]:
    """Punish every item of a block's evidence; InvalidBlock if one breaks `evidence_problem`."""
    for i, ev in enumerate(evidence):
        problem = evidence_problem(view, ctx, ev)
        if problem is not None:
            raise InvalidBlock(f"block {ctx.height}: evidence {i}: {problem}")
        _punish(view, ctx, ev, ledger)
    return list(evidence)


def select_punishable(view: StateView, ctx: BlockContext, evidence: Sequence[Evidence]) -> list[Evidence]:
    """What a proposer includes: each item `punish_evidence` would accept after the ones kept before it.
    Punishes them on `view`, which the caller throws away."""
    ledger = Ledger()
    kept = []
    for ev in evidence:
        if evidence_problem(view, ctx, ev) is None:
            _punish(view, ctx, ev, ledger)
            kept.append(ev)
    return kept


def _punish(view: StateView, ctx: BlockContext, ev: Evidence, ledger: Ledger) -> None:
    h = int(evidence_height(ev))
    entry = offender_at(view, h, ev.offender)
    assert entry is not None
    address = entry.address
    record = view.validator(address)
    assert record is not None
    slashing = ctx.params.slashing
    if isinstance(ev, WrongInference):
        record = jail(slash_offence(view, ctx, address, record, int(entry.power), h,
                                    slashing.wrong_inference_slash_bps, ledger), ctx)
    else:
        record = slash_offence(view, ctx, address, record, int(entry.power), h, slashing.double_sign_slash_bps,
                               ledger).replace(jailed=True, tombstoned=True)
    view.set_validator(address, record)
    view.put_raw(evidence_key(offence_id(ev)), ctx.height.to_bytes(8, "big"))


def slash_offence(view: StateView, ctx: BlockContext, address: Address, record: ValidatorRecord, power: int,
                  offence_height: int, bps: int, ledger: Ledger) -> ValidatorRecord:
    """Slash `bps` of the stake bonded at the offence (its power then x power_unit), Cosmos x/slashing style:
    first `bps` of each of the validator's unbonding entries begun at or after the offence height (they
    are all still pending: the evidence window is at most the unbonding period, and evidence is punished
    before the block releases anything), then the rest of the amount from its bonded stake, as far as it
    goes. Everything slashed is burned and added to the record's `slashed`."""
    staking = ctx.params.staking
    target = power * staking.power_unit * bps // BPS
    begun = range(offence_height, int(ctx.height))
    cuts = process_cut_since(view, UnbondingQueue, address, begun, int(staking.unbonding_blocks), bps)
    from_unbonding = sum(cut for _, cut in cuts)
    # Stake redelegated away since the offence is cut at its destination (vm.delegation).
    from_unbonding += delegation.slash_redelegations(view, address, offence_height, int(ctx.height), bps,
                                                     int(staking.unbonding_blocks))
    from_stake = min(max(target - from_unbonding, 0), int(record.stake))
    ledger.burned += from_unbonding + from_stake
    return record.replace(stake=Amount(record.stake - from_stake),
                          slashed=Amount(record.slashed + from_unbonding + from_stake))


def score_poi(view: StateView, ctx: BlockContext, reveal: Tensor | None, ledger: Ledger) -> None:
    """Score the commitments fixed in the previous block against this block's reveal (if any are due)."""
    pending = view.get(KEY_POI, PendingPoi)
    if pending is None or pending.height + 2 != ctx.height:
        return
    if reveal is None:
        raise ValueError("a PoI reveal is due in this block")  # validate_block refuses such blocks first
    slashing = ctx.params.slashing
    window_mask = (1 << slashing.miss_window) - 1
    scores = score_commitments(pending, reveal)
    rewards = compute_rewards(scores, ctx.params.rewards.poi_reward_per_block)
    for score in scores:
        record = view.validator(score.validator)
        if record is None:
            continue
        miss = score.outcome is not PoiOutcome.CORRECT
        if score.outcome is PoiOutcome.CORRECT:
            record = record.replace(poi_correct=record.poi_correct + 1)
        elif score.outcome is PoiOutcome.WRONG:
            record = slash(record, slashing.poi_wrong_slash_bps, ledger)
            record = record.replace(poi_wrong=record.poi_wrong + 1)
        else:
            record = record.replace(poi_missed=record.poi_missed + 1)
        bits = ((record.miss_bits << 1) | int(miss)) & window_mask
        record = record.replace(miss_bits=bits)
        if not record.jailed and bits.bit_count() >= slashing.max_misses:
            record = jail(record, ctx)
        reward = rewards.get(score.validator, 0)
        if reward:
            record = record.replace(rewards=Amount(record.rewards + reward))
            ledger.mint_to_validator(view, score.validator, record, reward)
        view.set_validator(score.validator, record)
    view.delete(KEY_POI)


def fix_commitments(view: StateView, ctx: BlockContext, last_commit: Commit | None, ledger: Ledger) -> None:
    """Store the commitments of the last commit for scoring two blocks on, and pay the proposer's bonus
    per included precommit of a member of the committing set."""
    if last_commit is None:
        return
    members = view.validator_list(int(last_commit.height))
    by_key = {vote.validator: vote for vote in last_commit.precommits}
    entries = []
    included = 0
    for member in members:
        vote = by_key.get(member.public_key)
        if vote is not None:
            included += 1
        entries.append(PoiEntry(member.address, member.power, vote is not None,
                                None if vote is None else vote.poi))
    view.put(KEY_POI, PendingPoi(last_commit.height, tuple(entries)))
    proposer = view.validator(ctx.proposer)
    if proposer is not None:
        ledger.mint_to_validator(view, ctx.proposer, proposer,
                                 included * ctx.params.rewards.proposer_bonus_per_signature)


# ------------------------------------------------------------------------------------------------ end


def distribute_fees(view: StateView, ctx: BlockContext, ledger: Ledger) -> None:
    """Burn `fee_burn_bps` of the block's fees; the rest goes to the proposer's owner (all burned if the
    proposer is unknown)."""
    fees = ledger.fees
    if not fees:
        return
    burn = fees * ctx.params.rewards.fee_burn_bps // BPS
    proposer = view.validator(ctx.proposer)
    if proposer is None:
        burn = fees
    else:
        delegation.pay_rewards(view, ctx.proposer, proposer, fees - burn)
    ledger.burned += burn


def candidates(view: StateView) -> tuple[Address, ...]:
    record = view.get(KEY_CANDIDATES, CandidateList)
    return () if record is None else record.addresses


def update_candidates(view: StateView, params: Params) -> bool:
    """Refresh the candidate index from the validator records touched in this view; True if any were."""
    touched = list(view.touched(b"V"))
    if not touched:
        return False
    current = set(candidates(view))
    minimum = params.staking.min_validator_stake
    for key in touched:
        rec = view.get(key, ValidatorRecord)
        assert rec is not None
        address = Address(key[1:])
        if rec.stake >= minimum and not rec.tombstoned:
            current.add(address)
        else:
            current.discard(address)
    view.put(KEY_CANDIDATES, CandidateList(tuple(sorted(current))))
    return True


def compute_validator_set(view: StateView, params: Params) -> tuple[ValidatorEntry, ...]:
    """Unjailed candidates with stake at the minimum, by power then address, at most max_validators."""
    staking = params.staking
    chosen = []
    for address in candidates(view):
        rec = view.validator(address)
        if rec is None or rec.jailed or rec.tombstoned or rec.stake < staking.min_validator_stake:
            continue
        power = min(rec.stake // staking.power_unit, MAX_TOTAL_POWER // 128)
        if power > 0:
            chosen.append(ValidatorEntry(rec.public_key, power))
    chosen.sort(key=lambda e: (-e.power, e.address))
    return tuple(sorted(chosen[:staking.max_validators], key=lambda e: e.address))


def advance_validator_sets(view: StateView, ctx: BlockContext) -> None:
    """Write the set for height h+2 into the ring: recomputed when a validator record changed in this
    block, else the set of h+1 carried over. An empty result keeps the previous set."""
    target = ctx.height + 2
    previous = view.validator_list(target - 1)
    entries = previous
    if update_candidates(view, ctx.params):
        computed = compute_validator_set(view, ctx.params)
        if computed:
            entries = computed
    key = vset_key(target, vset_ring(ctx.params))
    current = view.get(key, ValidatorList)
    if current is None or current.validators != entries:
        view.put(key, ValidatorList(entries))


def validator_updates(old: Sequence[ValidatorEntry], new: Sequence[ValidatorEntry]) -> tuple[ValidatorEntry, ...]:
    """The changes from `old` to `new`, CometBFT style: changed or added entries, and power 0 to remove."""
    before = {e.public_key: e.power for e in old}
    after = {e.public_key: e.power for e in new}
    out = [ValidatorEntry(PublicKeyBytes(pk), power) for pk, power in after.items() if before.get(pk) != power]
    out += [ValidatorEntry(PublicKeyBytes(pk), 0) for pk in before if pk not in after]
    return tuple(sorted(out, key=lambda e: e.address))


def close_block(view: StateView, ctx: BlockContext, last_block_id: Hash32, ledger: Ledger) -> None:
    """Governance, fees, the self-stake floor, the validator set for h+2, the chain record and the supply
    record."""
    ledger.burned += process_gov_end_block(view, ctx)
    distribute_fees(view, ctx, ledger)
    delegation.process_self_stake_floor(view, ctx.params, int(ctx.height))
    advance_validator_sets(view, ctx)
    chain = view.chain()
    view.put(KEY_CHAIN, ChainRecord(ctx.height, ctx.time, last_block_id, chain.last_block_id))
    supply = view.supply()
    if ledger.issued or ledger.burned:
        view.put(KEY_SUPPLY, Supply(supply.genesis, Amount(supply.issued + ledger.issued),
                                    Amount(supply.burned + ledger.burned)))
