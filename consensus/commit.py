"""Commits as verifiable objects: the precommits of one round that decided a block."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import InvalidBlock
from core.keys import verify
from core.types import Hash32
from core.validators import ValidatorSet
from core.votes import Commit, Vote


def verify_commit(validator_set: ValidatorSet, block_id: Hash32, commit: Commit, chain_id: str, *,
                  signature_ok: Callable[[Vote], bool] | None = None) -> int:
    """Check that `commit` finalizes `block_id` under `validator_set`; returns the power behind the block.

    Every precommit must come from a member of the set and carry a valid signature (nil precommits and
    precommits for other blocks included: they carry PoI answers that later blocks score); the precommits
    for `block_id` must hold more than two thirds of the power. Raises InvalidBlock otherwise.
    """
    if commit.block_id != block_id:
        raise InvalidBlock(f"commit at height {commit.height} is for another block")
    for_block = 0
    seen: set[bytes] = set()
    for vote in commit.precommits:
        entry = validator_set.get_by_key(vote.validator)
        if entry is None:
            raise InvalidBlock(f"commit at height {commit.height} holds a precommit of a non-validator")
        if vote.validator in seen:
            raise InvalidBlock(f"commit at height {commit.height} holds two precommits of one validator")
        seen.add(vote.validator)
        ok = signature_ok(vote) if signature_ok is not None else verify(
            vote.validator, vote.sign_bytes(chain_id), vote.signature)
        if not ok:
            raise InvalidBlock(f"commit at height {commit.height} holds a badly signed precommit")
        if vote.block_id == block_id:
            for_block += entry.power
    if for_block < validator_set.quorum():
        raise InvalidBlock(f"commit at height {commit.height} has {for_block} of {validator_set.total_power} "
                           f"power for the block; more than two thirds is needed")
    return for_block
