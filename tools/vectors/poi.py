"""Proof-of-inference vectors: the seed of a height, the model it picks, the challenge inputs, the output of
the shipped PoI model, each validator's commitment, and how a set of commitments is scored and rewarded.

The PoI model is `exact` (integer kernels), so its output is the same on every CPU.
"""

from __future__ import annotations

from typing import Any

from core.hashing import ZERO_HASH, sha256
from core.tensor import Tensor
from core.types import Address, Hash32, Height
from tools.vectors.render import dump, render
from tools.vectors.world import World
from vm.engine import challenge_for
from vm.poi import compute_commitment, compute_rewards, compute_seed, pick_model, score_commitments
from vm.state import PendingPoi, PoiEntry

PICK_SET_SIZES = (1, 2, 3, 5)


def challenge_case(world: World, chain_id: str, height: int, prev_block_id: bytes) -> dict[str, Any]:
    view = world.app.view()
    params = view.params()
    seed = compute_seed(chain_id, height, prev_block_id)
    challenge = challenge_for(view, chain_id, height, prev_block_id)
    if challenge.model_id != pick_model(seed, params.poi_models):
        raise AssertionError("challenge_for and pick_model disagree")
    (output,) = world.app.engine.run_challenge(challenge, params)
    return {
        "chain_id": chain_id,
        "height": height,
        "prev_block_id": prev_block_id.hex(),
        "seed": seed.hex(),
        "pick_index_by_set_size": {str(n): int.from_bytes(seed[:8], "big") % n for n in PICK_SET_SIZES},
        "model_id": challenge.model_id.hex(),
        "inputs": [{"encoding": t.encode().hex(), "value": render(t)} for t in challenge.inputs],
        "output": {"encoding": output.encode().hex(), "value": render(output)},
        "commitments": [{"validator": k.address.hex(), "commitment": compute_commitment(output, k.address,
                                                                                        height).hex()}
                        for k in world.validators],
    }


def scoring_case(world: World, output: Tensor, height: int) -> dict[str, Any]:
    """Four validators: correct, correct, wrong (a commitment to another output), absent."""
    keys = world.validators
    wrong = compute_commitment(Tensor(output.dtype, output.shape, bytes(len(output.data))), keys[2].address, height)
    entries = (
        PoiEntry(keys[0].address, 10, True, compute_commitment(output, keys[0].address, height)),
        PoiEntry(keys[1].address, 20, True, compute_commitment(output, keys[1].address, height)),
        PoiEntry(keys[2].address, 30, True, wrong),
        PoiEntry(keys[3].address, 40, False, None),
    )
    pending = PendingPoi(Height(height), entries)
    pool = int(world.genesis.params.rewards.poi_reward_per_block)
    scores = score_commitments(pending, output)
    rewards = compute_rewards(scores, pool)
    return {
        "pending": {"encoding": pending.encode().hex(), "value": render(pending)},
        "reveal": output.encode().hex(),
        "pool": pool,
        "outcomes": [{"validator": s.validator.hex(), "power": s.power, "outcome": s.outcome.value}
                     for s in scores],
        "rewards": {Address(a).hex(): r for a, r in rewards.items()},
    }


def generate(world: World) -> dict[str, bytes]:
    b1, b2, b3 = world.blocks
    devnet = world.chain_id
    cases = [
        challenge_case(world, devnet, 1, ZERO_HASH),
        challenge_case(world, devnet, 2, b1.id),
        challenge_case(world, devnet, 3, b2.id),
        challenge_case(world, devnet, 1_000_000, Hash32(sha256(b"a block id"))),
        challenge_case(world, "another-chain", 1, ZERO_HASH),
    ]
    reveal = b3.header.poi_reveal
    if reveal is None or reveal.encode().hex() != cases[0]["output"]["encoding"]:
        raise AssertionError("block 3 reveals the output of challenge 1")
    return {"poi/challenges.json": dump({
        "about": "PoI challenge derivations; all bytes hex. seed = SHA-256('poi' || len(chain_id) (1 byte) || "
                 "chain_id || height (8 bytes BE) || prev_block_id); model = poi_models[seed[0:8] BE mod n]; "
                 "input i = concat over counter c of SHA-256('poi/input' || seed || i (2 bytes BE) || c (4 bytes "
                 "BE)), cut to the tensor's byte size; commitment = SHA-256(encoding of the output tensor || "
                 "validator address || height (8 bytes BE)).",
        "poi_models": [m.hex() for m in world.genesis.params.poi_models],
        "challenges": cases,
        "scoring": scoring_case(world, reveal, 1),
    })}
