"""Proof of inference (docs/design.md §3): the challenge of a height, its commitment, and the scoring rule.

Everything here is pure: the seed comes from (chain id, height, id of the previous block), the input from
counter-mode hashing of the seed, and a commitment binds the output to its signer and height so that a
copied commitment is simply wrong.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.hashing import sha256_concat
from core.tensor import DType, Tensor
from core.types import Address, Hash32
from vm.state import PendingPoi
from vm.txs import TensorSpec

_SEED_TAG = b"poi"
_INPUT_TAG = b"poi/input"


def compute_seed(chain_id: str, height: int, prev_block_id: bytes) -> Hash32:
    """seed = H("poi" ‖ chain_id ‖ h ‖ hash(block h-1)); the chain id is length-prefixed."""
    cid = chain_id.encode()
    return sha256_concat(_SEED_TAG, bytes([len(cid)]), cid, height.to_bytes(8, "big"), prev_block_id)


def pick_model(seed: bytes, poi_models: Sequence[Hash32]) -> Hash32:
    """The PoI model of a challenge: the seed's first 8 bytes modulo the size of the PoI set."""
    return poi_models[int.from_bytes(seed[:8], "big") % len(poi_models)]


def expand_bytes(seed: bytes, label: int, n: int) -> bytes:
    """n pseudo-random bytes: H(tag ‖ seed ‖ label ‖ counter) blocks, counter from 0."""
    blocks = []
    for counter in range((n + 31) // 32):
        blocks.append(sha256_concat(_INPUT_TAG, seed, label.to_bytes(2, "big"), counter.to_bytes(4, "big")))
    return b"".join(blocks)[:n]


def compute_challenge_inputs(seed: bytes, inputs: Sequence[TensorSpec]) -> tuple[Tensor, ...]:
    """One tensor per declared input, every element drawn from the seed (bool elements take the low bit).

    PoI models take integer inputs only; a model whose integer inputs must lie in a narrower range than
    their dtype has to map them itself (e.g. with Mod), so the expansion stays model-independent.
    """
    out = []
    for label, spec in enumerate(inputs):
        if spec.dtype.is_float:
            raise ValueError(f"PoI input {spec.name!r} is {spec.dtype.name}; PoI models take integers")
        count = math.prod(spec.shape)
        raw = expand_bytes(seed, label, count * spec.dtype.itemsize)
        if spec.dtype == DType.BOOL:
            raw = bytes(b & 1 for b in raw)
        out.append(Tensor(spec.dtype, tuple(spec.shape), raw))
    return tuple(out)


def compute_commitment(output: Tensor, validator: Address, height: int) -> Hash32:
    """poi = H(output ‖ validator address ‖ h), the output in its canonical tensor encoding."""
    return sha256_concat(output.encode(), validator, height.to_bytes(8, "big"))


def has_high_entropy(output: Tensor) -> bool:
    """A PoI output must be an integer tensor carrying at least 64 bits (never a guessable label)."""
    return not output.dtype.is_float and output.dtype != DType.BOOL and len(output.data) * 8 >= 64


class PoiOutcome(enum.Enum):
    CORRECT = "correct"
    WRONG = "wrong"  # a signed commitment that does not match: slashed, and a miss
    ABSENT = "absent"  # no precommit included, or a precommit without an answer: a miss only


@dataclass(frozen=True, slots=True)
class PoiScore:
    validator: Address
    power: int
    outcome: PoiOutcome


def score_commitments(pending: PendingPoi, reveal: Tensor) -> list[PoiScore]:
    """Judge each validator's fixed commitment for challenge `pending.height` against the revealed output."""
    scores = []
    for entry in pending.entries:
        if not entry.present or entry.commitment is None:
            outcome = PoiOutcome.ABSENT
        elif entry.commitment == compute_commitment(reveal, entry.validator, pending.height):
            outcome = PoiOutcome.CORRECT
        else:
            outcome = PoiOutcome.WRONG
        scores.append(PoiScore(entry.validator, entry.power, outcome))
    return scores


def compute_rewards(scores: Sequence[PoiScore], pool: int) -> dict[Address, int]:
    """Each correct answer earns pool x power / total power of the scored set (floor); the rest is not
    minted, so absent or wrong validators' shares are simply never issued."""
    total = sum(s.power for s in scores)
    if total == 0:
        return {}
    return {s.validator: pool * s.power // total for s in scores if s.outcome is PoiOutcome.CORRECT}


